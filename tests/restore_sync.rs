//! `fdslot restore`: one task per process, driven by this test as the parent tool (the sync-fd
//! protocol) or running the barrier among themselves; `fdslot names`; rivals on the session's
//! socket names.

#[macro_use]
mod common;

use common::*;
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The fd number the sync socket gets in each task.
const SYNC: i32 = 200;

/// A restore task driven through the sync-fd protocol.
struct SyncTask {
    task: u16,
    proc: Spawned,
    sock: OwnedFd,
}

/// Starts `restore PLAN T --session S --sync-fd 200 ARGS -- PROG...` for each task.
fn start_sync(
    plan: &Path,
    tasks: &[u16],
    session: &str,
    args: &[&str],
    prog: &[&str],
) -> Vec<SyncTask> {
    tasks
        .iter()
        .map(|&t| {
            let mut a = vec!["--sync-fd", "200"];
            a.extend_from_slice(args);
            let mut cmd = restore_cmd(plan, t, session, &a);
            if !prog.is_empty() {
                cmd.arg("--").args(prog);
            }
            let (proc, sock) = spawn_sync(cmd, SYNC);
            SyncTask {
                task: t,
                proc,
                sock,
            }
        })
        .collect()
}

fn msg_str(m: &Result<Option<Vec<u8>>, String>) -> String {
    match m {
        Ok(Some(b)) => format!("{:?}", String::from_utf8_lossy(b)),
        Ok(None) => "EOF".into(),
        Err(e) => format!("<{e}>"),
    }
}

/// Reads one message from each task and asserts it is `want`.
fn expect_all(ts: &mut [SyncTask], want: &str) {
    for t in ts.iter_mut() {
        let m = recv_packet(&t.sock, CAP);
        if m != Ok(Some(want.as_bytes().to_vec())) {
            let o = t.proc.kill();
            panic!(
                "task {}: expected {want:?} on the sync fd, got {}\n{o}",
                t.task,
                msg_str(&m)
            );
        }
    }
}

fn send_all(ts: &[SyncTask], msg: &str) {
    for t in ts {
        send_packet(&t.sock, msg.as_bytes())
            .unwrap_or_else(|e| panic!("task {}: send {msg}: {e}", t.task));
    }
}

/// After `done`: the sync fd reaches EOF (closed before exec), the task execs sleep and
/// sleeps (its loader is done).
fn expect_exec(ts: &mut [SyncTask]) -> BTreeMap<u16, i32> {
    let mut pids = BTreeMap::new();
    for t in ts.iter_mut() {
        let m = recv_packet(&t.sock, Duration::from_secs(10));
        if m != Ok(None) {
            let o = t.proc.kill();
            panic!("task {}: after done, expected EOF on the sync fd (closed before exec), got {}\n{o}", t.task, msg_str(&m));
        }
        let pid = t.proc.pid();
        if !wait_sleeping(pid, Duration::from_secs(10)) {
            let o = t.proc.kill();
            panic!(
                "task {}: did not exec sleep (comm {:?})\n{o}",
                t.task,
                proc_comm(pid)
            );
        }
        pids.insert(t.task, pid);
    }
    pids
}

/// A plan for 3 restore tasks with slots 0..2, sharing, pipes and cloexec fds.
fn three_task_plan(d: &TmpDir) -> Plan {
    let mut p = Plan::new();
    p.task(1).task(2).task(3);
    p.reg_pos(1, &d.file("a", &[b'a'; 100]), "rdwr", 5)
        .at(1, 0)
        .at(2, 3)
        .at(3, 1);
    p.reg(2, &d.file("b", b""), "wronly,append")
        .at(1, 1)
        .at(1, 2)
        .at(2, 1);
    p.pipe(3).r(2, 0).w(3, 0).w(1, 4);
    p.reg(4, &d.file("c", b"c"), "rdonly")
        .at_ce(2, 5)
        .at(3, 5)
        .at_ce(1, 5);
    p.reg(5, &d.file("d", b"d"), "rdonly").at(3, 2).at(2, 2);
    p.reg(6, &d.file("e", b"e"), "rdonly")
        .opener(1)
        .at(3, 3)
        .at(2, 40);
    p
}

// --- the sync-fd protocol ---------------------------------------------------------------------

/// The test as parent tool: bound from all, go, done from all; then the exec'd tasks hold
/// exactly their planned (non-cloexec) fds, and no sync fd.
fn sync_protocol(batch: Option<u32>) {
    let d = TmpDir::new("sync");
    let p = three_task_plan(&d);
    let plan = d.plan(&p.text());
    let s = session("sync");
    let mut args = vec!["--timeout".to_string(), "10".to_string()];
    args.extend(batch_args(batch));
    let mut ts = start_sync(&plan, &[1, 2, 3], &s, &strs(&args), &["/bin/sleep", "100"]);
    expect_all(&mut ts, "bound");
    send_all(&ts, "go");
    expect_all(&mut ts, "done");
    let exp = p.expect();
    let pids = expect_exec(&mut ts);
    assert_tables(
        &exp,
        &pids,
        &CheckOpts {
            after_exec: true,
            ..Default::default()
        },
    );
    for t in ts.iter_mut() {
        assert_eq!(
            t.proc.stdout.text(Duration::ZERO),
            "",
            "task {}: nothing on the caller's stdout",
            t.task
        );
    }
}
forms!(sync_protocol: batch1 = Some(1), batch_default = None, batch7 = Some(7));

/// The parent answers `abort`: every task exits nonzero, says `error: ...` or closes.
#[test]
fn sync_abort() {
    let d = TmpDir::new("abort");
    let p = three_task_plan(&d);
    let plan = d.plan(&p.text());
    let s = session("abort");
    let mut ts = start_sync(
        &plan,
        &[1, 2, 3],
        &s,
        &["--timeout", "10"],
        &["/bin/sleep", "100"],
    );
    expect_all(&mut ts, "bound");
    send_all(&ts, "abort");
    for t in ts.iter_mut() {
        let m = recv_packet(&t.sock, Duration::from_secs(10));
        let ok = match &m {
            Ok(None) => true,
            Ok(Some(b)) => b.starts_with(b"error: "),
            Err(_) => false,
        };
        let o = t.proc.wait(Duration::from_secs(10));
        assert!(
            ok,
            "task {}: after abort, expected 'error: ...' or EOF, got {}\n{o}",
            t.task,
            msg_str(&m)
        );
        assert!(
            o.note.is_empty() && o.code().is_some_and(|c| c != 0),
            "task {}: must exit nonzero after abort: {o}",
            t.task
        );
    }
}

/// The parent dies (EOF on the sync fd) after `bound`: the tasks end, nonzero, promptly.
#[test]
fn sync_parent_eof() {
    let d = TmpDir::new("eof");
    let p = three_task_plan(&d);
    let plan = d.plan(&p.text());
    let s = session("eof");
    let mut ts = start_sync(
        &plan,
        &[1, 2, 3],
        &s,
        &["--timeout", "30"],
        &["/bin/sleep", "100"],
    );
    expect_all(&mut ts, "bound");
    let start = Instant::now();
    for t in ts.iter_mut() {
        let (_, dead) = seqpacket_pair();
        // Replace our end by a dead socket: the task's end reaches EOF.
        t.sock = dead;
    }
    for t in ts.iter_mut() {
        let o = t.proc.wait(Duration::from_secs(10));
        assert!(
            o.note.is_empty() && o.code().is_some_and(|c| c != 0),
            "task {}: must exit nonzero on EOF: {o}",
            t.task
        );
    }
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "EOF must end the tasks before their timeout"
    );
}

/// The parent never answers: with --timeout 2 the tasks give up with exit 3.
#[test]
fn sync_parent_silent_times_out() {
    let d = TmpDir::new("silent");
    let p = three_task_plan(&d);
    let plan = d.plan(&p.text());
    let s = session("silent");
    let mut ts = start_sync(
        &plan,
        &[1, 2],
        &s,
        &["--timeout", "2"],
        &["/bin/sleep", "100"],
    );
    expect_all(&mut ts, "bound");
    let start = Instant::now();
    for t in ts.iter_mut() {
        let o = t.proc.wait(Duration::from_secs(8));
        assert_eq!(
            o.code(),
            Some(3),
            "task {}: timed out waiting for go must exit 3: {o}",
            t.task
        );
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "--timeout 2 took {:?}",
        start.elapsed()
    );
}

/// One task fails after go (its open fails): it says `error: ...` and exits 1; its peers
/// fail too (exit nonzero, typically 3), and nobody says `done`.
#[test]
fn sync_peer_open_fails() {
    let d = TmpDir::new("peerfail");
    let missing = d.path("missing");
    let mut p = Plan::new();
    p.task(1).task(2);
    p.reg(1, &missing, "rdonly").at(1, 3).at(2, 3);
    p.reg(2, &d.file("a", b"a"), "rdonly").at(2, 4).at(1, 4);
    let plan = d.plan(&p.text());
    let s = session("peerfail");
    let mut ts = start_sync(
        &plan,
        &[1, 2],
        &s,
        &["--timeout", "5"],
        &["/bin/sleep", "100"],
    );
    let first: Vec<_> = ts.iter().map(|t| recv_packet(&t.sock, CAP)).collect();
    let all_bound = first.iter().all(|m| *m == Ok(Some(b"bound".to_vec())));
    if all_bound {
        send_all(&ts, "go");
    } else {
        // Someone failed before bound: abort the rest.
        for (t, m) in ts.iter().zip(&first) {
            if *m == Ok(Some(b"bound".to_vec())) {
                let _ = send_packet(&t.sock, b"abort");
            }
        }
    }
    let mut outs = Vec::new();
    for (i, t) in ts.iter_mut().enumerate() {
        let m = if all_bound {
            recv_packet(&t.sock, Duration::from_secs(10))
        } else {
            first[i].clone()
        };
        let o = t.proc.wait(Duration::from_secs(10));
        assert!(
            !matches!(&m, Ok(Some(b)) if b == b"done"),
            "task {}: said done although task 1's open of {} fails\n{o}",
            t.task,
            missing.display()
        );
        assert!(
            o.code().is_some_and(|c| c != 0),
            "task {}: must exit nonzero: {o}",
            t.task
        );
        outs.push((m, o));
    }
    let (m1, o1) = &outs[0];
    assert_eq!(
        o1.code(),
        Some(1),
        "task 1 (the failed open) must exit 1: {o1}"
    );
    assert!(
        matches!(m1, Ok(Some(b)) if b.starts_with(b"error: ") && String::from_utf8_lossy(b).contains("ENOENT")),
        "task 1 must report 'error: ...ENOENT...' on the sync fd, got {}",
        msg_str(m1)
    );
    let want = format!(
        "fdslot: task 1 fd 3 (reg 1 {}): open: ENOENT",
        missing.display()
    );
    assert!(
        o1.stderr.contains(&want),
        "task 1's stderr must say {want:?}: {o1}"
    );
}

// --- without a sync fd --------------------------------------------------------------------------

/// Tasks of one session started without --sync-fd run the barrier among themselves.
fn restore_barrier_among_tasks(batch: Option<u32>) {
    let d = TmpDir::new("nosync");
    let p = three_task_plan(&d);
    let plan = d.plan(&p.text());
    let s = session("nosync");
    let mut procs: Vec<(u16, Spawned)> = [1u16, 2, 3]
        .iter()
        .map(|&t| {
            let mut a = vec!["--timeout".to_string(), "10".to_string()];
            a.extend(batch_args(batch));
            let mut cmd = restore_cmd(&plan, t, &s, &strs(&a));
            cmd.args(["--", "/bin/sleep", "100"]);
            (t, Spawned::spawn(cmd))
        })
        .collect();
    let exp = p.expect();
    let mut pids = BTreeMap::new();
    for (t, pr) in procs.iter_mut() {
        let pid = pr.pid();
        if !wait_sleeping(pid, Duration::from_secs(15)) {
            let o = pr.wait(Duration::from_secs(1));
            panic!("task {t}: did not exec sleep: {o}");
        }
        pids.insert(*t, pid);
    }
    assert_tables(
        &exp,
        &pids,
        &CheckOpts {
            after_exec: true,
            ..Default::default()
        },
    );
}
forms!(restore_barrier_among_tasks: batch1 = Some(1), batch_default = None);

/// Task 2 never starts: task 1 (--timeout 2) fails within ~3 s, exit 3, naming task 2.
#[test]
fn peer_never_binds() {
    let d = TmpDir::new("nopeer");
    let mut p = Plan::new();
    p.task(1).task(2);
    p.reg(1, &d.file("a", b"a"), "rdonly").at(1, 3).at(2, 3);
    p.pipe(2).r(2, 4).w(1, 4);
    let plan = d.plan(&p.text());
    let s = session("nopeer");
    let mut c = restore_cmd(&plan, 1, &s, &["--timeout", "2"]);
    c.args(["--", "/bin/sleep", "100"]);
    let o = output(c);
    assert_eq!(o.code(), Some(3), "a peer that never binds: exit 3: {o}");
    assert!(
        o.elapsed < Duration::from_millis(3500),
        "--timeout 2 must fail within ~3 s: {o}"
    );
    assert!(
        o.stderr.contains("task 2"),
        "the message must name task 2: {o}"
    );
    assert_eq!(o.stderr.lines().count(), 1, "one error line: {o}");
}

/// Restore mode: the planned fds 0, 1, 2 are the plan's files, not the caller's stdio.
fn restore_std_fds(sync: bool) {
    let d = TmpDir::new("stdfds");
    let input = d.file("in", b"hello from the plan\n");
    let out = d.file("out", b"old content that trunc removes");
    let err = d.file("err", b"");
    let mut p = Plan::new();
    p.task(1);
    p.reg(1, &input, "rdonly").at(1, 0);
    p.reg(2, &out, "wronly,trunc").at(1, 1);
    p.reg(3, &err, "wronly,append").at(1, 2);
    let plan = d.plan(&p.text());
    let s = session("stdfds");
    let prog = ["/bin/sh", "-c", "cat; echo to-err >&2"];
    let o = if sync {
        let mut ts = start_sync(&plan, &[1], &s, &["--timeout", "10"], &prog);
        expect_all(&mut ts, "bound");
        send_all(&ts, "go");
        expect_all(&mut ts, "done");
        ts[0].proc.wait(CAP)
    } else {
        let mut c = restore_cmd(&plan, 1, &s, &["--timeout", "10"]);
        c.arg("--").args(prog);
        output(c)
    };
    assert_eq!(o.code(), Some(0), "{o}");
    assert_eq!(
        o.stdout, "",
        "the caller's stdout must not be the task's fd 1: {o}"
    );
    assert_eq!(
        o.stderr, "",
        "the caller's stderr must not be the task's fd 2: {o}"
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "hello from the plan\n"
    );
    assert_eq!(std::fs::read_to_string(&err).unwrap(), "to-err\n");
}
forms!(restore_std_fds: no_sync = false, with_sync = true);

/// Restore mode --keep: the caller's fd 50 stays, the same description, nothing else.
#[test]
fn restore_keep() {
    let d = TmpDir::new("rkeep");
    let kept = open_rw(&d.file("kept", b"k"));
    let mut p = Plan::new();
    p.task(1).task(2);
    p.reg(1, &d.file("a", b"a"), "rdonly").at(1, 3).at(2, 51);
    let plan = d.plan(&p.text());
    let s = session("rkeep");
    let mut procs = Vec::new();
    for t in [1u16, 2] {
        let mut c = restore_cmd(&plan, t, &s, &["--timeout", "10", "--keep", "50"]);
        c.args(["--", "/bin/sleep", "100"]);
        pass_fd(&mut c, kept.as_raw_fd(), 50);
        procs.push((t, Spawned::spawn(c)));
    }
    let exp = p.expect();
    let mut pids = BTreeMap::new();
    for (t, pr) in procs.iter_mut() {
        if !wait_sleeping(pr.pid(), Duration::from_secs(15)) {
            panic!(
                "task {t}: did not exec: {}",
                pr.wait(Duration::from_secs(1))
            );
        }
        pids.insert(*t, pr.pid());
    }
    assert_tables(
        &exp,
        &pids,
        &CheckOpts {
            after_exec: true,
            keep: vec![50],
            ..Default::default()
        },
    );
    let me = std::process::id() as i32;
    for (&t, &pid) in &pids {
        assert_eq!(
            kcmp_file(me, kept.as_raw_fd() as u32, pid, 50),
            Ok(0),
            "task {t}: fd 50 must be the caller's"
        );
    }
}

// --- names ------------------------------------------------------------------------------------

fn names_plan(d: &TmpDir) -> Plan {
    let mut p = Plan::new();
    p.task(1).task(2).task(3);
    for i in 0..5 {
        p.reg(10 + i, &d.file(&format!("f{i}"), b"f"), "rdonly")
            .at(1, 3 + i)
            .at(2, 3 + i);
    }
    p.reg(20, &d.file("g", b"g"), "rdonly").at(3, 3).at(2, 20);
    p.reg(21, &d.file("h", b"h"), "rdonly").at(3, 4).at(2, 21);
    p.reg(30, &d.file("i", b"i"), "rdonly").opener(1).at(3, 9);
    p
}

/// `fdslot names` prints only the kinds of lines the contract lists: `home` and `rx`.
#[test]
fn names_only_documented_kinds() {
    let d = TmpDir::new("names0");
    let p = names_plan(&d);
    let plan = d.plan(&p.text());
    let n = names(&plan, &session("names0"), &[]);
    // Besides home and rx, only `ctl T NAME` (the barrier socket of the tasks' own barrier).
    let bad: Vec<&String> = n.other.iter().filter(|l| {
        let w: Vec<&str> = l.split(' ').collect();
        !(w.len() == 3 && w[0] == "ctl" && w[1].parse::<u16>().is_ok() && w[2].starts_with("fdslot-"))
    }).collect();
    assert!(bad.is_empty(), "fdslot names printed lines of an undocumented kind:\n  {bad:?}");
    assert_eq!(n.other.len(), 3, "one ctl line per task: {:?}", n.other);
}

/// `fdslot names`: a home per task, rx sockets per (receiver, opener, batch), distinct
/// printable names and slots, the same for the same session, disjoint across sessions.
#[test]
fn names_format() {
    let d = TmpDir::new("names");
    let p = names_plan(&d);
    let plan = d.plan(&p.text());
    let s = session("names");
    let exp = p.expect();
    // Task 2 gets 5 files from task 1; task 3 gets 1 from task 1 (opener=1) and 2 from task 2
    // (the lowest task holding objects 20 and 21).
    for (batch, want21, want31, want32) in [
        (Some(1u32), 5usize, 1usize, 2usize),
        (None, 1, 1, 1),
        (Some(2), 3, 1, 1),
    ] {
        let args = batch_args(batch);
        let n = names(&plan, &s, &strs(&args));
        // Every opener that sends to another task has a home (task 3 sends nothing).
        for r in &n.rx {
            assert!(
                n.home.contains_key(&r.opener),
                "opener {} of {r:?} has no home: {n:?}",
                r.opener
            );
        }
        assert!(
            n.home.keys().all(|t| [1, 2, 3].contains(t)),
            "home of an unknown task: {n:?}"
        );
        let mut all: Vec<&str> = n
            .home
            .values()
            .map(|s| s.as_str())
            .chain(n.rx.iter().map(|r| r.name.as_str()))
            .chain(n.other.iter().map(|l| l.rsplit(' ').next().unwrap()))
            .collect();
        for name in &all {
            assert!(
                !name.is_empty() && name.bytes().all(|b| (0x21..=0x7e).contains(&b)),
                "name {name:?} is not printable ASCII"
            );
            assert!(
                name.len() <= 107,
                "abstract name {name:?} too long for sun_path"
            );
        }
        let total = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), total, "names must be distinct: {n:?}");
        let per = count_by(&n.rx, |r| (r.task, r.opener));
        let want = BTreeMap::from([((2u16, 1u16), want21), ((3, 1), want31), ((3, 2), want32)]);
        assert_eq!(
            per, want,
            "rx sockets per (task, opener) with --batch {batch:?}: {n:?}"
        );
        for r in &n.rx {
            assert_ne!(
                r.task, r.opener,
                "no rx socket from a task to itself: {r:?}"
            );
        }
        let mut slots: Vec<(u16, u32)> = n.rx.iter().map(|r| (r.task, r.slot)).collect();
        let ns = slots.len();
        slots.sort();
        slots.dedup();
        assert_eq!(
            slots.len(),
            ns,
            "each rx socket parks in its own slot: {n:?}"
        );
        let mut batches: Vec<(u16, u16, u32)> =
            n.rx.iter().map(|r| (r.task, r.opener, r.batch)).collect();
        batches.sort();
        batches.dedup();
        assert_eq!(
            batches.len(),
            ns,
            "batch numbers distinct per (task, opener): {n:?}"
        );
        for r in &n.rx {
            assert!(
                exp[&r.task].contains_key(&r.slot) || (r.slot as u64) < nofile_limit(),
                "{r:?}"
            );
        }
        // Deterministic for a session; disjoint across sessions.
        let again = names(&plan, &s, &strs(&args));
        assert_eq!(
            format!("{again:?}"),
            format!("{n:?}"),
            "names must be the same for the same session"
        );
        let other = names(&plan, &session("names2"), &strs(&args));
        for name in other.home.values().chain(other.rx.iter().map(|r| &r.name)) {
            assert!(
                !all.contains(&name.as_str()),
                "name {name} appears in two sessions"
            );
        }
    }
}

// --- rivals -----------------------------------------------------------------------------------

const TYPES: [i32; 3] = [libc::SOCK_DGRAM, libc::SOCK_SEQPACKET, libc::SOCK_STREAM];

/// Binds NAME with every AF_UNIX socket type (abstract names are per type on Linux, and the
/// contract does not say which type fdslot uses).
fn rival_bind(name: &str) -> Vec<(i32, OwnedFd)> {
    TYPES
        .iter()
        .map(|&ty| {
            (
                ty,
                bind_abstract(ty, name)
                    .unwrap_or_else(|e| panic!("rival bind {name} ({}): {e}", ty_name(ty))),
            )
        })
        .collect()
}

fn assert_rival_got_nothing(rivals: &[(i32, OwnedFd)], allow_plain: bool) {
    for (ty, s) in rivals {
        if let Err(e) = rival_got_nothing(*ty, s, allow_plain) {
            panic!("{e}");
        }
    }
}

/// A rival that holds one of the session's names before the tasks start (no sync fd): the
/// group aborts, nonzero, and the rival received nothing.
fn rival_holds_name(which: &str) {
    let d = TmpDir::new("rival");
    let p = names_plan(&d);
    let plan = d.plan(&p.text());
    let s = session("rival");
    let n = names(&plan, &s, &[]);
    let name = match which {
        "rx" => {
            n.rx.iter()
                .find(|r| r.task == 2 && r.opener == 1)
                .expect("an rx of task 2 from 1")
                .name
                .clone()
        }
        "home1" => n.home[&1].clone(),
        "home2" => n.home[&2].clone(),
        "other" => match n.other.iter().find(|l| l.split(' ').nth(1) == Some("2")) {
            Some(l) => l.rsplit(' ').next().unwrap().to_string(),
            None => return, // fdslot names lists only home and rx: nothing more to try
        },
        _ => unreachable!(),
    };
    let rivals = rival_bind(&name);
    let mut procs: Vec<(u16, Spawned)> = [1u16, 2, 3]
        .iter()
        .map(|&t| {
            let mut c = restore_cmd(&plan, t, &s, &["--timeout", "3"]);
            c.args(["--", "/bin/sleep", "100"]);
            (t, Spawned::spawn(c))
        })
        .collect();
    for (t, pr) in procs.iter_mut() {
        let o = pr.wait(Duration::from_secs(10));
        assert!(
            o.note.is_empty() && o.code().is_some_and(|c| c != 0),
            "task {t} with a rival on {which} name {name:?}: must fail, exit nonzero: {o}"
        );
    }
    // On the documented names (home, rx) the rival must get nothing at all; on other names
    // (ctl) fd-free control datagrams are reported but tolerated: no fd, no connection.
    assert_rival_got_nothing(&rivals, which == "other");
}

#[test]
fn rival_holds_rx_name() {
    rival_holds_name("rx");
}
#[test]
fn rival_holds_home_name_of_opener() {
    rival_holds_name("home1");
}
#[test]
fn rival_holds_home_name_of_receiver() {
    rival_holds_name("home2");
}
/// Names of kinds the contract does not list (e.g. `ctl 2 NAME`) are bound by the session too.
#[test]
fn rival_holds_other_name_of_receiver() {
    rival_holds_name("other");
}

/// Same with the sync protocol: the task whose name is taken says `error: ...` instead of
/// `bound` (or dies); the parent aborts the others; the rival received nothing.
#[test]
fn rival_holds_rx_name_sync() {
    let d = TmpDir::new("rivals");
    let p = names_plan(&d);
    let plan = d.plan(&p.text());
    let s = session("rivals");
    let n = names(&plan, &s, &[]);
    let name =
        n.rx.iter()
            .find(|r| r.task == 2 && r.opener == 1)
            .unwrap()
            .name
            .clone();
    let rivals = rival_bind(&name);
    let mut ts = start_sync(
        &plan,
        &[1, 2, 3],
        &s,
        &["--timeout", "5"],
        &["/bin/sleep", "100"],
    );
    let first: Vec<_> = ts.iter().map(|t| recv_packet(&t.sock, CAP)).collect();
    let bound = |m: &Result<Option<Vec<u8>>, String>| *m == Ok(Some(b"bound".to_vec()));
    assert!(
        !bound(&first[1]),
        "task 2 said bound although {name:?} is taken by a rival; messages: {:?}",
        first.iter().map(msg_str).collect::<Vec<_>>()
    );
    assert!(
        matches!(&first[1], Ok(None))
            || matches!(&first[1], Ok(Some(b)) if b.starts_with(b"error: ")),
        "task 2: expected 'error: ...' or EOF, got {}",
        msg_str(&first[1])
    );
    for (t, m) in ts.iter().zip(&first) {
        if bound(m) {
            // The task may already have given up on its own (EPIPE): that is fine.
            let _ = send_packet(&t.sock, b"abort");
        }
    }
    for t in ts.iter_mut() {
        let o = t.proc.wait(Duration::from_secs(10));
        assert!(
            o.note.is_empty() && o.code().is_some_and(|c| c != 0),
            "task {}: must exit nonzero: {o}",
            t.task
        );
    }
    assert_rival_got_nothing(&rivals, false);
}

/// A rival sends its own fd (SCM_RIGHTS) to the receiver's rx sockets between `bound` and
/// `go`. The send must fail (EPERM: rx sockets are connected to their opener); if it did
/// not, the restore must fail or the rival's file must not be installed anywhere.
fn rival_sends_fd(batch: Option<u32>) {
    let d = TmpDir::new("rivalfd");
    let p = names_plan(&d);
    let plan = d.plan(&p.text());
    let s = session("rivalfd");
    let args = batch_args(batch);
    let n = names(&plan, &s, &strs(&args));
    let rival_file = open_rw(&d.file("rival", b"rival"));
    let mut a = vec!["--timeout".to_string(), "10".to_string()];
    a.extend(args.clone());
    let mut ts = start_sync(&plan, &[1, 2, 3], &s, &strs(&a), &["/bin/sleep", "100"]);
    expect_all(&mut ts, "bound");
    let mut report = Vec::new();
    let mut delivered = false;
    let mut held = Vec::new();
    for r in n.rx.iter().filter(|r| r.task == 2 || r.task == 3) {
        // Unconnected datagram socket, sendto the name.
        let dg = socket(libc::SOCK_DGRAM);
        let res = send_fd(&dg, Some(&r.name), rival_file.as_raw_fd());
        report.push(format!(
            "rx {} {} {}: SOCK_DGRAM sendto: {res:?}",
            r.task, r.opener, r.batch
        ));
        delivered |= res.is_ok();
        held.push(dg);
        // Connection-based types: connect, then send.
        for ty in [libc::SOCK_SEQPACKET, libc::SOCK_STREAM] {
            let c = socket(ty);
            let res = connect_abstract(&c, &r.name)
                .and_then(|_| send_fd(&c, None, rival_file.as_raw_fd()));
            report.push(format!(
                "rx {} {} {}: {} connect+send: {res:?}",
                r.task,
                r.opener,
                r.batch,
                ty_name(ty)
            ));
            delivered |= res.is_ok();
            held.push(c);
        }
    }
    eprintln!("rival sends:\n  {}", report.join("\n  "));
    send_all(&ts, "go");
    let msgs: Vec<_> = ts.iter().map(|t| recv_packet(&t.sock, CAP)).collect();
    let all_done = msgs.iter().all(|m| *m == Ok(Some(b"done".to_vec())));
    if !all_done {
        let outs: Vec<String> = ts
            .iter_mut()
            .map(|t| format!("task {}: {}", t.task, t.proc.kill()))
            .collect();
        assert!(
            delivered,
            "restore failed although every rival send failed: {:?}\n{}\n{}",
            msgs.iter().map(msg_str).collect::<Vec<_>>(),
            report.join("\n"),
            outs.join("\n")
        );
        return; // a rival got through and the restore refused: acceptable.
    }
    let exp = p.expect();
    let pids = expect_exec(&mut ts);
    let me = std::process::id() as i32;
    for (&t, &pid) in &pids {
        for fd in list_fds(pid).unwrap() {
            assert_ne!(
                kcmp_file(me, rival_file.as_raw_fd() as u32, pid, fd),
                Ok(0),
                "task {t} fd {fd} holds the rival's file\n{}",
                report.join("\n")
            );
        }
    }
    assert_tables(
        &exp,
        &pids,
        &CheckOpts {
            after_exec: true,
            ..Default::default()
        },
    );
    drop(held);
}
forms!(rival_sends_fd: batch1 = Some(1), batch_default = None);

// --- sessions ---------------------------------------------------------------------------------

/// Starts every task of `plan` with `restore --session S -- /bin/sleep 100` (no sync fd) and
/// returns them once all sleep, checked.
fn restore_group(plan_path: &Path, p: &Plan, s: &str, args: &[&str]) -> Vec<Spawned> {
    let mut procs: Vec<(u16, Spawned)> = p
        .task_ids()
        .into_iter()
        .map(|t| {
            let mut a = vec!["--timeout", "10"];
            a.extend_from_slice(args);
            let mut c = restore_cmd(plan_path, t, s, &a);
            c.args(["--", "/bin/sleep", "100"]);
            (t, Spawned::spawn(c))
        })
        .collect();
    let pids = exec_pids(&mut procs);
    assert_tables(&p.expect(), &pids, &CheckOpts { after_exec: true, ..Default::default() });
    procs.into_iter().map(|(_, s)| s).collect()
}

/// Two sessions of the same plan at once do not mix their files; a session name can be used
/// again once its restore is over.
#[test]
fn parallel_sessions_and_reuse() {
    let d = TmpDir::new("twosess");
    let p = three_task_plan(&d);
    let plan = d.plan(&p.text());
    let (s1, s2) = (session("twoA"), session("twoB"));
    let (p1, p2) = (plan.clone(), plan.clone());
    let (q1, q2) = (p.clone(), p.clone());
    let (a1, a2) = (s1.clone(), s2.clone());
    let h1 = std::thread::spawn(move || restore_group(&p1, &q1, &a1, &[]));
    let h2 = std::thread::spawn(move || restore_group(&p2, &q2, &a2, &["--batch", "1"]));
    let g1 = h1.join().expect("session A");
    let g2 = h2.join().expect("session B");
    // Nothing crossed over: task 2 of session A and task 2 of session B hold different
    // descriptions of object 1 (each opened by its own task 1).
    assert_ne!(
        kcmp_file(g1[1].pid(), 3, g2[1].pid(), 3),
        Ok(0),
        "the two sessions share a description"
    );
    drop(g1);
    drop(g2);
    // The same session name again.
    let g = restore_group(&plan, &p, &s1, &[]);
    drop(g);
}

/// A restore started with fds 0, 1 and 2 closed (so socket() and open() return 0, 1, 2).
#[test]
fn restore_with_closed_stdio() {
    use std::os::unix::process::CommandExt;
    let d = TmpDir::new("closedstd");
    let mut p = Plan::new();
    p.task(1).task(2);
    p.reg(1, &d.file("a", b"a"), "rdonly").at(1, 5).at(2, 1);
    p.reg(2, &d.file("b", b"b"), "rdonly").at(2, 6).at(1, 0);
    p.pipe(3).r(1, 2).w(2, 0);
    let plan = d.plan(&p.text());
    let s = session("closedstd");
    let mut procs = Vec::new();
    for t in [1u16, 2] {
        let mut c = restore_cmd(&plan, t, &s, &["--timeout", "10"]);
        c.args(["--", "/bin/sleep", "100"]);
        // SAFETY: close is async-signal-safe.
        unsafe {
            c.pre_exec(|| {
                for fd in 0..3 {
                    libc::close(fd);
                }
                Ok(())
            });
        }
        procs.push((t, Spawned::spawn(c)));
    }
    let pids = exec_pids(&mut procs);
    assert_tables(&p.expect(), &pids, &CheckOpts { after_exec: true, ..Default::default() });
}

/// An active rival of another uid in the no-sync (peers) barrier: running as `nobody`, it takes
/// task 2's barrier name (`ctl 2`) and receiving names before the group starts, then sends task 1
/// (the coordinator) the `bound` that task 2 would send. The coordinator takes `bound` only
/// under its own uid, and task 2, whose names are taken, aborts the group: nobody execs and the
/// rival receives no file. (A rival of the same uid could ptrace the tasks anyway; against it,
/// use the sync fd, which `rival_holds_rx_name_sync` covers.)
///
/// The rival is this test binary itself, re-run as uid 65534 with `FDSLOT_RIVAL` set (see
/// `rival_process`).
fn active_rival_forges_bound_in_peers_barrier(start_task2: bool) {
    let d = TmpDir::new(if start_task2 { "forge2" } else { "forge" });
    let mut p = Plan::new();
    p.task(1).task(2).task(3);
    for i in 0..3 {
        p.reg(10 + i, &d.file(&format!("f{i}"), b"f"), "rdonly")
            .at(1, 3 + i)
            .at(2, 3 + i)
            .at(3, 3 + i);
    }
    let plan = d.plan(&p.text());
    let s = session("forge");
    let n = names(&plan, &s, &[]);
    let ctl = |t: u16| {
        n.other
            .iter()
            .find(|l| l.starts_with(&format!("ctl {t} ")))
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
            .expect("names lists a ctl line per task")
    };
    let rx2: Vec<String> = n.rx.iter().filter(|r| r.task == 2).map(|r| r.name.clone()).collect();
    let mut rival = Command::new(std::env::current_exe().unwrap());
    rival
        .args(["--exact", "rival_process", "--nocapture", "--test-threads", "1"])
        .env("FDSLOT_RIVAL", format!("{} {} {}", ctl(1), ctl(2), rx2.join(" ")))
        .uid(65534)
        .gid(65534);
    let mut rival = Spawned::spawn(rival);
    // Let it bind first.
    std::thread::sleep(Duration::from_millis(300));
    // Without the real task 2, only the coordinator's uid check stands between the forged
    // `bound` and a `go`; with it, task 2's failure to bind also aborts the group.
    let tasks: &[u16] = if start_task2 { &[1, 2, 3] } else { &[1, 3] };
    let mut procs: Vec<(u16, Spawned)> = tasks
        .iter()
        .map(|&t| {
            let mut c = restore_cmd(&plan, t, &s, &["--timeout", "3"]);
            c.args(["--", "/bin/sleep", "100"]);
            (t, Spawned::spawn(c))
        })
        .collect();
    let mut outs = Vec::new();
    for (t, pr) in procs.iter_mut() {
        let o = if wait_sleeping(pr.pid(), Duration::from_secs(5)) {
            let mut o = pr.kill();
            o.note = "it exec'd (restore succeeded)".into();
            o
        } else {
            pr.wait(Duration::from_secs(2))
        };
        outs.push((*t, o));
    }
    let r = rival.wait(Duration::from_secs(10));
    let report = outs.iter().map(|(t, o)| format!("task {t}: {o}")).collect::<Vec<_>>().join("\n");
    assert!(r.stdout.contains("RIVAL bound"), "the rival must have bound task 2's names first: {r}\n{report}");
    assert!(r.stdout.contains("RIVAL fds=0\n"), "the rival must receive no fd: {r}\n{report}");
    for (t, o) in &outs {
        assert_ne!(o.code(), Some(0), "task {t} must not succeed while a rival holds task 2's names:\n{report}");
        assert!(o.note.is_empty(), "task {t} must not exec:\n{report}");
    }
    if start_task2 {
        let task2 = &outs[1].1;
        assert!(task2.stderr.contains("EADDRINUSE"), "task 2 names the taken name: {task2}");
    } else {
        let task1 = &outs[0].1;
        assert_eq!(task1.code(), Some(3), "the coordinator times out waiting for task 2: {task1}");
        assert!(task1.stderr.contains("task 2"), "and names it: {task1}");
    }
}
forms!(active_rival_forges_bound_in_peers_barrier: task2_missing = false, task2_started = true);

/// Not a test on its own: the rival of `active_rival_forges_bound_in_peers_barrier_*`, run in a
/// separate process (as `nobody`) when `FDSLOT_RIVAL` holds "CTL1 CTL2 RX...".
#[test]
fn rival_process() {
    let Ok(spec) = std::env::var("FDSLOT_RIVAL") else { return };
    let words: Vec<&str> = spec.split(' ').collect();
    let ctl2 = bind_abstract(libc::SOCK_DGRAM, words[1]).expect("bind ctl 2");
    let rx: Vec<OwnedFd> = words[2..].iter().map(|w| bind_abstract(libc::SOCK_DGRAM, w).expect("bind rx")).collect();
    println!("RIVAL bound");
    let mut forged = [0u8; 8];
    forged[..5].copy_from_slice(b"bound");
    forged[6..8].copy_from_slice(&2u16.to_le_bytes());
    let (addr, len) = abstract_addr(words[0]);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(4) {
        // SAFETY: valid buffer and address.
        unsafe {
            libc::sendto(ctl2.as_raw_fd(), forged.as_ptr().cast(), forged.len(), libc::MSG_DONTWAIT, (&addr as *const libc::sockaddr_un).cast(), len)
        };
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut fds = 0;
    for s in &rx {
        if let Err(e) = rival_got_nothing(libc::SOCK_DGRAM, s, true) {
            println!("RIVAL got: {e}");
            fds += 1;
        }
    }
    println!("RIVAL fds={fds}");
}
