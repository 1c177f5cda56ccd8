//! `fdslot run PLAN --stop`: the restored tables, checked against the kernel.
//!
//! Most scenarios run in several transport forms: `--batch 1` (one socket per fd), the default
//! (253) and sometimes 7. Each form is its own test: `scenario::batch1`, `scenario::batch_default`.

#[macro_use]
mod common;

use common::*;
use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

fn check(p: &Plan, d: &TmpDir, batch: Option<u32>) {
    let args = batch_args(batch);
    run_and_check(p, d, &strs(&args));
}

// --- sharing ----------------------------------------------------------------------------------

/// A file shared by a parent and two children, written with O_APPEND by the children after
/// resume: the parent's fd shares the offset, so its pos ends at the file's new size.
fn shared_parent_children(batch: Option<u32>) {
    let d = TmpDir::new("share");
    let log = d.file("app.log", b"");
    let mut p = Plan::new();
    p.task(1).child(2, 1).child(3, 1);
    p.exec(1, &["/bin/sleep", "100"]);
    p.exec(2, &["/bin/sh", "-c", "printf 'two\\n' >&5"]);
    p.exec(3, &["/bin/sh", "-c", "printf 'three\\n' >&5"]);
    p.reg(1, &log, "wronly,append").at(1, 5).at(2, 5).at(3, 5);
    p.reg(2, &d.file("other", b"x"), "rdonly")
        .at_ce(1, 3)
        .at(2, 4)
        .at_ce(3, 3);
    let plan = d.plan(&p.text());
    let r = run_stop(&plan, &strs(&batch_args(batch)));
    assert_eq!(r.order, vec![1, 2, 3]);
    assert_tables(
        &p.expect(),
        &r.pids,
        &CheckOpts {
            stopped: true,
            ..Default::default()
        },
    );
    let pid1 = r.pid(1);
    r.resume();
    let t = Instant::now();
    let mut pos = 0;
    while t.elapsed() < Duration::from_secs(10) {
        pos = fdinfo(pid1, 5).map(|x| x.0).unwrap_or(0);
        if pos == 10 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let content = std::fs::read_to_string(&log).unwrap();
    assert!(
        content == "two\nthree\n" || content == "three\ntwo\n",
        "both children must have appended: {content:?}"
    );
    assert_eq!(
        pos, 10,
        "task 1's fd 5 must share the children's offset (file is {content:?})"
    );
    assert!(
        wait_sleeping(pid1, Duration::from_secs(5)),
        "task 1 did not exec sleep"
    );
    assert_eq!(
        list_fds(pid1).unwrap(),
        BTreeSet::from([5]),
        "task 1 after exec: only fd 5 (fd 3 is cloexec)"
    );
    r.finish();
}
forms!(shared_parent_children: batch1 = Some(1), batch_default = None, batch7 = Some(7));

/// The same object at fds 3, 4 and 9 of one task (opened there), and in a receiver.
fn dup_in_one_task(batch: Option<u32>) {
    let d = TmpDir::new("dup");
    let mut p = Plan::new();
    p.task(1).task(2);
    p.reg(1, &d.file("a", b"aaaa"), "rdonly")
        .at(1, 3)
        .at_ce(1, 4)
        .at(1, 9);
    p.reg(2, &d.file("b", b"bbbb"), "rdwr").at(2, 5).at(2, 6);
    p.reg(3, &d.file("c", b"cccc"), "wronly")
        .at(1, 20)
        .at(2, 3)
        .at_ce(2, 4)
        .at(2, 9);
    p.pipe(4).r(1, 7).r(1, 8).w(2, 7).w_ce(2, 8);
    check(&p, &d, batch);
}
forms!(dup_in_one_task: batch1 = Some(1), batch_default = None);

/// Independent opens of one path: distinct descriptions (kcmp != 0), in one task and across.
fn independent_opens(batch: Option<u32>) {
    let d = TmpDir::new("indep");
    let f = d.file("same", b"0123456789");
    let mut p = Plan::new();
    p.task(1).task(2);
    p.reg(1, &f, "rdonly").at(1, 3).at(2, 3);
    p.reg(2, &f, "rdonly").at(1, 4).at(2, 4);
    p.reg(3, &f, "rdwr").at(1, 5);
    p.reg(4, &f, "rdonly").at(2, 5);
    p.reg_pos(5, &f, "rdonly", 3).at(1, 6).at(2, 6);
    p.reg_pos(6, &f, "rdonly", 3).at(1, 7).at(2, 7);
    check(&p, &d, batch);
}
forms!(independent_opens: batch1 = Some(1), batch_default = None);

/// Files of the same names in several directories, in runs: an opener opens a run of files in
/// one directory relative to it (held open, O_PATH), and must never open a name in the wrong
/// one. Directories a and b, one whose name is encoded (a space), one reached through a
/// symlink (c -> a: the fds then name a's files), a lone file between runs, a run too short to
/// hold its directory, offsets and flags that differ within a run, and a task that opens a run
/// of its own. Checked by the kernel (readlink, fdinfo, kcmp, nothing else open).
fn dir_runs_plan(d: &TmpDir) -> (Plan, String) {
    let mut p = Plan::new();
    p.task(1).task(2);
    let files = |dir: &str, n: u32| -> Vec<std::path::PathBuf> {
        std::fs::create_dir_all(d.path(dir)).unwrap();
        (0..n).map(|i| d.file(&format!("{dir}/f{i}"), format!("{dir} {i} 0123456789").as_bytes())).collect()
    };
    let (a, b, sp) = (files("a", 8), files("b", 8), files("s p", 6));
    std::os::unix::fs::symlink(d.path("a"), d.path("c")).unwrap();
    let mut id = 0;
    let mut fd = 10;
    let mut obj = |p: &mut Plan, path: &std::path::Path, flags: &str, pos: u64, tasks: &[u16]| {
        id += 1;
        let o = p.reg_pos(id, path, flags, pos);
        for &t in tasks {
            o.at(t, fd);
        }
        fd += 1;
    };
    for f in &a[..6] {
        obj(&mut p, f, "rdonly", 0, &[1, 2]);
    }
    for (i, f) in b[..6].iter().enumerate() {
        obj(&mut p, f, if i % 2 == 0 { "rdwr" } else { "rdonly" }, i as u64, &[1, 2]);
    }
    obj(&mut p, &a[6], "rdonly", 0, &[1, 2]);
    for f in &sp {
        obj(&mut p, f, "rdonly", 2, &[1]);
    }
    // Through the symlink: planned as a's files, written into the plan as c's below.
    for f in &a[..5] {
        obj(&mut p, f, "rdonly", 1, &[1, 2]);
    }
    for f in &b[6..8] {
        obj(&mut p, f, "rdonly", 0, &[1, 2]);
    }
    for f in &b[..6] {
        obj(&mut p, f, "rdonly", 4, &[2]);
    }
    // The five objects through c are the 20th to 24th.
    let mut text = String::new();
    let (from, to) = (format!(" {}/", d.path("a").display()), format!(" {}/", d.path("c").display()));
    for l in p.text().lines() {
        let n: Option<u32> = l.strip_prefix("reg ").and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok());
        text.push_str(&if n.is_some_and(|n| (20..25).contains(&n)) { l.replacen(&from, &to, 1) } else { l.to_string() });
        text.push('\n');
    }
    assert_eq!(text.matches(&to).count(), 5, "the plan names c's files five times");
    (p, text)
}

fn dir_runs(batch: Option<u32>) {
    let d = TmpDir::new("dirruns");
    let (p, text) = dir_runs_plan(&d);
    let args = batch_args(batch);
    let r = run_stop(&d.plan(&text), &strs(&args));
    assert_plan(&p, &r.pids, &CheckOpts { stopped: true, ..Default::default() });
    r.finish();
}
forms!(dir_runs: batch1 = Some(1), batch_default = None);

/// The runs of `dir_runs` are opened relative to their directories, as strace sees: task 1
/// holds a, b, "s p" and c in turn, task 2 b; every file of a held run is opened by its name
/// alone, the rest by their whole paths.
#[test]
fn dir_runs_open_relative() {
    let d = TmpDir::new("dirtrace");
    let (_, text) = dir_runs_plan(&d);
    let plan = d.plan(&text);
    let log = strace_fdslot("openat", &["run".as_ref(), plan.as_os_str()]);
    // Per process (strace -f starts each line with the pid), in order.
    let mut held: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for l in log.lines().filter(|l| l.contains("O_PATH|O_DIRECTORY")) {
        let dir = l.split('"').nth(1).unwrap_or("");
        let name = dir.strip_prefix(&format!("{}/", d.0.display())).unwrap_or(dir);
        held.entry(l.split_whitespace().next().unwrap()).or_default().push(name.to_string());
    }
    let mut lists: Vec<Vec<String>> = held.into_values().collect();
    lists.sort();
    assert_eq!(lists, vec![vec!["a", "b", "s p", "c"], vec!["b"]], "the directories each task held, in order");
    let relative = log.lines().filter(|l| l.contains("openat(") && !l.contains("AT_FDCWD")).count();
    // a: 6, b: 6, "s p": 6, c: 5, task 2's b: 6.
    assert_eq!(relative, 29, "files opened by name below a held directory:\n{log}");
}

/// An object whose opener is named with opener=: not the lowest task among its targets, and
/// one that holds no fd of it at all.
fn explicit_opener(batch: Option<u32>) {
    let d = TmpDir::new("opener");
    let mut p = Plan::new();
    p.task(1).task(2).task(3);
    p.reg(1, &d.file("a", b"a"), "rdonly")
        .opener(2)
        .at(1, 3)
        .at(2, 3)
        .at(3, 3);
    p.reg(2, &d.file("b", b"b"), "rdonly")
        .opener(3)
        .at(1, 4)
        .at(2, 4);
    p.pipe(3).opener(1).r(2, 5).w(3, 5);
    check(&p, &d, batch);
}
forms!(explicit_opener: batch1 = Some(1), batch_default = None);

// --- pipes ------------------------------------------------------------------------------------

fn pipes_spread(batch: Option<u32>) {
    let d = TmpDir::new("pipes");
    let mut p = Plan::new();
    p.task(1).child(2, 1).task(3);
    p.pipe(1).r(1, 3).w(2, 3).w_ce(3, 4).r(3, 7);
    p.pipe(2).r(2, 4).r_ce(3, 3).w(1, 4);
    p.pipe(3).r(3, 5).w(3, 6);
    p.pipe(4).w(1, 5).r(2, 5);
    check(&p, &d, batch);
}
forms!(pipes_spread: batch1 = Some(1), batch_default = None, batch7 = Some(7));

/// Two tasks each holding opposite ends of two pipes in fds 11 and 12.
fn pipe_lock_inversion(batch: Option<u32>) {
    let d = TmpDir::new("inv");
    let mut p = Plan::new();
    p.task(1).task(2);
    p.pipe(1).r(1, 11).w(2, 12);
    p.pipe(2).r(2, 11).w(1, 12);
    check(&p, &d, batch);
}
forms!(pipe_lock_inversion: batch1 = Some(1), batch_default = None);

/// A ring: task k holds the read end of pipe k and the write end of pipe k+1.
fn pipe_ring(batch: Option<u32>) {
    let d = TmpDir::new("ring");
    let mut p = Plan::new();
    let n = 6u16;
    for t in 1..=n {
        p.task(t);
    }
    for k in 1..=n {
        let next = k % n + 1;
        p.pipe(k as u32).r(k, 11).w(next, 12);
    }
    check(&p, &d, batch);
}
forms!(pipe_ring: batch1 = Some(1), batch_default = None);

/// Pipes with only one end planned.
fn pipe_one_end(batch: Option<u32>) {
    let d = TmpDir::new("oneend");
    let mut p = Plan::new();
    p.task(1).task(2);
    p.pipe(1).r(1, 3).r(2, 3);
    p.pipe(2).w(2, 4).w(1, 4);
    check(&p, &d, batch);
}
forms!(pipe_one_end: batch1 = Some(1), batch_default = None);

// --- slots ------------------------------------------------------------------------------------

/// Slots 0, 1 and 2 planned in every task.
fn std_slots(batch: Option<u32>) {
    let d = TmpDir::new("std");
    let mut p = Plan::new();
    p.task(1).child(2, 1).task(3);
    p.pipe(1).r(1, 0).r(2, 0).w(3, 1);
    p.reg(2, &d.file("out", b""), "wronly,append")
        .at(1, 1)
        .at(2, 1);
    p.reg(3, &d.file("err", b""), "wronly")
        .at(1, 2)
        .at_ce(2, 2)
        .at(3, 2);
    p.reg(4, &d.file("in", b"input"), "rdonly").at(3, 0);
    check(&p, &d, batch);
}
forms!(std_slots: batch1 = Some(1), batch_default = None);

/// Planned slots equal to what socket() or open() would return next: 0, 3, 4, 5 in openers
/// and receivers, and a task whose only fd is 3.
fn small_slots(batch: Option<u32>) {
    let d = TmpDir::new("small");
    let mut p = Plan::new();
    p.task(1).task(2).task(3).task(4);
    p.reg(1, &d.file("a", b"a"), "rdonly")
        .at(1, 3)
        .at(2, 5)
        .at(3, 0);
    p.reg(2, &d.file("b", b"b"), "rdonly").at(2, 3).at(3, 4);
    p.reg(3, &d.file("c", b"c"), "rdonly")
        .at(1, 4)
        .at(2, 4)
        .at(3, 3);
    p.pipe(4).r(2, 0).w(3, 5).w(1, 5);
    p.reg(5, &d.file("d", b"d"), "rdonly").opener(1).at(4, 3);
    check(&p, &d, batch);
}
forms!(small_slots: batch1 = Some(1), batch_default = None, batch7 = Some(7));

/// A task with no fd at all: its table must end empty.
fn task_without_fds(batch: Option<u32>) {
    let d = TmpDir::new("empty");
    let mut p = Plan::new();
    p.task(1).task(2).child(3, 1);
    p.reg(1, &d.file("a", b"a"), "rdonly").at(1, 3).at(3, 0);
    check(&p, &d, batch);
}
forms!(task_without_fds: batch1 = Some(1), batch_default = None);

/// A received batch whose files land in slots that other files of the batch must take:
/// fds 3..=40 of task 2 get task 1's objects in a scrambled order (task 1 holds them at
/// 3..=40 in another order), and task 3 gets objects opened by task 1 but held only by task 3,
/// in reverse order.
fn scrambled_batch(batch: Option<u32>) {
    let d = TmpDir::new("scramble");
    let mut p = Plan::new();
    p.task(1).task(2).task(3);
    let n = 38u32;
    for i in 0..n {
        let path = d.file(&format!("f{i}"), b"x");
        // task 1: object i at fd 3 + i; task 2: fd 3 + (i * 7 % n); both permutations of 3..=40.
        p.reg(i + 1, &path, "rdonly")
            .at(1, 3 + i)
            .target(0, 2, 3 + (i * 7 + 2) % n, i % 3 == 0);
    }
    for i in 0..n {
        let path = d.file(&format!("g{i}"), b"y");
        p.reg(100 + i, &path, "rdwr")
            .opener(1)
            .at(3, 3 + (n - 1 - i));
    }
    check(&p, &d, batch);
}
forms!(scrambled_batch: batch1 = Some(1), batch_default = None, batch7 = Some(7));

/// High ids: task 65535, object id 2^32-1.
fn high_ids(batch: Option<u32>) {
    let d = TmpDir::new("highid");
    let mut p = Plan::new();
    p.task(65535).child(1000, 65535);
    p.reg(4294967295, &d.file("a", b"a"), "rdonly")
        .at(65535, 3)
        .at(1000, 3);
    p.pipe(1).r(1000, 4).w(65535, 4);
    check(&p, &d, batch);
}
forms!(high_ids: batch1 = Some(1), batch_default = None);

// --- offsets and flags ------------------------------------------------------------------------

/// pos= honoured and shared: pos=123 shared by 3 tasks, pos past EOF, explicit pos=0.
fn pos_shared(batch: Option<u32>) {
    let d = TmpDir::new("pos");
    let content = vec![b'z'; 1000];
    let f = d.file("data", &content);
    let mut p = Plan::new();
    p.task(1).task(2).task(3);
    p.reg_pos(1, &f, "rdonly", 123)
        .at(1, 3)
        .at(2, 7)
        .at_ce(3, 3);
    p.reg_pos(2, &f, "rdwr", 999).at(1, 4).at(3, 4);
    p.reg_pos(3, &f, "rdonly", 5000).at(2, 3);
    p.reg_pos(4, &f, "wronly", 0).at(2, 4).at(1, 5);
    p.reg_pos(5, &f, "wronly,append", 77).at(3, 5);
    check(&p, &d, batch);
    assert_eq!(
        std::fs::read(&f).unwrap(),
        content,
        "restoring offsets must not change the file"
    );
}
forms!(pos_shared: batch1 = Some(1), batch_default = None);

/// Status flags of many kinds, each shared with a second task.
fn status_flags(batch: Option<u32>) {
    let d = TmpDir::new("flags");
    let sub = d.path("subdir");
    std::fs::create_dir(&sub).unwrap();
    let trunc = d.file("trunc", b"to be truncated");
    let excl = d.path("excl-new");
    let mut p = Plan::new();
    p.task(1).task(2);
    let specs: Vec<(std::path::PathBuf, &str)> = vec![
        (d.file("f-rdonly", b"1"), "rdonly"),
        (d.file("f-append", b"1"), "wronly,append"),
        (d.file("f-nonblock", b"1"), "rdwr,nonblock"),
        (d.file("f-noatime", b"1"), "rdonly,noatime"),
        (d.file("f-sync", b"1"), "rdwr,sync"),
        (d.file("f-dsync", b"1"), "wronly,dsync"),
        (sub.clone(), "rdonly,directory"),
        (d.file("f-path", b"1"), "path"),
        (d.file("f-nofollow", b"1"), "rdonly,nofollow"),
        (trunc.clone(), "wronly,trunc"),
        (d.file("f-number", b"1"), "2"),
        (excl.clone(), "rdwr,creat,excl"),
        (d.file("f-noctty", b"1"), "rdonly,noctty"),
        (d.file("f-many", b"1"), "rdwr,append,nonblock,noatime"),
    ];
    for (i, (path, flags)) in specs.iter().enumerate() {
        let i = i as u32;
        p.reg(i + 1, path, flags)
            .at(1, 3 + i)
            .target(0, 2, 30 + i, i % 2 == 1);
    }
    p.reg(100, &sub, "path,directory").at(2, 3).at(1, 40);
    check(&p, &d, batch);
    assert_eq!(
        std::fs::metadata(&trunc).unwrap().len(),
        0,
        "flags=wronly,trunc must truncate"
    );
    assert!(excl.exists(), "flags=rdwr,creat,excl must create the file");
}
forms!(status_flags: batch1 = Some(1), batch_default = None);

/// creat with mode=: the new file's permissions are mode & ~umask.
#[test]
fn creat_mode() {
    let d = TmpDir::new("mode");
    let umask = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Umask:")
                .map(|v| u32::from_str_radix(v.trim(), 8).unwrap())
        })
        .unwrap();
    let a = d.path("new-640");
    let b = d.path("new-777");
    let mut p = Plan::new();
    p.task(1).task(2);
    p.reg(1, &a, "wronly,creat").mode(0o640).at(1, 3).at(2, 3);
    p.reg(2, &b, "rdwr,creat").mode(0o777).at(2, 4);
    check(&p, &d, None);
    assert_eq!(
        std::fs::metadata(&a).unwrap().permissions().mode() & 0o7777,
        0o640 & !umask
    );
    assert_eq!(
        std::fs::metadata(&b).unwrap().permissions().mode() & 0o7777,
        0o777 & !umask
    );
}

/// Paths and argv with %, space, comma, # and non-ASCII bytes, percent-encoded in the plan.
#[test]
fn encoded_path_and_argv() {
    let d = TmpDir::new("enc");
    let weird = d.file("a b%c,d#e\u{e9}", b"weird");
    let out = d.file("out, #1 %", b"");
    let mut p = Plan::new();
    p.task(1);
    p.exec(1, &["/bin/sh", "-c", "printf 'a,b %s#%%' x >&4"]);
    p.reg(1, &weird, "rdonly").at(1, 3);
    p.reg(2, &out, "wronly").at(1, 4);
    let plan = d.plan(&p.text());
    let r = run_stop(&plan, &[]);
    assert_tables(
        &p.expect(),
        &r.pids,
        &CheckOpts {
            stopped: true,
            ..Default::default()
        },
    );
    r.resume();
    let o = r.wait(CAP);
    assert_eq!(o.code(), Some(0), "{o}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "a,b x#%",
        "exec= argv must be decoded"
    );
}

// --- the fd limit -----------------------------------------------------------------------------

/// The highest fd below RLIMIT_NOFILE, in an opener and in a receiver.
fn rlimit_top_fd(batch: Option<u32>) {
    let d = TmpDir::new("rlim");
    let top = nofile_limit() as u32 - 1;
    let mut p = Plan::new();
    p.task(1).task(2);
    p.reg(1, &d.file("a", b"a"), "rdonly").at(1, top).at(2, top);
    p.pipe(2).r(2, top - 1).w(1, top - 1);
    p.reg(3, &d.file("b", b"b"), "rdonly").at(2, 3);
    check(&p, &d, batch);
}
forms!(rlimit_top_fd: batch1 = Some(1), batch_default = None);

/// fd == RLIMIT_NOFILE: the plan is valid (check passes) but run refuses before any change,
/// naming the fd; the reg with creat of the same plan must not have been created.
#[test]
fn rlimit_fd_at_limit_refused() {
    let d = TmpDir::new("rlim2");
    let lim = nofile_limit() as u32;
    let created = d.path("must-not-exist");
    let mut p = Plan::new();
    p.task(1).task(2);
    p.reg(1, &created, "wronly,creat").at(1, 3).at(2, 3);
    p.reg(2, &d.file("a", b"a"), "rdonly").at(2, lim);
    let plan = d.plan(&p.text());
    let mut c = fdslot();
    c.arg("check").arg(&plan);
    let o = output(c);
    assert_eq!(
        o.code(),
        Some(0),
        "fd {lim} is below 1048576, so the plan itself is valid: {o}"
    );
    for stop in [true, false] {
        let mut c = fdslot();
        c.arg("run").arg(&plan);
        if stop {
            c.arg("--stop");
        }
        let o = output(c);
        assert!(
            matches!(o.code(), Some(1) | Some(2)),
            "run must refuse fd {lim} (limit {lim}): {o}"
        );
        assert!(
            o.stderr.contains(&lim.to_string()),
            "the message must name fd {lim}: {o}"
        );
        assert!(!o.stdout.contains("ready"), "{o}");
        assert!(
            !created.exists(),
            "run refused only after a change: {} was created",
            created.display()
        );
    }
}

// --- size -------------------------------------------------------------------------------------

/// 64 tasks (a tree of parents) sharing files and pipes; every task receives some.
fn many_tasks(batch: Option<u32>) {
    let d = TmpDir::new("many");
    let f = d.file("shared", &[7u8; 64]);
    let mut rng = Rng(0x5eed_1234_abcd);
    let mut p = Plan::new();
    let n: u16 = 64;
    p.task(1);
    for t in 2..=n {
        if t % 3 == 0 {
            p.task(t);
        } else {
            p.child(t, t / 2);
        }
    }
    let mut used: Vec<BTreeSet<u32>> = vec![BTreeSet::new(); n as usize + 1];
    let mut free_fd = |rng: &mut Rng, t: u16| loop {
        let fd = 3 + rng.below(60) as u32;
        if used[t as usize].insert(fd) {
            return fd;
        }
    };
    let mut id = 1;
    // Every task k >= 2 receives an object opened by task k - 1.
    for k in 2..=n {
        let a = free_fd(&mut rng, k - 1);
        let b = free_fd(&mut rng, k);
        p.reg_pos(id, &f, "rdonly", k as u64).at(k - 1, a).at(k, b);
        id += 1;
    }
    for _ in 0..48 {
        p.reg_pos(
            id,
            &f,
            if id % 2 == 0 { "rdonly" } else { "rdwr" },
            id as u64 % 50,
        );
        for _ in 0..1 + rng.below(8) {
            let t = 1 + rng.below(n as u64) as u16;
            let fd = free_fd(&mut rng, t);
            p.target(0, t, fd, rng.below(4) == 0);
        }
        id += 1;
    }
    for _ in 0..16 {
        p.pipe(id);
        for end in [0u8, 1] {
            for _ in 0..1 + rng.below(3) {
                let t = 1 + rng.below(n as u64) as u16;
                let fd = free_fd(&mut rng, t);
                p.target(end, t, fd, false);
            }
        }
        id += 1;
    }
    check(&p, &d, batch);
}
forms!(many_tasks: batch1 = Some(1), batch_default = None, batch7 = Some(7));

/// 10,000 fds in one task that opens them all: 3000 regs at 3 fds each, 500 pipes.
fn ten_thousand_fds_one_task(batch: Option<u32>) {
    let d = TmpDir::new("10k");
    let f = d.file("data", &[1u8; 200]);
    let mut rng = Rng(42);
    let mut slots: Vec<u32> = (0..10_000).collect();
    rng.shuffle(&mut slots);
    let mut it = slots.into_iter();
    let mut p = Plan::new();
    p.task(1);
    for i in 0..3000u32 {
        p.reg_pos(i + 1, &f, "rdonly", (i % 100) as u64);
        for k in 0..3 {
            p.target(0, 1, it.next().unwrap(), (i + k) % 3 == 0);
        }
    }
    for i in 0..500u32 {
        p.pipe(10_000 + i)
            .r(1, it.next().unwrap())
            .w(1, it.next().unwrap());
    }
    assert_eq!(p.fd_count(), 10_000);
    check(&p, &d, batch);
}
forms!(ten_thousand_fds_one_task: batch1 = Some(1), batch_default = None);

/// Task 2 receives 10,000 fds from task 1 (5000 objects at 2 fds each, opener=1; task 1
/// holds only the first ten).
fn ten_thousand_fds_received(batch: Option<u32>) {
    let d = TmpDir::new("10kr");
    let f = d.file("data", &[1u8; 200]);
    let mut rng = Rng(4242);
    let mut slots: Vec<u32> = (0..10_000).collect();
    rng.shuffle(&mut slots);
    let mut it = slots.into_iter();
    let mut p = Plan::new();
    p.task(1).task(2);
    for i in 0..5000u32 {
        p.reg_pos(i + 1, &f, "rdonly", (i % 150) as u64).opener(1);
        if i < 10 {
            p.at(1, 100 + i);
        }
        p.target(0, 2, it.next().unwrap(), i % 5 == 0)
            .target(0, 2, it.next().unwrap(), false);
    }
    check(&p, &d, batch);
}
forms!(ten_thousand_fds_received: batch1 = Some(1), batch_default = None);

// --- --keep -----------------------------------------------------------------------------------

/// An fd the caller passes (fd 50, not cloexec) and names with --keep stays, untouched.
fn keep_fd(batch: Option<u32>) {
    let d = TmpDir::new("keep");
    let kept = open_rw(&d.file("kept", b"kept"));
    let mut p = Plan::new();
    p.task(1).child(2, 1).task(3);
    p.reg(1, &d.file("a", b"a"), "rdonly")
        .at(1, 3)
        .at(2, 3)
        .at(3, 49);
    p.pipe(2).r(1, 51).w(3, 4);
    let plan = d.plan(&p.text());
    let mut args = vec!["--keep".to_string(), "50".to_string()];
    args.extend(batch_args(batch));
    let mut cmd = run_stop_cmd(&plan, &strs(&args));
    pass_fd(&mut cmd, kept.as_raw_fd(), 50);
    let r = start_stopped(cmd).unwrap_or_else(|o| panic!("run --keep 50 failed: {o}"));
    assert_tables(
        &p.expect(),
        &r.pids,
        &CheckOpts {
            stopped: true,
            keep: vec![50],
            ..Default::default()
        },
    );
    let me = std::process::id() as i32;
    for (&t, &pid) in &r.pids {
        assert_eq!(
            kcmp_file(me, kept.as_raw_fd() as u32, pid, 50),
            Ok(0),
            "task {t}: fd 50 must be the caller's file ({})",
            fd_target(pid, 50)
        );
        let (_, flags) = fdinfo(pid, 50).unwrap();
        assert_eq!(
            flags & O_CLOEXEC,
            0,
            "task {t}: kept fd 50 must be untouched (no FD_CLOEXEC)"
        );
    }
    r.finish();
}
forms!(keep_fd: batch1 = Some(1), batch_default = None);

/// --keep naming a planned slot is a usage error.
#[test]
fn keep_planned_slot_refused() {
    let d = TmpDir::new("keep2");
    let mut p = Plan::new();
    p.task(1);
    p.reg(1, &d.file("a", b"a"), "rdonly").at(1, 3);
    let plan = d.plan(&p.text());
    let mut c = fdslot();
    c.arg("run").arg(&plan).arg("--stop").arg("--keep").arg("3");
    let o = output(c);
    assert_eq!(o.code(), Some(2), "--keep 3 where fd 3 is planned: {o}");
    assert!(!o.stdout.contains("ready"), "{o}");
}

// --- run without --stop -----------------------------------------------------------------------

/// Without --stop: nothing on stdout, the tasks' planned fd 1 is the plan's file, and run
/// exits with the first task's exit status.
#[test]
fn run_exit_status_and_stdout() {
    let d = TmpDir::new("exit");
    let out = d.file("out", b"");
    let mut p = Plan::new();
    p.task(1).child(2, 1);
    // Task 1 (first in plan order) ends last, with 7; task 2 ends first, with 5.
    p.exec(1, &["/bin/sh", "-c", "echo one; sleep 0.3; exit 7"]);
    p.exec(2, &["/bin/sh", "-c", "echo two; exit 5"]);
    p.reg(1, &out, "wronly,append").at(1, 1).at(2, 1);
    let plan = d.plan(&p.text());
    let mut c = fdslot();
    c.arg("run").arg(&plan);
    let o = output(c);
    assert_eq!(o.stdout, "", "run prints nothing without --stop: {o}");
    assert_eq!(
        o.code(),
        Some(7),
        "run exits with the first task's status: {o}"
    );
    let content = std::fs::read_to_string(&out).unwrap();
    let mut lines: Vec<_> = content.lines().collect();
    lines.sort();
    assert_eq!(lines, ["one", "two"], "the tasks' fd 1 is the planned file");
}

/// Without --stop and without exec=: the tasks exit 0 and so does run.
#[test]
fn run_without_exec_exits_0() {
    let d = TmpDir::new("noexec");
    let mut p = Plan::new();
    p.task(1).task(2);
    p.reg(1, &d.file("a", b"a"), "rdonly").at(1, 3).at(2, 3);
    let plan = d.plan(&p.text());
    let mut c = fdslot();
    c.arg("run").arg(&plan).arg("--batch").arg("1");
    let o = output(c);
    assert_eq!(o.code(), Some(0), "{o}");
    assert_eq!(o.stdout, "", "{o}");
}

// --- failures ---------------------------------------------------------------------------------

/// An open that fails: one stderr line naming task, fd, object and errno; exit 1.
#[test]
fn open_enoent_reported() {
    let d = TmpDir::new("enoent");
    let missing = d.path("missing");
    let mut p = Plan::new();
    p.task(1).task(2);
    p.reg(1, &d.file("a", b"a"), "rdonly").at(1, 4).at(2, 4);
    p.reg(3, &missing, "rdonly").at(1, 3).at(2, 5);
    let plan = d.plan(&p.text());
    for stop in [true, false] {
        let mut c = fdslot();
        c.arg("run").arg(&plan).args(["--timeout", "5"]);
        if stop {
            c.arg("--stop");
        }
        let o = output(c);
        assert_eq!(o.code(), Some(1), "restore failed must exit 1: {o}");
        assert!(!o.stdout.contains("ready"), "{o}");
        let want = format!(
            "fdslot: task 1 fd 3 (reg 3 {}): open: ENOENT",
            missing.display()
        );
        let lines: Vec<&str> = o.stderr.lines().collect();
        assert_eq!(lines, [want.as_str()], "exactly one error line: {o}");
        assert!(
            o.elapsed < Duration::from_secs(5),
            "the failure must not wait for the timeout: {o}"
        );
    }
}

/// O_EXCL on an existing file fails with EEXIST.
#[test]
fn open_eexist_reported() {
    let d = TmpDir::new("eexist");
    let f = d.file("exists", b"x");
    let mut p = Plan::new();
    p.task(1);
    p.reg(2, &f, "wronly,creat,excl").at(1, 7);
    let plan = d.plan(&p.text());
    let mut c = fdslot();
    c.arg("run").arg(&plan).arg("--stop");
    let o = output(c);
    assert_eq!(o.code(), Some(1), "{o}");
    let want = format!("fdslot: task 1 fd 7 (reg 2 {}): open: EEXIST", f.display());
    assert_eq!(o.stderr.trim_end(), want, "{o}");
}

/// A lowered soft RLIMIT_NOFILE (64, hard limit unchanged) is the one that counts: fd 63 is
/// fine, fd 64 is refused before any change.
#[test]
fn rlimit_lowered_soft_limit() {
    fn lower(cmd: &mut std::process::Command) {
        // SAFETY: setrlimit is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                let mut r = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
                r.rlim_cur = 64;
                if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    use std::os::unix::process::CommandExt;
    let d = TmpDir::new("softlim");
    let mut p = Plan::new();
    p.task(1).task(2);
    p.reg(1, &d.file("a", b"a"), "rdonly").at(1, 63).at(2, 63);
    p.pipe(2).r(2, 62).w(1, 3);
    let plan = d.plan(&p.text());
    let mut cmd = run_stop_cmd(&plan, &[]);
    lower(&mut cmd);
    let r = start_stopped(cmd).unwrap_or_else(|o| panic!("fd 63 under a soft limit of 64: {o}"));
    assert_tables(
        &p.expect(),
        &r.pids,
        &CheckOpts {
            stopped: true,
            ..Default::default()
        },
    );
    r.finish();

    let created = d.path("must-not-exist");
    let mut p = Plan::new();
    p.task(1).task(2);
    p.reg(1, &created, "wronly,creat").at(1, 3).at(2, 3);
    p.reg(2, &d.file("b", b"b"), "rdonly").at(2, 64);
    let plan = d.plan(&p.text());
    let mut cmd = fdslot();
    cmd.arg("run").arg(&plan).arg("--stop");
    lower(&mut cmd);
    let o = output(cmd);
    assert!(
        matches!(o.code(), Some(1) | Some(2)),
        "fd 64 under a soft limit of 64 must be refused: {o}"
    );
    assert!(o.stderr.contains("64"), "the message must name fd 64: {o}");
    assert!(
        !created.exists(),
        "refused only after a change: {} exists",
        created.display()
    );
}

/// Offsets past 4 GiB, and --keep with two fds.
#[test]
fn big_pos_and_two_keeps() {
    let d = TmpDir::new("bigpos");
    let f = d.file("sparse", b"s");
    let k1 = open_rw(&d.file("k1", b"1"));
    let k2 = open_rw(&d.file("k2", b"2"));
    let mut p = Plan::new();
    p.task(1).child(2, 1);
    p.reg_pos(1, &f, "rdonly", 5_000_000_000).at(1, 3).at(2, 3);
    p.reg_pos(2, &f, "rdwr", (1 << 40) + 1).at(2, 4);
    let plan = d.plan(&p.text());
    let mut cmd = run_stop_cmd(&plan, &["--keep", "50,51"]);
    pass_fd(&mut cmd, k1.as_raw_fd(), 50);
    pass_fd(&mut cmd, k2.as_raw_fd(), 51);
    let r = start_stopped(cmd).unwrap_or_else(|o| panic!("{o}"));
    assert_tables(
        &p.expect(),
        &r.pids,
        &CheckOpts {
            stopped: true,
            keep: vec![50, 51],
            ..Default::default()
        },
    );
    let me = std::process::id() as i32;
    for &pid in r.pids.values() {
        assert_eq!(kcmp_file(me, k1.as_raw_fd() as u32, pid, 50), Ok(0));
        assert_eq!(kcmp_file(me, k2.as_raw_fd() as u32, pid, 51), Ok(0));
    }
    r.finish();
    assert_eq!(
        std::fs::metadata(&f).unwrap().len(),
        1,
        "seeking must not grow the file"
    );
}
