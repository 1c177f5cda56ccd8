//! Relays under `run`: with sharing scattered over many tasks, `run` adds relay processes that
//! open every object two or more tables hold and send each task its shared files in a few full
//! batches. Checked by the kernel: the tables (kcmp, fdinfo, FD_CLOEXEC, nothing else open),
//! who opened the files and who received them (strace), that the relays are gone once the
//! tasks are ready, and the failure line when a relay cannot open a file.

#[macro_use]
mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

/// `tasks` tasks (children of task 1 from seed 3 up, roots before) with `per` fds each at
/// random slots from 3 up; every object is held by 1 to
/// 4 random tasks (sometimes twice by one), a few are pipes whose ends go to different tasks.
/// Files are `s0..s3` (for objects two or more tasks hold) and `p0..p3` (for the others) in
/// `d`, opened with differing flags, offsets and FD_CLOEXEC.
fn scattered_plan(d: &TmpDir, tasks: u16, per: u32, seed: u64) -> Plan {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let file = |name: String| d.file(&name, format!("{name} of the relay test, long enough for offsets").as_bytes());
    let shared: Vec<_> = (0..4).map(|i| file(format!("s{i}"))).collect();
    let private: Vec<_> = (0..4).map(|i| file(format!("p{i}"))).collect();
    let mut p = Plan::new();
    for t in 1..=tasks {
        if t > 1 && seed >= 3 {
            p.child(t, 1);
        } else {
            p.task(t);
        }
    }
    // Per task, the free slots, shuffled: each object takes its fds from them.
    let mut free: BTreeMap<u16, Vec<u32>> = (1..=tasks)
        .map(|t| {
            let mut v: Vec<u32> = (3..3 + per + per / 2).collect();
            rng.shuffle(&mut v);
            v.truncate(per as usize);
            (t, v)
        })
        .collect();
    let mut id = 0;
    loop {
        let holders = 1 + rng.below(4) as usize;
        let mut who: Vec<u16> = (0..holders).map(|_| 1 + rng.below(tasks as u64) as u16).filter(|t| !free[t].is_empty()).collect();
        who.dedup();
        if who.is_empty() {
            if free.values().all(|v| v.is_empty()) {
                break;
            }
            continue;
        }
        id += 1;
        if id % 17 == 0 && who.len() >= 2 {
            let (r, w) = (who[0], who[1]);
            let (fr, fw) = (free.get_mut(&r).unwrap().pop().unwrap(), free.get_mut(&w).unwrap().pop().unwrap());
            p.pipe(id).r(r, fr).w(w, fw);
            continue;
        }
        let distinct: BTreeSet<u16> = who.iter().copied().collect();
        let f = &(if distinct.len() >= 2 { &shared } else { &private })[rng.below(4) as usize];
        let flags = ["rdonly", "rdwr", "rdwr,append", "rdonly,nonblock"][rng.below(4) as usize];
        let o = p.reg_pos(id, f, flags, rng.below(40));
        for &t in &who {
            // Sometimes a dup in the same task.
            for _ in 0..1 + (rng.below(6) == 0) as usize {
                let Some(fd) = free.get_mut(&t).unwrap().pop() else { break };
                if rng.below(3) == 0 {
                    o.at_ce(t, fd);
                } else {
                    o.at(t, fd);
                }
            }
        }
    }
    p
}

/// What an strace log shows of a restore.
struct Seen {
    /// The pids that opened a file of the plan that two or more tasks hold (`s0..s3`).
    openers: BTreeSet<i32>,
    /// Those opens, and how many of them were by name below a held directory.
    opens: usize,
    relative: usize,
    /// The pids that took fds out of a socket, and how many messages with fds they took.
    receivers: BTreeSet<i32>,
    recvs: usize,
}

fn seen(log: &str, dir: &std::path::Path) -> Seen {
    let dir = dir.to_str().unwrap();
    let mut s = Seen { openers: BTreeSet::new(), opens: 0, relative: 0, receivers: BTreeSet::new(), recvs: 0 };
    for l in log.lines() {
        let Some((pid, call)) = l.split_once(' ') else { continue };
        let Ok(pid) = pid.trim().parse::<i32>() else { continue };
        let call = call.trim_start();
        // By the whole path, or by name below a held directory.
        if let Some(path) = call.strip_prefix("openat(").and_then(|c| c.split('"').nth(1)) {
            let name = path.rsplit('/').next().unwrap_or("");
            let ours = !path.contains('/') || path.starts_with(dir);
            if ours && name.len() == 2 && name.starts_with('s') && name.as_bytes()[1].is_ascii_digit() {
                s.openers.insert(pid);
                s.opens += 1;
                s.relative += !path.contains('/') as usize;
            }
        }
        // strace splits a call that another process's line interrupts.
        if (call.starts_with("recvmsg(") || call.starts_with("<... recvmsg resumed>")) && call.contains("SCM_RIGHTS") {
            s.receivers.insert(pid);
            s.recvs += 1;
        }
    }
    s
}

fn strace_run(plan: &std::path::Path, args: &[&str]) -> String {
    let mut all: Vec<&std::ffi::OsStr> = vec!["run".as_ref(), plan.as_os_str()];
    all.extend(args.iter().map(std::ffi::OsStr::new));
    strace_fdslot("openat,recvmsg", &all)
}

/// The tables are as planned, with relays chosen by default, forced in number, and off.
fn tables(args: &[&str]) {
    let d = TmpDir::new("reltab");
    let p = scattered_plan(&d, 120, 40, 1);
    run_and_check(&p, &d, args);
}

#[test]
fn tables_with_relays_by_default() {
    tables(&[]);
}

#[test]
fn tables_with_three_relays() {
    tables(&["--relays", "3"]);
}

#[test]
fn tables_without_relays() {
    tables(&["--relays", "0"]);
}

/// `--verify` checks the plan's own tasks (not the relays, which hold nothing and have ended).
#[test]
fn tables_with_relays_and_verify() {
    tables(&["--relays", "2", "--verify"]);
}

#[test]
fn tables_with_relays_in_the_seeds_form() {
    tables(&["--relays", "2", "--batch", "1"]);
}

/// By default, 120 tasks of scattered sharing are relayed: every file two or more tasks hold
/// is opened by one process that receives nothing (the relay: its files fit under the hard
/// limit), and each task takes its files out of one socket. With `--relays 3`, three
/// processes open them and each task takes at most three messages; with `--relays 0` the
/// tasks open them themselves, which shows that the check can tell.
#[test]
fn the_default_relays_scattered_sharing() {
    let d = TmpDir::new("relwho");
    let tasks = 120;
    let p = scattered_plan(&d, tasks, 40, 2);
    let plan = d.plan(&p.text());

    for (args, relays) in [(&["--timeout", "60"][..], 1), (&["--timeout", "60", "--relays", "3"][..], 3)] {
        let s = seen(&strace_run(&plan, args), &d.0);
        assert_eq!(s.openers.len(), relays, "{args:?}: {relays} processes open the shared files (the relays): {:?}", s.openers);
        assert!(s.openers.is_disjoint(&s.receivers), "{args:?}: the relays receive nothing");
        assert!(s.receivers.len() >= tasks as usize - 2, "{args:?}: {} processes received files, of {tasks} tasks", s.receivers.len());
        assert!(s.recvs <= relays * tasks as usize, "{args:?}: {} messages received by {tasks} tasks: more than one per task and relay", s.recvs);
        // All the shared files are in one directory: each relay holds it and opens them by name.
        assert!(s.relative + relays >= s.opens, "{args:?}: {} of {} opens by the relays were by name below the directory", s.relative, s.opens);
    }

    let s = seen(&strace_run(&plan, &["--timeout", "60", "--relays", "0"]), &d.0);
    assert!(s.openers.len() > 50, "without relays, the tasks open the files themselves: {} openers", s.openers.len());
    assert!(s.openers.difference(&s.receivers).count() < 10, "without relays, the openers receive too");
    assert!(s.recvs > 4 * tasks as usize, "without relays, one batch per pair of tasks: {} messages", s.recvs);
}

/// Sharing the way a forking server's workers share (every file opened by the master and held
/// by all 20 tasks) keeps its one opener by default: one process opens the shared files and
/// receives nothing, and the 19 others each take one message from it (with relays the master
/// would receive too, from each relay).
#[test]
fn structured_sharing_keeps_its_opener() {
    let d = TmpDir::new("relno");
    let mut p = Plan::new();
    p.task(1);
    for t in 2..=20 {
        p.child(t, 1);
    }
    let f = d.file("s0", b"shared by every task");
    for i in 0..50u32 {
        let o = p.reg(i + 1, &f, "rdonly");
        for t in 1..=20 {
            o.at(t, 3 + i);
        }
    }
    let plan = d.plan(&p.text());
    let s = seen(&strace_run(&plan, &["--timeout", "60"]), &d.0);
    assert_eq!(s.openers.len(), 1, "one opener: {:?}", s.openers);
    assert!(s.openers.is_disjoint(&s.receivers), "the opener holds every file itself");
    assert_eq!(s.receivers.len(), 19, "the other tasks receive");
    assert_eq!(s.recvs, 19, "one message each");
    // Forced, the relays open instead and every task receives.
    let s = seen(&strace_run(&plan, &["--timeout", "60", "--relays", "2"]), &d.0);
    assert_eq!(s.receivers.len(), 20, "with relays every task receives");
}

/// Once `ready` is printed, the relays have ended (they are run's children; only the plan's
/// root tasks remain), so no process outside the plan holds a file of it.
#[test]
fn relays_are_gone_when_the_tasks_are_ready() {
    let d = TmpDir::new("relgone");
    let p = scattered_plan(&d, 60, 30, 3);
    let plan = d.plan(&p.text());
    let r = run_stop(&plan, &["--relays", "4"]);
    let run = r.run_pid();
    let want: BTreeSet<i32> = r.pids.values().copied().collect();
    let start = Instant::now();
    let children = loop {
        let text = std::fs::read_to_string(format!("/proc/{run}/task/{run}/children")).unwrap();
        let c: BTreeSet<i32> = text.split_whitespace().map(|s| s.parse().unwrap()).collect();
        if c.is_subset(&want) || start.elapsed() > Duration::from_secs(5) {
            break c;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let strangers: Vec<_> = children.difference(&want).collect();
    assert!(strangers.is_empty(), "run still has children that are no task of the plan: {strangers:?}");
    assert_plan(&p, &r.pids, &CheckOpts { stopped: true, ..Default::default() });
    r.finish();
}

/// A file a relay cannot open: one line naming the first task and fd that wanted it, the
/// object, the call and errno, and the relay; exit 1; no task is left behind.
#[test]
fn a_relays_failure_names_the_task_fd_and_relay() {
    let d = TmpDir::new("relfail");
    let mut p = scattered_plan(&d, 20, 10, 4);
    let missing = d.path("missing");
    p.reg(100_000, &missing, "rdonly").at(7, 200).at(3, 201);
    let plan = d.plan(&p.text());
    let o = output({
        let mut c = fdslot();
        c.arg("run").arg(&plan).args(["--relays", "2", "--stop"]);
        c
    });
    assert_eq!(o.code(), Some(1), "{o}");
    let want = format!("fdslot: task 3 fd 201 (reg 100000 {}): open: ENOENT (opened for it by relay 2)\n", missing.display());
    assert_eq!(o.stderr, want, "{o}");
    assert!(o.stdout.is_empty(), "{o}");
}

/// Under a hard RLIMIT_NOFILE of 300, what each relay holds must fit under it: `run` adds as
/// many relays as that takes (more than the 4 asked for: about 1,400 shared files; a relay
/// that did not fit would fail its restore), and the tables are still as planned.
#[test]
fn relays_fit_under_a_low_hard_limit() {
    let d = TmpDir::new("rellow");
    let p = scattered_plan(&d, 120, 40, 5);
    let plan = d.plan(&p.text());
    let mut cmd = run_stop_cmd(&plan, &["--relays", "4"]);
    // SAFETY: setrlimit is async-signal-safe; lowering both limits needs no privilege.
    unsafe {
        cmd.pre_exec(|| {
            let l = libc::rlimit { rlim_cur: 300, rlim_max: 300 };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let r = start_stopped(cmd).unwrap_or_else(|o| panic!("run did not get to ready: {o}"));
    assert_plan(&p, &r.pids, &CheckOpts { stopped: true, ..Default::default() });
    r.finish();
}

#[test]
fn relays_must_be_auto_or_a_small_number() {
    let d = TmpDir::new("relarg");
    let p = scattered_plan(&d, 3, 3, 6);
    let plan = d.plan(&p.text());
    for bad in ["65", "many", "-1"] {
        let o = output({
            let mut c = fdslot();
            c.arg("run").arg(&plan).args(["--relays", bad]);
            c
        });
        assert_eq!(o.code(), Some(2), "{o}");
        assert!(o.stderr.contains(&format!("--relays must be auto or a number from 0 to 64, not '{bad}'")), "{o}");
    }
}

/// A relay killed (here before the barrier's go: task 1 is still forking its 399 children)
/// fails the whole restore at once, not at the deadline: one line that names the relay, exit
/// 3, and every task gone. If the restore won the race, it is tried again.
#[test]
fn a_killed_relay_fails_the_restore_at_once() {
    let d = TmpDir::new("relkill");
    let p = scattered_plan(&d, 400, 10, 7);
    let plan = d.plan(&p.text());
    for attempt in 0..5 {
        let mut child = fdslot()
            .arg("run")
            .arg(&plan)
            .args(["--stop", "--timeout", "30", "--relays", "2"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let run = child.id() as i32;
        // run forks task 1, then the two relays: its third child is relay 2.
        let children = || -> Vec<i32> {
            std::fs::read_to_string(format!("/proc/{run}/task/{run}/children")).unwrap_or_default().split_whitespace().map(|s| s.parse().unwrap()).collect()
        };
        let start = Instant::now();
        while children().len() < 3 && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_micros(200));
        }
        let relay = children()[2];
        let task1 = children()[0];
        let mut group = children();
        group.extend(std::fs::read_to_string(format!("/proc/{task1}/task/{task1}/children")).unwrap_or_default().split_whitespace().map(|s| s.parse::<i32>().unwrap()));
        kill(relay, libc::SIGKILL);
        let status = wait_timeout(&mut child, Duration::from_secs(10)).expect("run did not end within 10 s of the relay's death");
        let mut out = String::new();
        let mut err = String::new();
        use std::io::Read;
        child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        if out.contains("ready") {
            // The restore was done before the kill: every relay had ended.
            eprintln!("attempt {attempt}: the restore finished first");
            kill(-run, libc::SIGKILL);
            continue;
        }
        assert_eq!(status.code(), Some(3), "stderr: {err}");
        assert_eq!(err, "fdslot: relay 2: killed by signal 9 before its restore completed\n");
        assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
        let left: Vec<_> = group.iter().filter(|&&pid| !wait_gone(pid, Duration::from_secs(5))).collect();
        assert!(left.is_empty(), "processes of the group left behind: {left:?} of {}", group.len());
        return;
    }
    panic!("the restore finished before relay 2 could be killed, five times");
}

/// A plan text of more than 2 MiB, with paths before and after the padding: `run` reads it
/// into memory of its own that its forks share (huge pages) instead of mapping the file, and
/// every task must still find its paths there. 400 tasks of 200 fds: the relays' copy of the
/// plan's objects (72 bytes each) is over 2 MiB too.
#[test]
fn tables_from_a_plan_of_3_mib() {
    let d = TmpDir::new("relbig");
    let mut p = scattered_plan(&d, 400, 200, 4);
    p.padding = 3 << 20;
    let text = p.text();
    assert!(text.len() > 3 << 20);
    let o = fdslot().arg("check").arg(d.plan(&text)).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let objects: usize = out.split(", ").nth(1).and_then(|w| w.split(' ').next()).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(objects * 72 > 2 << 20, "{out}");
    run_and_check(&p, &d, &[]);
}
