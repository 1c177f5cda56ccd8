//! Spread openers under `run`: a long run of objects that the same tables all hold is opened in
//! slot-contiguous chunks, one per holder, and each receiver takes its batches lowest slot
//! first, so that they land in their own slots. Checked by the kernel (the tables: kcmp,
//! fdinfo, FD_CLOEXEC, nothing else open) and by strace (who opened which files, the order in
//! which batches were taken, how many fds moved), and without privilege, where the fds in
//! flight are capped and a stalled opener must not be waited for.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

/// Task 1 and its children 2..=`tasks`, every one holding `files` regular files at fds 3 up (a
/// parent's files inherited by its children), with differing flags, offsets and FD_CLOEXEC.
/// The files are `f0..f3` in `d`, readable by anyone.
fn parents_files(d: &TmpDir, tasks: u16, files: u32) -> Plan {
    std::fs::set_permissions(&d.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let paths: Vec<_> = (0..4)
        .map(|i| {
            let f = d.file(&format!("f{i}"), format!("f{i} of the spread test, long enough for offsets").as_bytes());
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
            f
        })
        .collect();
    let mut p = Plan::new();
    p.task(1);
    for t in 2..=tasks {
        p.child(t, 1);
    }
    for i in 0..files {
        let flags = ["rdonly", "rdwr", "rdonly,nonblock", "rdwr,append"][(i % 4) as usize];
        let o = p.reg_pos(i + 1, &paths[(i / 7 % 4) as usize], flags, (i % 40) as u64);
        for t in 1..=tasks {
            if (i + t as u32) % 3 == 0 {
                o.at_ce(t, 3 + i);
            } else {
                o.at(t, 3 + i);
            }
        }
    }
    p
}

/// What strace shows of each process: the files of `d` it opened, the sockets it took fds out
/// of (in order), and its dup3 calls.
#[derive(Default, Debug)]
struct Process {
    opens: usize,
    recv_from: Vec<u32>,
    pending_recv: Option<u32>,
    dup3s: usize,
    closes: usize,
}

fn traced(plan: &std::path::Path, args: &[&str]) -> BTreeMap<i32, Process> {
    let mut all: Vec<&std::ffi::OsStr> = vec!["run".as_ref(), plan.as_os_str()];
    all.extend(args.iter().map(std::ffi::OsStr::new));
    let log = strace_fdslot("openat,recvmsg,dup3,close", &all);
    let mut seen: BTreeMap<i32, Process> = BTreeMap::new();
    for l in log.lines() {
        let Some((pid, call)) = l.split_once(' ') else { continue };
        let Ok(pid) = pid.trim().parse::<i32>() else { continue };
        let call = call.trim_start();
        let p = seen.entry(pid).or_default();
        if let Some(path) = call.strip_prefix("openat(").and_then(|c| c.split('"').nth(1)) {
            let name = path.rsplit('/').next().unwrap_or("");
            if name.len() == 2 && name.starts_with('f') && name.as_bytes()[1].is_ascii_digit() {
                p.opens += 1;
            }
        }
        if call.starts_with("dup3(") {
            p.dup3s += 1;
        }
        if call.starts_with("close(") {
            p.closes += 1;
        }
        // strace splits a call that another process's line interrupts: the fd comes in the
        // first part, the fds taken in the second.
        if let Some(rest) = call.strip_prefix("recvmsg(") {
            let fd = rest.split(',').next().unwrap().trim().parse().unwrap();
            if call.contains("SCM_RIGHTS") {
                p.recv_from.push(fd);
            } else if call.ends_with("<unfinished ...>") {
                p.pending_recv = Some(fd);
            }
        }
        if call.starts_with("<... recvmsg resumed>") {
            if let Some(fd) = p.pending_recv.take().filter(|_| call.contains("SCM_RIGHTS")) {
                p.recv_from.push(fd);
            }
        }
    }
    seen
}

/// 1,000 files held by 5 tasks: each task opens 200 (its chunk), and takes the other four
/// chunks, one message each, lowest slot first. The lowest chunk's opener opens in place; the
/// others move each file they open once (the chunk lands on the lowest free numbers, the
/// slots of the chunks below) and close where they landed a run at a time, and nobody moves a
/// received file but each message's last, which goes over its socket.
#[test]
fn every_holder_opens_a_chunk_and_batches_land_in_place() {
    let d = TmpDir::new("spread");
    let p = parents_files(&d, 5, 1000);
    run_and_check(&p, &d, &[]);

    let seen = traced(&d.plan(&p.text()), &["--timeout", "60"]);
    let openers: Vec<_> = seen.iter().filter(|(_, s)| s.opens > 0).collect();
    assert_eq!(openers.len(), 5, "every task opens: {seen:?}");
    for (pid, s) in &openers {
        assert_eq!(s.opens, 200, "pid {pid} opened {} files, not its chunk of 200", s.opens);
        assert_eq!(s.recv_from.len(), 4, "pid {pid} takes one message from each other task: {:?}", s.recv_from);
        assert!(s.recv_from.windows(2).all(|w| w[0] < w[1]), "pid {pid} took its batches out of slot order: {:?}", s.recv_from);
    }
    // Besides the moves: its four sockets put in their slots, each message's last fd, and a
    // few of the restorer's own (its barrier, home and directory numbers).
    const OWN: usize = 4 + 4 + 8;
    let mut dup3s: Vec<usize> = openers.iter().map(|(_, s)| s.dup3s).collect();
    dup3s.sort();
    assert!(dup3s[0] <= OWN, "the lowest chunk's opener opens in place: {dup3s:?}");
    assert!(dup3s[1..].iter().all(|&n| (200..=200 + OWN).contains(&n)), "one move per file of a higher chunk, none per received file: {dup3s:?}");
    // Where a moved file landed is closed with the rest of its run (close_range), not alone
    // (which would be 200 closes more in each task but one): what is left is the restorer's
    // own, about 16.
    let closes: Vec<usize> = openers.iter().map(|(_, s)| s.closes).collect();
    assert!(closes.iter().all(|&n| n <= 2 * OWN), "closes: {closes:?}");
}

/// In the seed's form (one socket per fd) a receiver of two chunks would have far more sockets
/// than it binds before the barrier: with 3 tasks nothing is spread, task 1 opens every file.
/// With 2, each task receives from one opener only, and both open half, down to runs far
/// shorter than full batches need (100 files: a chunk adds no socket in this form). With one
/// opener, a receiver closes where its fds landed a run at a time.
#[test]
fn the_seeds_form_spreads_only_with_one_opener_per_receiver() {
    for (tasks, files, spread) in [(3, 300, 1), (2, 300, 2), (2, 100, 2)] {
        let d = TmpDir::new("spread1");
        let p = parents_files(&d, tasks, files);
        run_and_check(&p, &d, &["--batch", "1"]);
        let seen = traced(&d.plan(&p.text()), &["--timeout", "60", "--batch", "1"]);
        let openers: Vec<_> = seen.iter().filter(|(_, s)| s.opens > 0).map(|(pid, s)| (pid, s.opens)).collect();
        assert_eq!(openers.len(), spread, "{tasks} tasks: openers {openers:?}");
        if spread == 2 {
            assert!(openers.iter().all(|&(_, n)| n as u32 == files / 2), "{files} files: each opens half {openers:?}");
        }
        let receivers: Vec<_> = seen.iter().filter(|(_, s)| !s.recv_from.is_empty()).map(|(pid, s)| (pid, s.recv_from.len(), s.closes)).collect();
        assert_eq!(receivers.len(), tasks as usize - (spread == 1) as usize, "{tasks} tasks: receivers {receivers:?}");
        if spread == 1 {
            // Where each received fd landed stays open until the window slides, and is closed
            // with the others of its run then (one close_range): not a close per fd (about
            // 305). Only a planned slot stays open: the last window's fds, which land above
            // the planned ones, are closed one by one (about 50 closes in all).
            assert!(receivers.iter().all(|&(_, n, closes)| n == 300 && closes < 100), "(pid, fds received, closes) {receivers:?}");
        }
    }
}

/// Runs of different holder sets, a run too short to spread, files one task holds, a named
/// opener, pipes, and a dup of each shared file in one task, together: the tables are as planned.
#[test]
fn runs_of_several_holder_sets_with_the_rest() {
    let d = TmpDir::new("spreadmix");
    let f = d.file("g", b"the mixed spread test's file");
    let mut p = Plan::new();
    p.task(1).child(2, 1).child(3, 1).child(4, 1);
    let mut id = 0;
    let mut next_fd = BTreeMap::<u16, u32>::new();
    let mut fd = |t: u16| {
        let n = next_fd.entry(t).or_insert(3);
        *n += 1;
        *n - 1
    };
    let groups: [(u32, &[u16]); 5] = [(300, &[1, 2, 3]), (40, &[1, 2, 3, 4]), (600, &[2, 4]), (200, &[3]), (400, &[1, 2, 3, 4])];
    for (count, holders) in groups {
        for i in 0..count {
            id += 1;
            if i == count / 2 {
                let (r, w) = (holders[0], holders[holders.len() - 1]);
                let (fr, fw) = (fd(r), fd(w));
                p.pipe(id).r(r, fr).w(w, fw);
                id += 1;
            }
            let o = p.reg_pos(id, &f, if i % 2 == 0 { "rdonly" } else { "rdwr" }, (i % 9) as u64);
            if i == count / 3 {
                o.opener(holders[holders.len() - 1]);
            }
            for &t in holders {
                o.at(t, fd(t));
            }
            if i % 50 == 0 {
                let t = holders[0];
                o.at_ce(t, fd(t));
            }
        }
    }
    run_and_check(&p, &d, &[]);
}

/// Without privilege the kernel caps the fds in flight per user at RLIMIT_NOFILE. 7 tasks
/// hold 1,400 files under a limit of 1,500, object 1 at the highest fd; the lowest slots' chunk
/// (task 7's, objects 1,201 to 1,400) is 200 memfds filled from 1 MiB each, slow to open. The
/// other tasks send their chunks meanwhile (to task 7 last, in their round of receivers) and,
/// once done, each waits for task 7's chunk with the higher chunks unread in its sockets, up to
/// the cap. When task 7 comes to send, the cap stops it, and only what the waiting receivers
/// hold could make room. They take it once an opener's stall is counted in run's shared page.
/// Without that, 2 of 10 runs timed out (and 1 in 15 of a plan in slot order): 20 rounds, the
/// first with the kernel's check of every table, all of them to `ready`.
#[test]
fn a_stalled_opener_is_not_waited_for_in_slot_order() {
    let d = TmpDir::new("spreadstall");
    std::fs::set_permissions(&d.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 + i / 4096) as u8).collect();
    let blob = d.file("blob", &data);
    let reg = d.file("r", b"a regular file");
    for f in [&blob, &reg] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let mut p = Plan::new();
    p.task(1);
    for t in 2..=7 {
        p.child(t, 1);
    }
    let n = 1400u32;
    for i in 0..n {
        let o = if i >= n - 200 {
            p.memfd(i + 1, MemfdSpec { name: format!("m{i}").into_bytes(), size: None, data: Some((blob.clone(), data.clone())), seals: String::new(), flags: String::new(), pos: None })
        } else {
            p.reg(i + 1, &reg, "rdonly")
        };
        for t in 1..=7 {
            o.at(t, n + 2 - i);
        }
    }
    let plan = d.plan(&p.text());
    std::fs::set_permissions(&plan, std::fs::Permissions::from_mode(0o644)).unwrap();
    for round in 0..20 {
        let mut cmd = run_stop_cmd(&plan, &["--timeout", "10"]);
        as_nobody_with_nofile(&mut cmd, 1500);
        let r = start_stopped(cmd).unwrap_or_else(|o| panic!("round {round}: run as nobody with RLIMIT_NOFILE 1500 failed: {o}"));
        if round == 0 {
            assert_tables(&p.expect(), &r.pids, &CheckOpts { stopped: true, ..Default::default() });
        }
    }
}

/// A file that its chunk's opener cannot open fails the restore with the opener's own fd of
/// it: 3 tasks hold 600 files, and file 450 (in the third chunk, task 3's) is missing.
#[test]
fn a_failed_open_names_the_chunks_opener_and_its_fd() {
    let d = TmpDir::new("spreadfail");
    let f = d.file("there", b"a file");
    let missing = d.path("missing");
    let mut p = Plan::new();
    p.task(1).child(2, 1).child(3, 1);
    for i in 0..600u32 {
        let o = p.reg(i + 1, if i == 449 { &missing } else { &f }, "rdonly");
        for t in 1..=3 {
            o.at(t, 10 + i + t as u32 * 1000);
        }
    }
    let plan = d.plan(&p.text());
    let o = output({
        let mut c = fdslot();
        c.arg("run").arg(&plan).arg("--stop");
        c
    });
    assert_eq!(o.code(), Some(1), "{o}");
    assert_eq!(o.stderr, format!("fdslot: task 3 fd 3459 (reg 450 {}): open: ENOENT\n", missing.display()), "{o}");
    assert!(o.stdout.is_empty(), "{o}");
}

/// Each task holds the same 600 files at its own shuffled slots: chunks no longer match slot
/// ranges, so opened files land on other chunks' slots and on their own chunk's slots still to
/// be filled, and batches land on each other's. The tables are as planned, in full batches and
/// in batches of 16.
#[test]
fn shuffled_slots_in_every_task() {
    let d = TmpDir::new("spreadshuf");
    let f = d.file("s", b"the shuffled spread test's file");
    let mut rng = Rng(0x5eed_1234_9876_5431);
    let mut p = Plan::new();
    p.task(1).child(2, 1).child(3, 1);
    let slots: Vec<Vec<u32>> = (0..3)
        .map(|_| {
            let mut v: Vec<u32> = (3..3 + 600).collect();
            rng.shuffle(&mut v);
            v
        })
        .collect();
    for i in 0..600usize {
        let o = p.reg_pos(i as u32 + 1, &f, ["rdonly", "rdwr"][i % 2], (i % 11) as u64);
        for t in 1..=3u16 {
            if i % 5 == 0 {
                o.at_ce(t, slots[t as usize - 1][i]);
            } else {
                o.at(t, slots[t as usize - 1][i]);
            }
        }
    }
    run_and_check(&p, &d, &[]);
    run_and_check(&p, &d, &["--batch", "16"]);
}

/// A table that two tasks share (`files=`) is one holder: tasks 2 and 3 share one table, and
/// with task 1's they hold 600 files, spread over the two tables' owners (tasks 1 and 2).
#[test]
fn a_shared_table_is_one_holder() {
    let d = TmpDir::new("spreadfiles");
    let p = {
        let mut p = parents_files(&d, 2, 600);
        p.child(3, 2).files(3, 2);
        p
    };
    run_and_check(&p, &d, &[]);
    let seen = traced(&d.plan(&p.text()), &["--timeout", "60"]);
    let openers: Vec<_> = seen.iter().filter(|(_, s)| s.opens > 0).map(|(pid, s)| (pid, s.opens)).collect();
    assert_eq!(openers.len(), 2, "the two tables' owners open: {openers:?}");
}
