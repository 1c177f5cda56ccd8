//! Under `run`, a task that sends nothing restores as SCHED_BATCH (so that its openers keep
//! their cores) and gets its policy back before it is stopped or execs. Checked with the
//! kernel: sched_getscheduler and getpriority of every restored task, and the tables.

#[macro_use]
mod common;

use common::*;
use std::os::unix::process::CommandExt;

/// Task 1 opens `n` files that tasks 2 and 3 receive: 2 and 3 send nothing.
fn receivers_plan(d: &TmpDir, n: u32) -> Plan {
    let f = d.file("f", b"0123456789");
    let mut p = Plan::new();
    p.task(1).child(2, 1).child(3, 1);
    for i in 0..n {
        p.reg(i + 1, &f, "rdonly").at(1, 3 + i).at(2, 3 + i).at(3, 3 + i);
    }
    p
}

/// (policy, nice) of `pid`, as the kernel has them.
fn sched_of(pid: i32) -> (i32, i32) {
    // SAFETY: plain syscalls on a pid; errno is read right after.
    unsafe {
        let policy = libc::sched_getscheduler(pid);
        assert!(policy >= 0, "sched_getscheduler({pid}): {}", std::io::Error::last_os_error());
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, pid as libc::id_t);
        assert_eq!(*libc::__errno_location(), 0, "getpriority({pid})");
        (policy, nice)
    }
}

/// Runs the plan with `run --stop --batch B`, `run` itself started with `policy` and `nice`,
/// checks the tables, and returns every task's (policy, nice).
fn restored_sched(plan: &Plan, d: &TmpDir, batch: &str, policy: i32, nice: i32) -> Vec<(u16, (i32, i32))> {
    let path = d.plan(&plan.text());
    let mut cmd = run_stop_cmd(&path, &["--batch", batch]);
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let param = libc::sched_param { sched_priority: 0 };
            if libc::sched_setscheduler(0, policy, &param) != 0 || libc::setpriority(libc::PRIO_PROCESS, 0, nice) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let r = match start_stopped(cmd) {
        Ok(r) => r,
        Err(o) => panic!("run did not get to ready: {o}"),
    };
    let errs = check_plan(plan, &r.pids, &CheckOpts { stopped: true, ..Default::default() });
    assert!(errs.is_empty(), "tables:\n  {}", errs.join("\n  "));
    plan.task_ids().iter().map(|&t| (t, sched_of(r.pid(t)))).collect()
}

#[test]
fn receivers_get_their_policy_and_nice_back() {
    let d = TmpDir::new("sched-back");
    // Enough files that the receivers wait for their opener many times.
    let plan = receivers_plan(&d, 300);
    for batch in ["1", "253"] {
        for nice in [0, 5] {
            for (t, got) in restored_sched(&plan, &d, batch, libc::SCHED_OTHER, nice) {
                assert_eq!(got, (libc::SCHED_OTHER, nice), "task {t} (--batch {batch}): (policy, nice) after the restore");
            }
        }
    }
}

#[test]
fn a_policy_the_caller_chose_is_left_alone() {
    let d = TmpDir::new("sched-caller");
    let plan = receivers_plan(&d, 50);
    for policy in [libc::SCHED_BATCH, libc::SCHED_IDLE] {
        for (t, got) in restored_sched(&plan, &d, "1", policy, 3) {
            assert_eq!(got, (policy, 3), "task {t}: (policy, nice) after a restore started with policy {policy}");
        }
    }
}
