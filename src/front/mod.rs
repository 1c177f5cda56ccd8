//! The command line: argv -> check | names | run | restore | inject, or init mode as pid 1. Thin: parse options, load the plan,
//! hand over to `restore`, print what comes back.

pub mod args;
pub mod capture;
pub mod exec;
pub mod init;
pub mod inject;
pub mod run;
pub mod single;
pub mod verify;

use crate::plan::{self, Plan};
use crate::report::{EXIT_USAGE};
use crate::restore::roles::{Roles, MAX_BATCH};
use crate::restore::transport::{plan_hash, Names};
use crate::sys::{fd, mem, Fd};
use crate::text::Line;
use args::Args;

pub const VERSION: &str = "fdslot 0.1.0 (plan format 1)\n";

pub const HELP: &str = "\
usage: fdslot COMMAND ...
  check PLAN                 validate a plan; print a summary
  run PLAN [--stop] [--verify] [--timeout SECS] [--batch N] [--relays auto|N] [--keep FD,...]
                             fork one process per task, rebuild every table, then exec
  restore PLAN TASK --session S [--sync-fd N] [--timeout SECS] [--batch N] [--keep FD,...]
          [-- PROG ARGS...]  rebuild one task's table in this process, then exec PROG
  inject PLAN TASK=PID... [--blob PATH] [--keep FD,...|all] [--timeout SECS] [--batch N]
                             rebuild live processes' tables by running fdslot.blob in them;
                             all or nothing: on any failure every table is put back
  names PLAN --session S [--batch N]
                             print the socket names a session binds
  capture PID... [--tree] [--skip-unsupported] [--data DIR]
                             print a plan of live processes' fd tables
  verify PLAN TASK=PID... [--keep FD,...]
                             check live processes against a plan; print what the kernel says
options:
  --stop          each task stops itself (SIGSTOP) once restored; run prints
                  'task T pid P' per task and 'ready', then waits for the tasks to end
  --verify        run verify on the restored tasks before they go on; exit 1 on a mismatch
  --tree          capture the given processes and all their descendants
  --skip-unsupported  leave fds a plan cannot hold out of the plan (listed in comments)
  --data DIR      capture saves memfd contents in DIR (data= in the plan)
  --timeout SECS  one deadline for the whole restore (default 10)
  --batch N       fds per message, 1..253 (1: one socket per fd; default 253)
  --relays auto|N run: processes that open the shared objects of a plan whose sharing is
                  scattered over many tasks, and send each task its files in full batches
                  (auto: where they cost less; 0: never; N: 1..64, at least N)
  --keep FD,...   fds to keep open and untouched (at most 64; not planned slots);
                  inject also takes --keep all: replace only the planned slots
  --session S     1 to 32 of A-Za-z0-9_-; the same for every task of a restore
  --sync-fd N     a SOCK_SEQPACKET fd to a parent tool: bound / go|abort / done|error: TEXT
exit codes:
  0 success, 1 restore failed (capture: an fd a plan cannot hold; verify, run --verify:
  a mismatch), 2 usage or plan error, 3 a peer failed or timed out;
  run without --stop exits with the first task's status
";

/// Writes to stderr, ignoring failure (there is nowhere else to say it).
pub fn eprint(bytes: &[u8]) {
    let _ = fd::write_all(2, bytes);
}

pub fn print(bytes: &[u8]) {
    let _ = fd::write_all(1, bytes);
}

/// `fdslot: WHAT` on stderr; returns EXIT_USAGE.
pub fn usage_error(what: &[u8]) -> i32 {
    let mut l = Line::<300>::new();
    l.str("fdslot: ").push(what).str(" (see fdslot --help)\n");
    eprint(l.as_bytes());
    EXIT_USAGE as i32
}

/// Reads the plan at `path` (`-`: standard input) into memory that lives as long as the
/// process: a private mapping of a regular file, or, for a pipe or terminal, an anonymous
/// mapping grown as it fills. `for_forks` (`run`'s plan, which its forks read): a regular file
/// from `HUGE_FROM` is read into `Arena::map_for_forks` memory instead.
pub fn read_plan(path: &[u8], for_forks: bool) -> Result<&'static [u8], Line<300>> {
    let mut cpath = [0u8; plan::MAX_PATH + 1];
    let fail = |what: &str, e: crate::sys::Errno| {
        let mut l = Line::new();
        l.str("fdslot: ").push(path).str(": ").str(what).str(": ").str(e.name().unwrap_or("error"));
        l
    };
    let f: Fd = if path == b"-" {
        0
    } else {
        if path.len() > plan::MAX_PATH {
            let mut l = Line::new();
            l.str("fdslot: plan path is longer than 4095 bytes");
            return Err(l);
        }
        cpath[..path.len()].copy_from_slice(path);
        fd::open(&cpath[..path.len() + 1], linux_raw_sys::general::O_RDONLY | linux_raw_sys::general::O_CLOEXEC, 0).map_err(|e| fail("open", e))?
    };
    let result = read_all(f, for_forks).map_err(|e| fail("read", e));
    if f != 0 {
        let _ = fd::close(f);
    }
    result
}

fn read_all(f: Fd, for_forks: bool) -> Result<&'static [u8], crate::sys::Errno> {
    let (mode, size) = fd::fstat_mode_size(f)?;
    if mode & 0o170000 == 0o100000 {
        if size == 0 {
            return Ok(&[]);
        }
        if size as usize > plan::MAX_PLAN_BYTES {
            return Err(crate::sys::Errno(linux_raw_sys::errno::EFBIG as u16));
        }
        if for_forks && size as usize >= crate::arena::HUGE_FROM {
            // A big plan's paths, read by every fork at scattered places, cost each fork a
            // fault per 64 KiB touched in the file's pages (9 per task of 1,000 x 100 fds, with
            // sharing at random); a copy in huge pages costs none. A file that changes size
            // meanwhile is read up to the size it had.
            let buf = crate::arena::Arena::map_for_forks(size as usize)?.take::<u8>(size as usize);
            let mut len = 0;
            while len < buf.len() {
                match fd::read(f, &mut buf[len..]) {
                    Ok(0) => break,
                    Ok(n) => len += n,
                    Err(e) if e == crate::sys::Errno::INTR => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(&buf[..len]);
        }
        let p = mem::map_file(f, size as usize)?;
        // SAFETY: a private read-only mapping of `size` bytes that is never unmapped.
        return Ok(unsafe { core::slice::from_raw_parts(p, size as usize) });
    }
    let mut cap = 1 << 16;
    let mut buf = mem::map_anon(cap, false)?;
    let mut len = 0;
    loop {
        if len == cap {
            if cap >= plan::MAX_PLAN_BYTES {
                return Err(crate::sys::Errno(linux_raw_sys::errno::EFBIG as u16));
            }
            // SAFETY: buf is our mapping of cap bytes; nothing borrows it yet.
            buf = unsafe { mem::remap(buf, cap, cap * 2) }?;
            cap *= 2;
        }
        // SAFETY: buf[len..cap] is ours to write.
        let room = unsafe { core::slice::from_raw_parts_mut(buf.add(len), cap - len) };
        match fd::read(f, room) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e == crate::sys::Errno::INTR => {}
            Err(e) => return Err(e),
        }
    }
    // SAFETY: len bytes were written; the mapping is never unmapped.
    Ok(unsafe { core::slice::from_raw_parts(buf, len) })
}

/// Loads and validates a plan; on failure prints `fdslot: PLAN line N: ...` and returns the code.
pub fn load_plan(path: &[u8], for_forks: bool) -> Result<Plan<'static>, i32> {
    let text = match read_plan(path, for_forks) {
        Ok(t) => t,
        Err(mut l) => {
            l.str("\n");
            eprint(l.as_bytes());
            return Err(EXIT_USAGE as i32);
        }
    };
    plan::parse::load(text).map_err(|mut e| {
        let mut l = Line::<400>::new();
        l.str("fdslot: ").push(path).str(" line ").num(e.line as u64).str(": ").push(e.msg.as_bytes()).str("\n");
        eprint(l.as_bytes());
        EXIT_USAGE as i32
    })
}

pub fn compute_roles(plan: &Plan<'_>, batch: u16) -> Result<Roles<'static>, i32> {
    Roles::compute(plan, batch).map_err(|_| {
        eprint(b"fdslot: cannot map memory for the plan's roles\n");
        crate::report::EXIT_RESTORE as i32
    })
}

/// `fdslot check PLAN`.
fn cmd_check(a: &mut Args) -> i32 {
    let Some(path) = a.positional() else { return usage_error(b"check needs a PLAN") };
    if let Some(extra) = a.next() {
        let mut l = Line::<200>::new();
        l.str("unexpected argument '").push(extra).str("'");
        return usage_error(l.as_bytes());
    }
    let plan = match load_plan(path, false) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let mut l = Line::<400>::new();
    l.push(path).str(": ok: ").num(plan.tasks.len() as u64).str(" tasks, ").num(plan.objects.len() as u64);
    l.str(" objects, ").num(plan.targets.len() as u64).str(" fds\n");
    print(l.as_bytes());
    0
}

/// `fdslot names PLAN --session S [--batch N]`.
fn cmd_names(a: &mut Args) -> i32 {
    let (mut path, mut session, mut batch) = (None, None, MAX_BATCH);
    while let Some(arg) = a.next() {
        match arg {
            b"--session" => match a.session() {
                Ok(s) => session = Some(s),
                Err(c) => return c,
            },
            b"--batch" => match a.batch() {
                Ok(b) => batch = b,
                Err(c) => return c,
            },
            _ if path.is_none() && !arg.starts_with(b"--") => path = Some(arg),
            _ => return args::unexpected(arg),
        }
    }
    let (Some(path), Some(session)) = (path, session) else { return usage_error(b"names needs PLAN and --session S") };
    let plan = match load_plan(path, false) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let roles = match compute_roles(&plan, batch) {
        Ok(r) => r,
        Err(c) => return c,
    };
    let names = Names::new(session, plan_hash(plan.text, batch));
    let mut out = Line::<200>::new();
    for (t, task) in plan.tasks.iter().enumerate() {
        let mut line = |kind: &str, nums: &[u64], addr: &crate::sys::socket::UnixAddr| {
            out.clear();
            out.str(kind);
            for &v in nums {
                out.str(" ").num(v);
            }
            out.str(" ").push(addr.name_bytes()).str("\n");
            print(out.as_bytes());
        };
        line("ctl", &[task.id as u64], &names.ctl(task.id));
        if !roles.sends(t).is_empty() {
            line("home", &[task.id as u64], &names.home(task.id));
        }
        for b in roles.receives(t) {
            let o = plan.tasks[b.opener as usize].id;
            line("rx", &[task.id as u64, o as u64, b.index as u64, b.slot as u64], &names.rx(task.id, o, b.index));
        }
    }
    0
}

/// The front end's entry: dispatches on the command word.
///
/// # Safety
/// `argv` and `envp` must be the process's NULL-terminated argument and environment arrays.
pub unsafe fn main(argc: usize, argv: *const *const u8, envp: *const *const u8) -> i32 {
    // SAFETY: forwarded from the caller.
    let mut a = unsafe { Args::new(argc, argv) };
    let Some(cmd) = a.next() else {
        if init::is_pid1() {
            // SAFETY: envp as our caller promised.
            unsafe { init::main(envp) }
        }
        print(HELP.as_bytes());
        return EXIT_USAGE as i32;
    };
    if a.wants_help() {
        print(HELP.as_bytes());
        return 0;
    }
    match cmd {
        b"--help" | b"-h" | b"help" => {
            print(HELP.as_bytes());
            0
        }
        b"--version" | b"-V" => {
            print(VERSION.as_bytes());
            0
        }
        b"check" => cmd_check(&mut a),
        b"names" => cmd_names(&mut a),
        b"capture" => capture::cmd_capture(&mut a),
        b"verify" => verify::cmd_verify(&mut a),
        // SAFETY: envp is the kernel's, as our caller promised.
        b"run" => unsafe { run::cmd_run(&mut a, envp) },
        // SAFETY: as above.
        b"restore" => unsafe { single::cmd_restore(&mut a, envp) },
        // SAFETY: as above.
        b"inject" => unsafe { inject::cmd_inject(&mut a, envp) },
        // As pid 1, words the kernel passed on from its command line are not commands.
        // SAFETY: envp as our caller promised.
        _ if init::is_pid1() => unsafe { init::main(envp) },
        other => {
            let mut l = Line::<200>::new();
            l.str("unknown command '").push(other).str("'");
            usage_error(l.as_bytes())
        }
    }
}
