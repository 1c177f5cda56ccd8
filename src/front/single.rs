//! `fdslot restore`: one task in the calling process, for a parent tool that starts one per task.

use super::args::{self, Args};
use super::{eprint, exec, load_plan, usage_error};
use crate::report::EXIT_USAGE;
use crate::restore::roles::MAX_BATCH;
use crate::restore::{restore_alone, AloneOptions, MAX_KEEP};
use crate::sys::{fd, proc};
use crate::text::{parse_radix, Line};
use linux_raw_sys::general as g;

/// `fdslot restore`.
///
/// # Safety
/// `envp` must be the process's environment array.
pub unsafe fn cmd_restore(a: &mut Args, envp: *const *const u8) -> i32 {
    let (mut path, mut task_id, mut session, mut sync_fd) = (None, None, None, -1);
    let (mut timeout, mut batch) = (10_000_000_000u64, MAX_BATCH);
    let mut keep = heapless::Vec::<u32, MAX_KEEP>::new();
    let mut prog: *const *const u8 = core::ptr::null();
    while let Some(arg) = a.next() {
        let r = match arg {
            b"--session" => a.session().map(|s| session = Some(s)),
            b"--sync-fd" => a.number("--sync-fd", 0, i32::MAX as u64).map(|v| sync_fd = v as i32),
            b"--timeout" => a.timeout().map(|v| timeout = v),
            b"--batch" => a.batch().map(|v| batch = v),
            b"--keep" => a.keep(&mut keep),
            b"--" => {
                prog = a.rest_ptr();
                Ok(())
            }
            _ if path.is_none() && !arg.starts_with(b"--") => {
                path = Some(arg);
                Ok(())
            }
            _ if task_id.is_none() && !arg.starts_with(b"--") => match parse_radix(arg, 10) {
                Some(v) if (1..=65535).contains(&v) => {
                    task_id = Some(v as u16);
                    Ok(())
                }
                _ => Err(usage_error(b"TASK must be a task id, 1 to 65535")),
            },
            _ => Err(args::unexpected(arg)),
        };
        if let Err(c) = r {
            return c;
        }
    }
    let (Some(path), Some(task_id), Some(session)) = (path, task_id, session) else {
        return usage_error(b"restore needs PLAN TASK --session S");
    };
    if sync_fd >= 0 && fd::fcntl(sync_fd, g::F_GETFD, 0).is_err() {
        return usage_error(b"--sync-fd is not an open fd");
    }
    let deadline = proc::monotonic_ns() + timeout;
    let plan = match load_plan(path, false) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let Some(t) = plan.task_by_id(task_id) else {
        let mut l = Line::<200>::new();
        l.str("fdslot: ").push(path).str(": task ").num(task_id as u64).str(" is not in the plan\n");
        eprint(l.as_bytes());
        return EXIT_USAGE as i32;
    };
    if plan.tasks[t].files != 0 {
        let mut l = Line::<200>::new();
        l.str("fdslot: task ").num(task_id as u64).str(" shares task ").num(plan.tasks[plan.tasks[t].owner as usize].id as u64);
        l.str("'s fd table (files=): restore that task only\n");
        eprint(l.as_bytes());
        return EXIT_USAGE as i32;
    }
    let err_fd = if fd::fcntl(2, g::F_GETFD, 0).is_ok() { 2 } else { -1 };
    let options = AloneOptions { session, batch, sync_fd, err_fd, keep: &keep, deadline, preserve: false, keep_others: false };
    let mut barrier = match restore_alone(&plan, t, &options, |_| {}) {
        Ok(b) => b,
        Err(code) => return code as i32,
    };
    let err_fd = barrier.err_fd;
    barrier.err_fd = -1;
    barrier.close();
    let e = if !prog.is_null() && !unsafe_is_null(prog) {
        // SAFETY: prog points into the kernel's argv, NULL-terminated; envp is the caller's.
        unsafe { exec::exec_argv(prog, envp) }
    } else if plan.tasks[t].exec.len != 0 {
        // SAFETY: envp is the process's environment (see above).
        unsafe { exec::exec_plan_argv(&plan, plan.tasks[t].exec, envp) }
    } else {
        if err_fd >= 0 {
            let _ = fd::close(err_fd);
        }
        return 0;
    };
    if err_fd >= 0 {
        let mut line = Line::<200>::new();
        line.str("fdslot: task ").num(task_id as u64).str(": exec: ").str(e.name().unwrap_or("error")).str("\n");
        let _ = fd::write_all(err_fd, line.as_bytes());
    }
    127
}

fn unsafe_is_null(p: *const *const u8) -> bool {
    // SAFETY: p points into argv, which has a NULL after its last entry.
    unsafe { (*p).is_null() }
}
