//! `fdslot inject PLAN T=PID... [--blob PATH] [--keep FD,...|all] [--timeout SECS] [--batch N]`:
//! rebuilds the fd tables of live processes by running fdslot.blob inside each of them.
//!
//! Per process: a pidfd first (a recycled pid is never touched), PTRACE_SEIZE of every thread
//! (with seccomp filters suspended), PTRACE_INTERRUPT; then, on the main thread, injected
//! syscalls (a `syscall; int3` patched over the word at its pc and put back after) block
//! signals, map memory for the blob, its arguments, the plan and a stack, and connect a
//! SOCK_SEQPACKET socket to this process. Through those sockets this process is the group's
//! barrier: `go` once every blob is bound, `commit` once every one is done, `abort` as soon as
//! one fails or its process ends, and then every blob puts its table back as it was. Each blob
//! returns onto an int3; then the memory is unmapped, the mask, registers (with syscall restart)
//! and code restored, and every thread detached.

use super::args::{self, Args};
use super::{eprint, load_plan, read_plan, usage_error};
use crate::blob::{FLAG_KEEP_OTHERS, FLAG_PRESERVE};
use crate::report::{EXIT_PEER, EXIT_RESTORE, EXIT_USAGE};
use crate::restore::MAX_KEEP;
use crate::sys::proc::sigbit;
use crate::sys::socket::{self as sock, UnixAddr};
use crate::sys::{fd, proc, Errno, Fd};
use crate::text::{parse_radix, Line};
use linux_raw_sys::general as g;
use linux_raw_sys::net as n;
use linux_raw_sys::ptrace as pt;

/// The most processes one inject command handles, and threads per process.
const MAX_TARGETS: usize = 64;
const MAX_THREADS: usize = 256;

// user_regs_struct indices (x86_64).
const RAX: usize = 10;
const RDX: usize = 12;
const RSI: usize = 13;
const RDI: usize = 14;
const ORIG_RAX: usize = 15;
const RIP: usize = 16;
const RSP: usize = 19;
const R10: usize = 7;
const R8: usize = 9;
const R9: usize = 8;
type Regs = [u64; 27];

/// The blob's argument block, as fdslot.h lays it out.
#[repr(C)]
struct Args64 {
    plan: u64,
    plan_len: u64,
    task: u32,
    sync_fd: i32,
    timeout_ms: u32,
    batch: u32,
    session: [u8; 32],
    error: u64,
    error_len: u64,
    keep: u64,
    keep_len: u32,
    flags: u32,
}

/// Where one target's blob stands, as its sync socket tells.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Started,
    Bound,
    Done,
    /// It said `error: ...`, or closed its socket.
    Failed,
}

struct Target {
    task: u16,
    pid: i32,
    pidfd: Fd,
    threads: heapless::Vec<i32, MAX_THREADS>,
    saved: Regs,
    code_addr: usize,
    code_word: usize,
    base: usize,
    len: usize,
    /// The blob's entry offset.
    entry: usize,
    /// Signals are blocked, the old mask saved in the mapping: put it back before unmapping.
    masked: bool,
    /// The sync socket's number inside the target while the blob does not own it yet.
    remote_sync: Fd,
    /// This process's end of the sync socket.
    conn: Fd,
    phase: Phase,
    /// The blob was started, and has returned onto its trap.
    started: bool,
    returned: bool,
    /// The process has ended.
    exited: bool,
    /// A stop of the main thread that nobody has looked at yet (its wait status).
    stop: Option<i32>,
    /// Signals that reached the main thread while we held it, delivered again on release.
    deferred: u64,
    /// A job-control stop arrived meanwhile: detach into it.
    stop_on_detach: bool,
    result: i64,
}

/// Offsets inside the injected mapping, after the blob's own memory.
struct Layout {
    args: usize,
    plan: usize,
    keep: usize,
    error: usize,
    masks: usize,
    addr: usize,
    trap: usize,
    stack_top: usize,
    len: usize,
}

const ERROR_LEN: usize = 512;

fn layout(blob_mem: usize, plan_len: usize, stack: usize) -> Layout {
    let up = |x: usize| (x + 63) & !63;
    let args = up(blob_mem);
    let plan = up(args + core::mem::size_of::<Args64>());
    let keep = up(plan + plan_len);
    let error = up(keep + MAX_KEEP * 4);
    let masks = up(error + ERROR_LEN);
    let addr = up(masks + 16);
    // The return trap has a page of its own: it becomes read+exec, the rest stays writable.
    let trap = (addr + core::mem::size_of::<n::sockaddr_un>() + 4095) & !4095;
    let stack_bottom = trap + 4096;
    let stack_top = stack_bottom + ((stack + 16384 + 4095) & !4095);
    Layout { args, plan, keep, error, masks, addr, trap, stack_top, len: stack_top }
}

fn say(pid: i32, task: u16, what: &[u8], e: Option<Errno>) {
    let mut l = Line::<400>::new();
    l.str("fdslot: inject: task ").num(task as u64).str(" pid ").num(pid as u64).str(": ").push(what);
    if let Some(e) = e {
        l.str(": ").str(e.name().unwrap_or("error"));
    }
    l.str("\n");
    eprint(l.as_bytes());
}

fn getregs(tid: i32) -> Result<Regs, Errno> {
    let mut r: Regs = [0; 27];
    proc::ptrace(pt::PTRACE_GETREGS, tid, 0, r.as_mut_ptr() as usize)?;
    Ok(r)
}

fn setregs(tid: i32, r: &Regs) -> Result<(), Errno> {
    proc::ptrace(pt::PTRACE_SETREGS, tid, 0, r.as_ptr() as usize).map(|_| ())
}

/// Ptrace stops and exits arrive as SIGCHLD; with it (and the signals that should end an inject
/// cleanly) blocked, one signalfd lets every wait sleep until something happens.
struct Tracer {
    sigfd: Fd,
    /// SIGINT, SIGTERM or SIGHUP reached this process: abort, clean up, exit 128 + it.
    interrupted: u32,
}

const STOP_SIGNALS: u64 = sigbit(g::SIGCHLD) | sigbit(g::SIGINT) | sigbit(g::SIGTERM) | sigbit(g::SIGHUP);

fn stopped_sig(status: i32) -> Option<u32> {
    (status & 0x7f == 0x7f).then_some(((status >> 8) & 0xff) as u32)
}

fn event_of(status: i32) -> u32 {
    (status as u32) >> 16
}

impl Tracer {
    fn new() -> Result<Tracer, Errno> {
        proc::sigprocmask(g::SIG_BLOCK, STOP_SIGNALS)?;
        let sigfd = proc::signalfd(STOP_SIGNALS, g::O_CLOEXEC | g::O_NONBLOCK)?;
        Ok(Tracer { sigfd, interrupted: 0 })
    }

    /// Reads the pending signals; collects every tracee event into its target.
    fn collect(&mut self, targets: &mut [Target]) {
        let mut buf = [0u8; 128];
        while let Ok(128) = fd::read(self.sigfd, &mut buf) {
            let sig = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
            if sig != g::SIGCHLD && self.interrupted == 0 {
                self.interrupted = sig;
            }
        }
        while let Ok((tid, status)) = proc::wait4(-1, g::__WALL | g::WNOHANG) {
            if tid <= 0 {
                break;
            }
            let Some(t) = targets.iter_mut().find(|t| t.threads.contains(&tid)) else { continue };
            match stopped_sig(status) {
                // Other threads stay in their stop until we detach.
                Some(_) if tid == t.pid => t.stop = Some(status),
                Some(_) => {}
                // A thread group leader is reported last, once every thread has gone.
                None if tid == t.pid => t.exited = true,
                None => {}
            }
        }
    }

    /// Sleeps until a signal or `extra` is readable, or the deadline passes (false).
    fn sleep(&mut self, extra: &mut [g::pollfd], deadline: u64) -> bool {
        let now = proc::monotonic_ns();
        if now >= deadline {
            return false;
        }
        let mut p = [g::pollfd { fd: self.sigfd, events: g::POLLIN as i16, revents: 0 }; 1 + 2 * MAX_TARGETS];
        let k = extra.len().min(2 * MAX_TARGETS);
        p[1..1 + k].copy_from_slice(&extra[..k]);
        let _ = fd::poll(&mut p[..1 + k], Some(deadline - now));
        extra[..k].copy_from_slice(&p[1..1 + k]);
        true
    }

    /// Waits for the main thread of `targets[i]` to stop: its wait status, or None when it ended
    /// (Err(SRCH)) or the deadline passed (Err(TIMEDOUT)).
    fn wait_stop(&mut self, targets: &mut [Target], i: usize, deadline: u64) -> Result<i32, Errno> {
        loop {
            self.collect(targets);
            if let Some(s) = targets[i].stop.take() {
                return Ok(s);
            }
            if targets[i].exited {
                return Err(Errno::SRCH);
            }
            if !self.sleep(&mut [], deadline) {
                return Err(Errno::TIMEDOUT);
            }
        }
    }

    /// Resumes the main thread of `targets[i]` until it reaches the int3 at `trap`, deferring
    /// any signal it meets on the way. Err(SRCH) when it ended, Err(TIMEDOUT) at the deadline.
    fn run_to_trap(&mut self, targets: &mut [Target], i: usize, trap: usize, deadline: u64) -> Result<Regs, Errno> {
        loop {
            let pid = targets[i].pid;
            proc::ptrace(pt::PTRACE_CONT, pid, 0, 0)?;
            let status = self.wait_stop(targets, i, deadline)?;
            if let Some(regs) = classify(&mut targets[i], status, trap)? {
                return Ok(regs);
            }
        }
    }
}

/// Looks at one stop of a target's main thread: Some(registers) at our int3, None for a stop
/// to resume from (a signal, deferred; a job-control stop, kept for the detach).
fn classify(t: &mut Target, status: i32, trap: usize) -> Result<Option<Regs>, Errno> {
    let Some(sig) = stopped_sig(status) else { return Err(Errno::SRCH) };
    if event_of(status) == pt::PTRACE_EVENT_STOP {
        if sig != g::SIGTRAP {
            t.stop_on_detach = true;
        }
        return Ok(None);
    }
    if sig == g::SIGTRAP {
        let regs = getregs(t.pid)?;
        if regs[RIP] as usize == trap + 1 {
            return Ok(Some(regs));
        }
    }
    if sig == g::SIGSTOP {
        t.stop_on_detach = true;
    } else if (1..=64).contains(&sig) {
        t.deferred |= sigbit(sig);
    }
    Ok(None)
}

/// Runs one syscall in the stopped main thread of `targets[i]`, at its patched code word.
fn remote_syscall(tr: &mut Tracer, targets: &mut [Target], i: usize, nr: u32, a: [u64; 6], deadline: u64) -> Result<i64, Errno> {
    let t = &targets[i];
    let mut r = t.saved;
    r[RIP] = t.code_addr as u64;
    r[RAX] = nr as u64;
    r[ORIG_RAX] = u64::MAX;
    r[RDI] = a[0];
    r[RSI] = a[1];
    r[RDX] = a[2];
    r[R10] = a[3];
    r[R8] = a[4];
    r[R9] = a[5];
    setregs(t.pid, &r)?;
    let trap = t.code_addr + 2;
    Ok(tr.run_to_trap(targets, i, trap, deadline)?[RAX] as i64)
}

/// A remote syscall that must succeed: its return value, or its errno.
fn remote_ok(tr: &mut Tracer, targets: &mut [Target], i: usize, nr: u32, a: [u64; 6], deadline: u64) -> Result<u64, Errno> {
    let r = remote_syscall(tr, targets, i, nr, a, deadline)?;
    if (-4095..0).contains(&r) {
        return Err(Errno((-r) as u16));
    }
    Ok(r as u64)
}

/// Seizes every thread of `t` and stops them.
fn seize(tr: &mut Tracer, targets: &mut [Target], i: usize, deadline: u64) -> Result<(), (&'static str, Errno)> {
    let t = &mut targets[i];
    let mut path = Line::<40>::new();
    path.str("/proc/").num(t.pid as u64).str("/task\0");
    let dir = fd::open(path.peek(), g::O_RDONLY | g::O_DIRECTORY | g::O_CLOEXEC, 0).map_err(|e| ("open /proc/PID/task", e))?;
    let listed = fd::each_numbered_entry(dir, |tid| t.threads.push(tid as i32).map_err(|_| Errno::MFILE));
    let _ = fd::close(dir);
    listed.map_err(|e| if e == Errno::MFILE { ("more than 256 threads", Errno::INVAL) } else { ("getdents64 /proc/PID/task", e) })?;
    // The pidfd pins the process we named: if the pid now names another, stop here.
    let mut probe = [g::pollfd { fd: t.pidfd, events: g::POLLIN as i16, revents: 0 }];
    if matches!(fd::poll(&mut probe, Some(0)), Ok(1)) {
        return Err(("the process ended", Errno::SRCH));
    }
    for &tid in t.threads.iter() {
        // Suspending seccomp needs CAP_SYS_ADMIN; without it, a filter may refuse our syscalls
        // (and that fails cleanly like any other injected syscall).
        let seized = proc::ptrace(pt::PTRACE_SEIZE, tid, 0, pt::PTRACE_O_SUSPEND_SECCOMP as usize);
        let seized = match seized {
            Err(e) if e == Errno::PERM => proc::ptrace(pt::PTRACE_SEIZE, tid, 0, 0),
            other => other,
        };
        seized.map_err(|e| ("PTRACE_SEIZE", e))?;
        proc::ptrace(pt::PTRACE_INTERRUPT, tid, 0, 0).map_err(|e| ("PTRACE_INTERRUPT", e))?;
    }
    // Every thread reaches its interrupt stop; the main thread's is kept apart by collect.
    let threads = targets[i].threads.clone();
    for &tid in threads.iter() {
        if tid == targets[i].pid {
            continue;
        }
        loop {
            match proc::wait4(tid, g::__WALL | g::WNOHANG) {
                Ok((got, status)) if got == tid && stopped_sig(status).is_some() => break,
                Ok((got, _)) if got == tid => break, // the thread exited meanwhile
                Ok(_) => {}
                Err(e) => return Err(("wait4", e)),
            }
            if !tr.sleep(&mut [], deadline) {
                return Err(("stopping a thread", Errno::TIMEDOUT));
            }
            tr.collect(&mut []);
        }
    }
    let status = tr.wait_stop(targets, i, deadline).map_err(|e| ("stopping the main thread", e))?;
    if event_of(status) != pt::PTRACE_EVENT_STOP {
        // A signal came first: keep it for later and wait for the interrupt.
        let _ = classify(&mut targets[i], status, 0);
        let _ = proc::ptrace(pt::PTRACE_CONT, targets[i].pid, 0, 0);
        let status = tr.wait_stop(targets, i, deadline).map_err(|e| ("stopping the main thread", e))?;
        let _ = classify(&mut targets[i], status, 0);
    }
    Ok(())
}

/// Puts back the code word, the registers (restarting an interrupted syscall), and detaches.
fn release(t: &Target) {
    if t.exited {
        let _ = fd::close(t.pidfd);
        return;
    }
    if t.code_addr != 0 {
        let _ = proc::ptrace(pt::PTRACE_POKETEXT, t.pid, t.code_addr, t.code_word);
    }
    let mut r = t.saved;
    match r[RAX] as i64 {
        -514..=-512 => {
            r[RIP] -= 2;
            r[RAX] = r[ORIG_RAX];
        }
        -516 => {
            r[RIP] -= 2;
            r[RAX] = g::__NR_restart_syscall as u64;
        }
        _ => {}
    }
    let _ = setregs(t.pid, &r);
    for &tid in t.threads.iter() {
        let sig = if tid == t.pid && t.stop_on_detach { g::SIGSTOP } else { 0 };
        let _ = proc::ptrace(pt::PTRACE_DETACH, tid, 0, sig as usize);
    }
    let _ = fd::close(t.pidfd);
}

/// Parsed command line.
struct Options {
    path: &'static [u8],
    blob: &'static [u8],
    timeout_ms: u64,
    batch: u32,
    keep: heapless::Vec<u32, MAX_KEEP>,
    keep_others: bool,
    pairs: heapless::Vec<(u16, i32), MAX_TARGETS>,
}

/// # Safety
/// `envp` must be the process's environment array.
unsafe fn parse_options(a: &mut Args, envp: *const *const u8) -> Result<Options, i32> {
    let mut o = Options { path: b"", blob: b"", timeout_ms: 10_000, batch: 0, keep: heapless::Vec::new(), keep_others: false, pairs: heapless::Vec::new() };
    let (mut path, mut blob_path) = (None, None);
    while let Some(arg) = a.next() {
        match arg {
            b"--timeout" => o.timeout_ms = a.timeout()? / 1_000_000,
            b"--batch" => o.batch = a.batch()? as u32,
            b"--keep" => {
                if a.peek() == Some(b"all") {
                    let _ = a.next();
                    o.keep_others = true;
                } else {
                    a.keep(&mut o.keep)?;
                }
            }
            b"--blob" => blob_path = Some(a.next().ok_or_else(|| usage_error(b"--blob needs a path"))?),
            _ if path.is_none() && !arg.starts_with(b"--") => path = Some(arg),
            _ => {
                let Some(eq) = arg.iter().position(|&b| b == b'=') else { return Err(args::unexpected(arg)) };
                match (parse_radix(&arg[..eq], 10), parse_radix(&arg[eq + 1..], 10)) {
                    (Some(t), Some(p)) if (1..=65535).contains(&t) && p > 0 && p < i32::MAX as u64 => {
                        if o.pairs.iter().any(|&(tt, pp)| tt == t as u16 || pp == p as i32) {
                            return Err(usage_error(b"inject: each TASK and each PID once"));
                        }
                        o.pairs.push((t as u16, p as i32)).map_err(|_| usage_error(b"inject: at most 64 processes"))?;
                    }
                    _ => return Err(usage_error(b"inject: targets are TASK=PID")),
                }
            }
        }
    }
    let Some(path) = path else { return Err(usage_error(b"inject needs PLAN and TASK=PID")) };
    if o.pairs.is_empty() {
        return Err(usage_error(b"inject needs at least one TASK=PID"));
    }
    o.path = path;
    // SAFETY: envp is the process's environment (this function's contract).
    o.blob = blob_path.or_else(|| unsafe { super::exec::env_value(envp, b"FDSLOT_BLOB") }).unwrap_or(b"fdslot.blob");
    Ok(o)
}

/// `fdslot inject`.
///
/// # Safety
/// `envp` must be the process's environment array.
pub unsafe fn cmd_inject(a: &mut Args, envp: *const *const u8) -> i32 {
    // SAFETY: as this function's contract.
    let o = match unsafe { parse_options(a, envp) } {
        Ok(o) => o,
        Err(c) => return c,
    };
    let plan = match load_plan(o.path, false) {
        Ok(p) => p,
        Err(c) => return c,
    };
    for &(task, _) in o.pairs.iter() {
        match plan.task_by_id(task) {
            None => return usage_error(b"inject: a TASK is not in the plan"),
            Some(t) if plan.tasks[t].files != 0 => return usage_error(b"inject: a TASK shares another task's table (files=): inject its owner"),
            Some(_) => {}
        }
    }
    // The barrier runs here, so every table of the plan must be one of ours.
    if let Some(missing) = plan.tasks.iter().find(|t| t.files == 0 && !o.pairs.iter().any(|&(id, _)| id == t.id)) {
        let mut l = Line::<120>::new();
        l.str("inject: task ").num(missing.id as u64).str(" of the plan has no TASK=PID");
        return usage_error(l.as_bytes());
    }
    let image = match read_plan(o.blob, false) {
        Ok(b) if b.len() >= 48 && &b[..8] == b"FDSLOTB\0" => b,
        _ => return usage_error(b"inject: --blob is not a readable fdslot.blob"),
    };
    let u32_at = |o: usize| u32::from_le_bytes([image[o], image[o + 1], image[o + 2], image[o + 3]]) as usize;
    let u64_at = |o: usize| u64::from_le_bytes([image[o], image[o + 1], image[o + 2], image[o + 3], image[o + 4], image[o + 5], image[o + 6], image[o + 7]]) as usize;
    let (version, entry, image_size, mem_size, stack, exec) = (u32_at(8), u32_at(12), u64_at(16), u64_at(24), u64_at(32), u64_at(40));
    if version != 2 || image_size != image.len() || mem_size < image_size || entry >= exec || exec > image_size || exec % 4096 != 0 || stack > 1 << 24 {
        return usage_error(b"inject: --blob has a bad header");
    }
    let lay = layout(mem_size, plan.text.len(), stack);
    let mut random = [0u8; 12];
    if let Err(e) = proc::getrandom(&mut random) {
        say(0, 0, b"getrandom", Some(e));
        return EXIT_RESTORE as i32;
    }
    let mut session = [0u8; 32];
    session[..6].copy_from_slice(b"inject");
    for (i, b) in random.iter().enumerate() {
        session[6 + 2 * i] = b"0123456789abcdef"[(b >> 4) as usize];
        session[7 + 2 * i] = b"0123456789abcdef"[(b & 15) as usize];
    }
    let mut tr = match Tracer::new() {
        Ok(t) => t,
        Err(e) => {
            say(0, 0, b"signalfd", Some(e));
            return EXIT_RESTORE as i32;
        }
    };
    let mut listen_name = [0u8; 44];
    listen_name[..14].copy_from_slice(b"fdslot-inject-");
    listen_name[14..44].copy_from_slice(&session[..30]);
    let listen_addr = UnixAddr::abstract_name(&listen_name);
    let listener = match open_listener(&listen_addr) {
        Ok(l) => l,
        Err(e) => {
            say(0, 0, b"the sync socket (socket, bind, listen)", Some(e));
            return EXIT_RESTORE as i32;
        }
    };
    let deadline = proc::monotonic_ns() + o.timeout_ms * 1_000_000;
    let flags = FLAG_PRESERVE | if o.keep_others { FLAG_KEEP_OTHERS } else { 0 };
    let job = Job { lay: &lay, image, exec, plan: &plan, session: &session, keep: &o.keep, timeout_ms: o.timeout_ms, batch: o.batch, flags, listener, listen_addr: &listen_addr };
    let mut targets = heapless::Vec::<Target, MAX_TARGETS>::new();
    let mut code = 0;
    for &(task, pid) in o.pairs.iter() {
        let pidfd = match proc::pidfd_open(pid) {
            Ok(f) => f,
            Err(e) => {
                say(pid, task, b"pidfd_open", Some(e));
                code = EXIT_RESTORE as i32;
                break;
            }
        };
        let _ = targets.push(Target {
            task,
            pid,
            pidfd,
            threads: heapless::Vec::new(),
            saved: [0; 27],
            code_addr: 0,
            code_word: 0,
            base: 0,
            len: lay.len,
            entry,
            masked: false,
            remote_sync: -1,
            conn: -1,
            phase: Phase::Started,
            started: false,
            returned: false,
            exited: false,
            stop: None,
            deferred: 0,
            stop_on_detach: false,
            result: 0,
        });
        let i = targets.len() - 1;
        if let Err((what, e)) = seize(&mut tr, &mut targets, i, deadline) {
            say(pid, task, what.as_bytes(), Some(e));
            code = EXIT_RESTORE as i32;
            break;
        }
        if let Err((what, e)) = prepare(&mut tr, &mut targets, i, &job, deadline) {
            say(pid, task, what.as_bytes(), Some(e));
            code = EXIT_RESTORE as i32;
            break;
        }
    }
    let _ = fd::close(listener);
    if code == 0 {
        code = run_blobs(&mut tr, &mut targets, &lay, deadline);
    }
    let grace = proc::monotonic_ns().max(deadline) + 2_000_000_000;
    for i in 0..targets.len() {
        clean_up(&mut tr, &mut targets, i, &lay, grace);
    }
    for t in targets.iter() {
        if t.conn >= 0 {
            let _ = fd::close(t.conn);
        }
    }
    if tr.interrupted != 0 {
        return 128 + tr.interrupted as i32;
    }
    code
}

fn open_listener(addr: &UnixAddr) -> Result<Fd, Errno> {
    let l = sock::socket_unix(n::SOCK_SEQPACKET | sock::SOCK_CLOEXEC | sock::SOCK_NONBLOCK)?;
    let r = sock::bind(l, addr).and_then(|()| sock::listen(l, MAX_TARGETS as u32));
    if let Err(e) = r {
        let _ = fd::close(l);
        return Err(e);
    }
    Ok(l)
}

/// What every target gets.
struct Job<'a> {
    lay: &'a Layout,
    image: &'a [u8],
    /// Bytes from the blob's start to make read+exec.
    exec: usize,
    plan: &'a crate::plan::Plan<'a>,
    session: &'a [u8; 32],
    keep: &'a [u32],
    timeout_ms: u64,
    batch: u32,
    flags: u32,
    listener: Fd,
    listen_addr: &'a UnixAddr,
}

/// Blocks the target's signals, maps memory in it, writes the blob, its arguments, the plan and
/// the return trap, and connects its sync socket to this process.
fn prepare(tr: &mut Tracer, targets: &mut [Target], i: usize, job: &Job<'_>, deadline: u64) -> Result<(), (&'static str, Errno)> {
    let lay = job.lay;
    let t = &mut targets[i];
    t.saved = getregs(t.pid).map_err(|e| ("PTRACE_GETREGS", e))?;
    t.code_addr = (t.saved[RIP] as usize) & !7;
    // The raw PEEK request stores the word at `data` (libc's wrapper returns it instead).
    let mut word = 0usize;
    proc::ptrace(pt::PTRACE_PEEKTEXT, t.pid, t.code_addr, &mut word as *mut usize as usize).map_err(|e| ("PTRACE_PEEKTEXT", e))?;
    t.code_word = word;
    // syscall; int3 over the first three bytes of the word.
    let patched = (t.code_word & !0xff_ffff) | 0xcc_050f;
    proc::ptrace(pt::PTRACE_POKETEXT, t.pid, t.code_addr, patched).map_err(|e| ("PTRACE_POKETEXT", e))?;
    let prot = (g::PROT_READ | g::PROT_WRITE) as u64;
    let flags = (g::MAP_PRIVATE | g::MAP_ANONYMOUS) as u64;
    let base = remote_ok(tr, targets, i, g::__NR_mmap, [0, lay.len as u64, prot, flags, u64::MAX, 0], deadline).map_err(|e| ("mmap (injected)", e))?;
    targets[i].base = base as usize;
    let b = base as usize;
    let pid = targets[i].pid;
    // The mask first, so that no handler runs on our registers from here on.
    let all = u64::MAX.to_ne_bytes();
    let mut masks = [0u8; 16];
    masks[..8].copy_from_slice(&all);
    write_remote(pid, b + lay.masks, &masks)?;
    let r = remote_ok(tr, targets, i, g::__NR_rt_sigprocmask, [g::SIG_SETMASK as u64, (b + lay.masks) as u64, (b + lay.masks + 8) as u64, 8, 0, 0], deadline);
    r.map_err(|e| ("rt_sigprocmask (injected)", e))?;
    targets[i].masked = true;
    // The sync socket: the target connects to our listener, and we accept only that pid.
    // SAFETY: sockaddr_un is plain bytes.
    let addr_bytes = unsafe { core::slice::from_raw_parts(&job.listen_addr.raw as *const n::sockaddr_un as *const u8, core::mem::size_of::<n::sockaddr_un>()) };
    write_remote(pid, b + lay.addr, addr_bytes)?;
    let kind = (n::SOCK_SEQPACKET | sock::SOCK_CLOEXEC) as u64;
    let s = remote_ok(tr, targets, i, g::__NR_socket, [n::AF_UNIX as u64, kind, 0, 0, 0, 0], deadline).map_err(|e| ("socket (injected)", e))?;
    targets[i].remote_sync = s as Fd;
    remote_ok(tr, targets, i, g::__NR_connect, [s, (b + lay.addr) as u64, job.listen_addr.len as u64, 0, 0, 0], deadline).map_err(|e| ("connect (injected)", e))?;
    targets[i].conn = accept_from(job.listener, pid, deadline).map_err(|e| ("accepting its sync socket", e))?;
    let t = &targets[i];
    let args = Args64 {
        plan: (b + lay.plan) as u64,
        plan_len: job.plan.text.len() as u64,
        task: t.task as u32,
        sync_fd: s as i32,
        timeout_ms: job.timeout_ms as u32,
        batch: job.batch,
        session: *job.session,
        error: (b + lay.error) as u64,
        error_len: ERROR_LEN as u64,
        keep: (b + lay.keep) as u64,
        keep_len: job.keep.len() as u32,
        flags: job.flags,
    };
    // SAFETY: Args64 is plain integers; viewing it as bytes is sound.
    let args_bytes = unsafe { core::slice::from_raw_parts(&args as *const Args64 as *const u8, core::mem::size_of::<Args64>()) };
    let mut keep_bytes = [0u8; MAX_KEEP * 4];
    for (k, v) in job.keep.iter().enumerate() {
        keep_bytes[4 * k..4 * k + 4].copy_from_slice(&v.to_ne_bytes());
    }
    for (off, data) in [(0, job.image), (lay.args, args_bytes), (lay.plan, job.plan.text), (lay.keep, &keep_bytes[..]), (lay.trap, &[0xccu8][..])] {
        write_remote(pid, b + off, data)?;
    }
    // Written while writable, now executable: the blob's code, and the page of the return trap.
    let rx = (g::PROT_READ | g::PROT_EXEC) as u64;
    remote_ok(tr, targets, i, g::__NR_mprotect, [b as u64, job.exec as u64, rx, 0, 0, 0], deadline).map_err(|e| ("mprotect (injected)", e))?;
    let trap_page = (b + lay.trap) & !4095;
    remote_ok(tr, targets, i, g::__NR_mprotect, [trap_page as u64, 4096, rx, 0, 0, 0], deadline).map_err(|e| ("mprotect (injected)", e))?;
    Ok(())
}

fn write_remote(pid: i32, at: usize, data: &[u8]) -> Result<(), (&'static str, Errno)> {
    match proc::vm_write(pid, at, data) {
        Ok(n) if n == data.len() => Ok(()),
        Ok(_) => Err(("process_vm_writev", Errno::INVAL)),
        Err(e) => Err(("process_vm_writev", e)),
    }
}

/// Accepts connections until one comes from `pid` (SO_PEERCRED); others are closed.
fn accept_from(listener: Fd, pid: i32, deadline: u64) -> Result<Fd, Errno> {
    loop {
        match sock::accept4(listener, sock::SOCK_CLOEXEC) {
            Ok(c) => {
                if sock::peer_cred(c).map(|(p, _, _)| p) == Ok(pid) {
                    return Ok(c);
                }
                let _ = fd::close(c);
            }
            Err(e) if e == Errno::AGAIN || e == Errno::INTR => {
                if !crate::restore::barrier::wait_readable(listener, deadline)? {
                    return Err(Errno::TIMEDOUT);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Starts every target's blob and is their barrier: `go` once all are bound, `commit` once all
/// are done, `abort` as soon as one fails or ends. Then waits for each to return, and reports.
fn run_blobs(tr: &mut Tracer, targets: &mut [Target], lay: &Layout, deadline: u64) -> i32 {
    for t in targets.iter_mut() {
        let mut r = t.saved;
        let rsp = lay.stack_top - 8;
        if let Err(e) = proc::vm_write(t.pid, t.base + rsp, &((t.base + lay.trap) as u64).to_ne_bytes()) {
            say(t.pid, t.task, b"writing the stack", Some(e));
            return EXIT_RESTORE as i32;
        }
        r[RIP] = (t.base + t.entry) as u64;
        r[RSP] = (t.base + rsp) as u64;
        r[RDI] = (t.base + lay.args) as u64;
        r[RAX] = 0;
        r[ORIG_RAX] = u64::MAX;
        if let Err(e) = setregs(t.pid, &r).and_then(|_| proc::ptrace(pt::PTRACE_CONT, t.pid, 0, 0).map(|_| ())) {
            say(t.pid, t.task, b"starting the blob", Some(e));
            return EXIT_RESTORE as i32;
        }
        // From here the blob owns the sync socket in the target.
        t.remote_sync = -1;
        t.started = true;
    }
    let verdict = coordinate(tr, targets, lay, deadline);
    // Every blob now returns: collect them, up to a grace period past the deadline.
    let grace = deadline + 2_000_000_000;
    for i in 0..targets.len() {
        while !targets[i].returned && !targets[i].exited {
            let trap = targets[i].base + lay.trap;
            let status = match tr.wait_stop(targets, i, grace) {
                Ok(s) => s,
                Err(_) => break,
            };
            match classify(&mut targets[i], status, trap) {
                Ok(Some(regs)) => {
                    targets[i].returned = true;
                    targets[i].result = regs[RAX] as i64;
                }
                Ok(None) => {
                    let _ = proc::ptrace(pt::PTRACE_CONT, targets[i].pid, 0, 0);
                }
                Err(_) => break,
            }
        }
    }
    report(targets, lay, verdict)
}

/// The barrier's outcome.
#[derive(PartialEq, Eq)]
enum Verdict {
    Committed,
    Aborted,
    TimedOut,
}

fn send_all(targets: &[Target], msg: &[u8], floor: Phase) {
    for t in targets.iter() {
        if t.conn >= 0 && t.phase >= floor && t.phase != Phase::Failed {
            let _ = sock::send(t.conn, msg, n::MSG_DONTWAIT);
        }
    }
}

/// Reads the blobs' sync messages until the group commits or aborts.
fn coordinate(tr: &mut Tracer, targets: &mut [Target], lay: &Layout, deadline: u64) -> Verdict {
    let mut go = false;
    loop {
        tr.collect(targets);
        let mut failed = tr.interrupted != 0;
        for t in targets.iter_mut() {
            // A blob returns only after it reported; one that returned early has failed.
            if t.exited || t.returned {
                t.phase = Phase::Failed;
            }
            if let Some(status) = t.stop.take() {
                match classify(t, status, t.base + lay.trap) {
                    Ok(Some(regs)) => {
                        t.returned = true;
                        t.result = regs[RAX] as i64;
                        t.phase = Phase::Failed;
                    }
                    Ok(None) => {
                        let _ = proc::ptrace(pt::PTRACE_CONT, t.pid, 0, 0);
                    }
                    Err(_) => t.phase = Phase::Failed,
                }
            }
            failed |= t.phase == Phase::Failed;
        }
        if failed {
            send_all(targets, b"abort", Phase::Started);
            return Verdict::Aborted;
        }
        if !go && targets.iter().all(|t| t.phase >= Phase::Bound) {
            send_all(targets, b"go", Phase::Bound);
            go = true;
        }
        if targets.iter().all(|t| t.phase == Phase::Done) {
            send_all(targets, b"commit", Phase::Done);
            return Verdict::Committed;
        }
        let mut p = [g::pollfd { fd: -1, events: 0, revents: 0 }; 2 * MAX_TARGETS];
        for (k, t) in targets.iter().enumerate() {
            p[2 * k] = g::pollfd { fd: t.conn, events: g::POLLIN as i16, revents: 0 };
            p[2 * k + 1] = g::pollfd { fd: t.pidfd, events: g::POLLIN as i16, revents: 0 };
        }
        if !tr.sleep(&mut p[..2 * targets.len()], deadline) {
            send_all(targets, b"abort", Phase::Started);
            return Verdict::TimedOut;
        }
        for (k, t) in targets.iter_mut().enumerate() {
            if p[2 * k].revents != 0 {
                read_sync(t);
            }
            if p[2 * k + 1].revents != 0 {
                t.phase = Phase::Failed;
            }
        }
    }
}

/// Takes one message from a blob: `bound`, `done`, or `error: ...` (read as untrusted data:
/// anything else, or the socket closing, counts as a failure).
fn read_sync(t: &mut Target) {
    let mut buf = [0u8; 300];
    match sock::recv(t.conn, &mut buf, n::MSG_DONTWAIT) {
        Err(e) if e == Errno::AGAIN || e == Errno::INTR => {}
        Ok(k) if &buf[..k] == b"bound" && t.phase == Phase::Started => t.phase = Phase::Bound,
        Ok(k) if &buf[..k] == b"done" && t.phase == Phase::Bound => t.phase = Phase::Done,
        _ => t.phase = Phase::Failed,
    }
}

/// Prints what went wrong, first the processes whose own restore failed (in the command's
/// order), then the rest; returns the exit code.
fn report(targets: &[Target], lay: &Layout, verdict: Verdict) -> i32 {
    let all_ok = targets.iter().all(|t| t.returned && t.result == 0);
    if verdict == Verdict::Committed && all_ok {
        return 0;
    }
    let mut code = 0;
    // Own failures first: a blob that returned 1 or 2, or a process that ended.
    for pass in 0..2 {
        for t in targets.iter() {
            let own = t.exited || !t.returned || matches!(-t.result, 1 | 2 | 14);
            if (pass == 0) != own || (t.returned && t.result == 0) {
                continue;
            }
            if t.exited {
                say(t.pid, t.task, b"the process ended during the restore", None);
            } else if !t.returned {
                say(t.pid, t.task, b"the blob did not return in time; its table may be partly rebuilt", None);
            } else {
                let mut err = [0u8; ERROR_LEN];
                let _ = proc::vm_read(t.pid, t.base + lay.error, &mut err);
                let mut l = Line::<{ ERROR_LEN + 8 }>::new();
                for &c in err.iter().take_while(|&&c| c != 0) {
                    // The target's memory is not ours to trust: printable ASCII only.
                    l.push(&[if (0x20..0x7f).contains(&c) { c } else { b'?' }]);
                }
                if l.is_empty() {
                    l.str("fdslot: inject: task ").num(t.task as u64).str(" pid ").num(t.pid as u64).str(": the blob failed (").signed(t.result).str(")");
                }
                l.str("\n");
                eprint(l.as_bytes());
            }
            if code == 0 {
                code = match (t.returned, -t.result) {
                    (true, 2) => EXIT_USAGE as i32,
                    (true, 3) => EXIT_PEER as i32,
                    _ => EXIT_RESTORE as i32,
                };
            }
        }
    }
    if code == 0 {
        eprint(b"fdslot: inject: timed out: no process failed, but not all were done in time\n");
        code = EXIT_PEER as i32;
    }
    code
}

/// Leaves the target as it was: interrupts a blob that never returned, closes an injected
/// socket the blob never took, re-queues deferred signals, restores the mask, unmaps, releases.
fn clean_up(tr: &mut Tracer, targets: &mut [Target], i: usize, lay: &Layout, deadline: u64) {
    if targets[i].exited {
        release(&targets[i]);
        return;
    }
    if targets[i].started && !targets[i].returned {
        let _ = proc::ptrace(pt::PTRACE_INTERRUPT, targets[i].pid, 0, 0);
        loop {
            match tr.wait_stop(targets, i, deadline) {
                Ok(status) if event_of(status) == pt::PTRACE_EVENT_STOP => break,
                Ok(status) => {
                    let _ = classify(&mut targets[i], status, 0);
                    let _ = proc::ptrace(pt::PTRACE_CONT, targets[i].pid, 0, 0);
                }
                Err(_) => break,
            }
        }
    }
    let t = &targets[i];
    let (pid, remote_sync, base, len, masked, deferred) = (t.pid, t.remote_sync, t.base, t.len, t.masked, t.deferred);
    if remote_sync >= 0 {
        let _ = remote_syscall(tr, targets, i, g::__NR_close, [remote_sync as u64, 0, 0, 0, 0, 0], deadline);
    }
    // Signals that arrived while we held the thread: pending again, delivered once unmasked.
    for sig in 1..=64u32 {
        if deferred & sigbit(sig) != 0 {
            let _ = remote_syscall(tr, targets, i, g::__NR_kill, [pid as u64, sig as u64, 0, 0, 0, 0], deadline);
        }
    }
    if masked {
        let _ = remote_syscall(tr, targets, i, g::__NR_rt_sigprocmask, [g::SIG_SETMASK as u64, (base + lay.masks + 8) as u64, 0, 8, 0, 0], deadline);
    }
    if base != 0 {
        let _ = remote_syscall(tr, targets, i, g::__NR_munmap, [base as u64, len as u64, 0, 0, 0, 0], deadline);
    }
    release(&targets[i]);
}
