//! `fdslot` as pid 1: the `/init` of an initramfs.
//!
//! The kernel starts `/init` as pid 1 with argv `/init` (plus any words of its command line it
//! did not recognise), an environment made of `HOME`, `TERM` and the command line's unknown
//! `key=value` words, and fds 0, 1 and 2 on `/dev/console` when the archive has that node. If
//! pid 1 ever exits, the kernel panics. So pid 1 does as little as possible itself:
//!
//! 1. it makes sure fds 0..2 are open (on `/dev/console` if the kernel could not open them);
//! 2. it forks one child that is exactly `fdslot run PLAN`, where PLAN is `$FDSLOT_PLAN` (set
//!    with `FDSLOT_PLAN=/path` on the kernel command line) or `/fdslot.plan`;
//! 3. it reaps every process until none is left (pid 1 adopts every orphan), prints one status
//!    line, and powers the machine off with `reboot(LINUX_REBOOT_CMD_POWER_OFF)`.
//!
//! Whatever fails (fork, the plan, the restore, a panic in pid 1), the line says so and the
//! machine powers off; should even that fail, pid 1 sleeps forever rather than exit. Nothing is
//! synced: an initramfs lives in memory, and fdslot mounts nothing.

use super::exec::env_value;
use super::eprint;
use crate::sys::{fd, proc, Errno};
use crate::text::Line;
use core::sync::atomic::{AtomicBool, Ordering};
use linux_raw_sys::general as g;

/// The plan pid 1 runs when `FDSLOT_PLAN` is not set.
pub const DEFAULT_PLAN: &[u8] = b"/fdslot.plan\0";

/// The environment variable (a `key=value` word of the kernel command line) naming the plan.
pub const PLAN_VAR: &[u8] = b"FDSLOT_PLAN";

/// Set while this process runs as init: a panic then powers off instead of exiting.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Whether a command line without a command word means init mode: only as pid 1.
pub fn is_pid1() -> bool {
    proc::getpid() == 1
}

/// Whether a panic must power the machine off: we are init, and still pid 1 (not a child
/// forked from it, which inherits the flag).
pub fn must_power_off() -> bool {
    ACTIVE.load(Ordering::Relaxed) && is_pid1()
}

/// Runs the plan as init; never returns.
///
/// # Safety
/// `envp` must be the process's NULL-terminated environment array.
pub unsafe fn main(envp: *const *const u8) -> ! {
    ACTIVE.store(true, Ordering::Relaxed);
    open_console();
    // SAFETY: envp is the kernel's, as our caller promised; its strings live for the process.
    let plan = match unsafe { env_value(envp, PLAN_VAR) } {
        // The value ends where the kernel's NUL-terminated `KEY=value` string ends.
        Some(v) if !v.is_empty() => v.as_ptr(),
        _ => DEFAULT_PLAN.as_ptr(),
    };
    // SAFETY: plan points at a NUL-terminated string that lives for the process.
    let plan_name = unsafe { crate::text::c_str(plan) };
    let mut status = Line::<300>::new();
    status.str("fdslot: init: running ").push(plan_name).str("\n");
    eprint(status.as_bytes());
    status.clear();
    status.str("fdslot: init: ").push(plan_name).str(": ");
    match proc::fork() {
        Ok(0) => {
            let argv: [*const u8; 4] = [c"fdslot".as_ptr().cast(), c"run".as_ptr().cast(), plan, core::ptr::null()];
            // SAFETY: argv is NULL-terminated and lives until this process exits (we never
            // return from this frame); envp as promised. This child is not pid 1, so main
            // dispatches `run` as on any command line.
            let code = unsafe { super::main(3, argv.as_ptr(), envp) };
            proc::exit(code)
        }
        Ok(run_pid) => match reap_all(run_pid) {
            Some(ev) if ev.code == g::CLD_EXITED => {
                status.str("exit ").num(ev.status as u64);
            }
            Some(ev) => {
                status.str("killed by signal ").num(ev.status as u64);
            }
            None => {
                status.str("run vanished");
            }
        },
        Err(e) => {
            status.str("fork: ").str(e.name().unwrap_or("error"));
        }
    }
    status.str("; powering off\n");
    eprint(status.as_bytes());
    power_off()
}

/// Opens `/dev/console` on fds 0, 1 and 2 unless the kernel already did (it does when the
/// archive holds the node, char 5:1). Without it there is nowhere to write: carry on silently.
fn open_console() {
    if fd::fcntl(1, g::F_GETFD, 0).is_ok() {
        return;
    }
    let Ok(console) = fd::open(b"/dev/console\0", g::O_RDWR | g::O_NOCTTY, 0) else { return };
    for slot in 0..3 {
        if slot != console {
            let _ = fd::dup3(console, slot, 0);
        }
    }
    if console > 2 {
        let _ = fd::close(console);
    }
}

/// Reaps every child (the run, and whatever pid 1 adopts) until there is none; returns how the
/// run ended.
fn reap_all(run_pid: i32) -> Option<proc::ChildEvent> {
    let mut run = None;
    loop {
        match proc::waitid(g::P_ALL, 0, g::WEXITED) {
            Ok(Some(ev)) if ev.pid == run_pid => run = Some(ev),
            Ok(_) => {}
            Err(e) if e == Errno::INTR => {}
            // ECHILD: nothing is left to wait for.
            Err(_) => return run,
        }
    }
}

/// Powers the machine off; if the kernel refuses (no CAP_SYS_BOOT), says so and sleeps forever:
/// pid 1 must not exit.
pub fn power_off() -> ! {
    let e = proc::reboot(g::LINUX_REBOOT_CMD_POWER_OFF);
    let mut l = Line::<120>::new();
    l.str("fdslot: init: reboot(POWER_OFF): ").str(e.name().unwrap_or("error")).str("; sleeping forever\n");
    eprint(l.as_bytes());
    loop {
        let _ = fd::poll(&mut [], None);
    }
}
