//! Rogue processes on the session's socket names. Every process in the network namespace can
//! read the bound abstract names in /proc/net/unix, bind names still free, and send to bound
//! ones. The rogue here is this test binary re-run (as `nobody` or as our own uid, never our
//! child's code path) with `FDSLOT_ROGUE` set; see `rogue_process`. It watches /proc/net/unix
//! (or is told a session's names outright, as one that knows the session would be), tries to
//! bind every name it sees, and floods each with junk datagrams and with datagrams carrying its
//! own fd, for as long as the restores run.
//!
//! What must hold: the rogue receives nothing; no task ever holds the rogue's file; the restore
//! succeeds with exactly the planned tables (junk is refused by the kernel or ignored) or, where
//! the rogue speaks the protocol, fails cleanly. The rogue that binds a name first, before the
//! restore starts, is `restore_sync.rs` (`rival_holds_*`): the group aborts before any send.

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The rogue's own file: the inode every task fd is compared against.
fn rogue_file(d: &TmpDir) -> PathBuf {
    std::fs::set_permissions(&d.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let f = d.file("rogue", b"the rogue's file");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    f
}

/// The names a rogue is told, in a file beside its own (too many for the environment).
fn names_file(file: &Path, names: &[String]) -> String {
    if names.is_empty() {
        return String::new();
    }
    let f = file.with_file_name("rogue-names");
    std::fs::write(&f, names.join("\n")).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    f.display().to_string()
}

struct Rogue {
    proc: Spawned,
}

impl Rogue {
    /// Starts the rogue for `secs` seconds as `uid`; `names` empty: it watches /proc/net/unix.
    fn start(uid: u32, secs: u64, file: &Path, names: &[String]) -> Rogue {
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.args(["--exact", "rogue_process", "--nocapture", "--test-threads", "1"])
            .env("FDSLOT_ROGUE", format!("{secs} {} {}", file.display(), names_file(file, names)));
        if uid != 0 {
            c.uid(uid).gid(uid);
        }
        let r = Rogue { proc: Spawned::spawn(c) };
        // Let it start watching.
        std::thread::sleep(Duration::from_millis(300));
        r
    }

    /// Waits for its report: (names seen, binds won, datagrams accepted, fds it received).
    fn report(mut self) -> (usize, usize, usize, usize, String) {
        let o = self.proc.wait(Duration::from_secs(60));
        let line = o.stdout.lines().find_map(|l| l.find("ROGUE seen=").map(|i| &l[i..])).unwrap_or_else(|| panic!("no rogue report: {o}")).to_string();
        let get = |k: &str| -> usize {
            line.split(' ').find_map(|w| w.strip_prefix(&format!("{k}="))).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{k} in {line}"))
        };
        let received: Vec<&str> = o.stdout.lines().filter_map(|l| l.find("ROGUE received").map(|i| &l[i..])).collect();
        (get("seen"), get("won"), get("accepted"), get("got"), format!("{line} {received:?}"))
    }
}

/// Every fd of every task is checked: none may be the rogue's file (same device and inode).
fn assert_no_rogue_file(pids: &BTreeMap<u16, i32>, rogue: &Path) {
    let m = std::fs::metadata(rogue).unwrap();
    for (&t, &pid) in pids {
        for fd in list_fds(pid).unwrap() {
            if let Ok(f) = std::fs::metadata(format!("/proc/{pid}/fd/{fd}")) {
                assert!(!(f.dev() == m.dev() && f.ino() == m.ino()), "task {t} fd {fd} holds the rogue's file");
            }
        }
    }
}

/// Three tasks, each opening files the other two receive; one socket per fd with `--batch 1`.
fn busy_plan(d: &TmpDir) -> Plan {
    let mut p = Plan::new();
    p.task(1).task(2).task(3);
    for i in 0..30u32 {
        let opener = 1 + (i % 3) as u16;
        let f = d.file(&format!("f{i}"), b"f");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        p.reg(10 + i, &f, "rdonly");
        for t in 1..=3u16 {
            p.at(t, if t == opener { 3 + i } else { 40 + i });
        }
    }
    p.pipe(100).r(1, 90).w(3, 90);
    p.socketpair(101, "stream", "").a(2, 91).b(3, 91);
    p
}

fn plan_file(d: &TmpDir, p: &Plan) -> PathBuf {
    let plan = d.plan(&p.text());
    std::fs::set_permissions(&plan, std::fs::Permissions::from_mode(0o644)).unwrap();
    plan
}

/// `run`: the session is random, so the names are unpredictable; a rogue watching
/// /proc/net/unix sees each name only once it is bound, cannot take it, and whatever it sends
/// is refused (receiving sockets are connected to their opener before they get a name) or
/// lands on a sending socket that never reads. Every round restores exactly the plan.
fn watcher_and_run(uid: u32) {
    let d = TmpDir::new(if uid == 0 { "watchrun" } else { "watchrun-nb" });
    let rf = rogue_file(&d);
    let p = busy_plan(&d);
    let plan = plan_file(&d, &p);
    let rogue = Rogue::start(uid, 6, &rf, &[]);
    let t = Instant::now();
    let mut rounds = 0;
    while t.elapsed() < Duration::from_secs(4) || rounds < 3 {
        for batch in [&["--batch", "1"][..], &[]] {
            let mut args = vec!["--timeout", "10"];
            args.extend_from_slice(batch);
            let r = start_stopped(run_stop_cmd(&plan, &args)).unwrap_or_else(|o| panic!("round {rounds}: run with a watching rogue (uid {uid}) failed: {o}"));
            assert_tables(&p.expect(), &r.pids, &CheckOpts { stopped: true, ..Default::default() });
            assert_no_rogue_file(&r.pids, &rf);
            r.finish();
        }
        rounds += 1;
    }
    let (seen, won, accepted, got, line) = rogue.report();
    eprintln!("{rounds} rounds; {line}");
    assert!(seen > 0, "the rogue must have seen the sessions' names in /proc/net/unix, or this proves nothing: {line}");
    // Names it could take were stale (their session over); nothing came to them from fdslot.
    assert_eq!(got, 0, "nothing was sent to the rogue: {line}");
    let _ = (won, accepted);
}

#[test]
fn watcher_gets_nothing_from_run_same_uid() {
    watcher_and_run(0);
}
#[test]
fn watcher_gets_nothing_from_run_as_nobody() {
    watcher_and_run(65534);
}

/// `restore` with the tasks' own barrier, and a rogue that knows every name of the session (it
/// knows the session) and floods them all, from before the tasks start until after they end,
/// with junk and with its own fd: as `nobody`, and as our own uid from an unrelated process.
/// The tasks' receiving and barrier sockets take datagrams only from their one peer; the
/// coordinator's takes `bound` only from a task's own name and uid, and drops any fd. So the
/// restore succeeds with exactly the plan, and no task holds the rogue's file.
fn flood_restore(uid: u32, batch: &[&str]) {
    flood_restore_plan(uid, batch, busy_plan)
}

/// One opener, one receiver, 600 files one per socket (past the 64 of a window under `run`).
fn window_plan(d: &TmpDir) -> Plan {
    let mut p = Plan::new();
    p.task(1).task(2);
    let f = d.file("w", b"w");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    for i in 0..600u32 {
        p.reg(10 + i, &f, "rdonly").at(1, 3 + i).at(2, 3 + i);
    }
    p
}

fn flood_restore_plan(uid: u32, batch: &[&str], make: fn(&TmpDir) -> Plan) {
    let d = TmpDir::new(if uid == 0 { "floodrs" } else { "floodrs-nb" });
    let rf = rogue_file(&d);
    let p = make(&d);
    let plan = plan_file(&d, &p);
    // A session per round, every name of all of them told to the rogue up front: the flood meets
    // every stage of the restore many times. (Not one session for every round: a watching rogue
    // of another test would see its names and could take them between rounds.)
    let base = session(if uid == 0 { "flood" } else { "floodnb" });
    let sessions: Vec<String> = (0..30).map(|i| format!("{base}r{i}")).collect();
    let mut all: Vec<String> = Vec::new();
    for s in &sessions {
        let n = names(&plan, s, batch);
        all.extend(n.home.values().cloned());
        all.extend(n.rx.iter().map(|r| r.name.clone()));
        all.extend(n.other.iter().map(|l| l.rsplit(' ').next().unwrap().to_string()));
    }
    let rogue = Rogue::start(uid, 5, &rf, &all);
    let t = Instant::now();
    let mut rounds = 0;
    while (t.elapsed() < Duration::from_secs(3) || rounds < 3) && rounds < sessions.len() {
        let s = &sessions[rounds];
        let mut procs: Vec<(u16, Spawned)> = p
            .task_ids()
            .into_iter()
            .map(|t| {
                let mut a = vec!["--timeout", "10"];
                a.extend_from_slice(batch);
                let mut c = restore_cmd(&plan, t, s, &a);
                c.args(["--", "/bin/sleep", "100"]);
                (t, Spawned::spawn(c))
            })
            .collect();
        let pids = exec_pids(&mut procs);
        assert_tables(&p.expect(), &pids, &CheckOpts { after_exec: true, ..Default::default() });
        assert_no_rogue_file(&pids, &rf);
        drop(procs);
        rounds += 1;
    }
    let (_, won, accepted, got, line) = rogue.report();
    eprintln!("{rounds} rounds; {line}");
    assert_eq!((won, got), (0, 0), "the rogue bound nothing and received nothing: {line}");
    assert!(accepted > 0 || uid != 0, "the flood reached the sessions' unconnected sockets: {line}");
}

#[test]
fn flood_restore_same_uid() {
    flood_restore(0, &[]);
}
#[test]
fn flood_restore_same_uid_batch1() {
    flood_restore(0, &["--batch", "1"]);
}
/// The flood on 600 sockets from one opener (under `restore` all are bound before the barrier:
/// no window, so a forged credit has nothing to unlock): junk and fds are dropped, the restore
/// is exact.
#[test]
fn flood_restore_sliding_window() {
    flood_restore_plan(0, &["--batch", "1"], window_plan);
}
#[test]
fn flood_restore_as_nobody() {
    flood_restore(65534, &[]);
}

/// Two `run`s of one plan at once: each has its own random session, so their names never meet;
/// both restore exactly the plan and share no description with each other.
#[test]
fn two_runs_of_one_plan_at_once() {
    let d = TmpDir::new("tworuns");
    let p = busy_plan(&d);
    let plan = plan_file(&d, &p);
    for round in 0..3 {
        let (a, b) = (plan.clone(), plan.clone());
        let h1 = std::thread::spawn(move || start_stopped(run_stop_cmd(&a, &["--timeout", "10"])));
        let h2 = std::thread::spawn(move || start_stopped(run_stop_cmd(&b, &["--timeout", "10", "--batch", "1"])));
        let r1 = h1.join().unwrap().unwrap_or_else(|o| panic!("round {round}: first run: {o}"));
        let r2 = h2.join().unwrap().unwrap_or_else(|o| panic!("round {round}: second run: {o}"));
        for r in [&r1, &r2] {
            assert_tables(&p.expect(), &r.pids, &CheckOpts { stopped: true, ..Default::default() });
        }
        for t in 1..=3u16 {
            assert_ne!(kcmp_file(r1.pid(t), 40 + t as u32, r2.pid(t), 40 + t as u32), Ok(0), "round {round} task {t}: the two runs share a description");
            assert_ne!(kcmp_file(r1.pid(t), 90, r2.pid(t), 90), Ok(0), "round {round} task {t}: the two runs share a description");
        }
        r1.finish();
        r2.finish();
    }
}

// --- the rogue ----------------------------------------------------------------------------

/// The abstract names `@fdslot-...` bound now, from /proc/net/unix.
fn bound_names() -> BTreeSet<String> {
    std::fs::read_to_string("/proc/net/unix")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(7))
        .filter_map(|p| p.strip_prefix('@'))
        .filter(|p| p.starts_with("fdslot-"))
        .map(str::to_string)
        .collect()
}

/// Drains a socket the rogue holds; counts received fds that are not some rogue's file.
fn received_from_fdslot(s: &OwnedFd) -> usize {
    let mut n = 0;
    loop {
        let mut buf = [0u8; 64];
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        let mut cbuf = [0u64; 64];
        // SAFETY: all-zero msghdr is valid; its buffers outlive the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf);
        // SAFETY: msg is set up.
        if unsafe { libc::recvmsg(s.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) } < 0 {
            return n;
        }
        // SAFETY: walking the control messages the kernel wrote.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let k = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                    for i in 0..k {
                        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<i32>().add(i));
                        // A rogue's file may be deleted by now: its test is over.
                        let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap_or_default();
                        let target = target.to_string_lossy();
                        if !(target.ends_with("/rogue") || target.ends_with("/rogue (deleted)")) {
                            println!("ROGUE received {target}");
                            n += 1;
                        }
                        libc::close(fd);
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
    }
}

fn send_junk(s: &OwnedFd, name: &str, bytes: &[u8]) -> bool {
    let (a, len) = abstract_addr(name);
    // SAFETY: valid buffer and address.
    unsafe { libc::sendto(s.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL, (&a as *const libc::sockaddr_un).cast(), len) >= 0 }
}

/// Not a test on its own: the rogue, run in a separate process when `FDSLOT_ROGUE` holds
/// "SECONDS FILE [NAMES-FILE]".
#[test]
fn rogue_process() {
    let Ok(spec) = std::env::var("FDSLOT_ROGUE") else { return };
    let mut words = spec.split(' ').filter(|w| !w.is_empty());
    let secs: u64 = words.next().unwrap().parse().unwrap();
    let file = std::fs::File::open(words.next().unwrap()).expect("the rogue opens its file");
    let given: BTreeSet<String> = match words.next() {
        Some(list) => std::fs::read_to_string(list).expect("the rogue reads its names").lines().map(str::to_string).collect(),
        None => BTreeSet::new(),
    };
    let out = socket(libc::SOCK_DGRAM);
    let (mut seen, mut tried) = (BTreeSet::new(), BTreeSet::new());
    let mut won: Vec<OwnedFd> = Vec::new();
    let (mut accepted, mut sends) = (0usize, 0usize);
    let mut rng = Rng(std::process::id() as u64 * 0x9e37_79b9 + 1);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(secs) {
        let now = if given.is_empty() { bound_names() } else { given.clone() };
        for name in &now {
            if given.is_empty() && !seen.contains(name) {
                seen.insert(name.clone());
            }
            // A watcher takes a name it sees if it is free: never, while its session lasts
            // (afterwards the name is stale and unused). One told the names floods only: taking
            // them first is the pre-bind case of restore_sync.rs.
            if given.is_empty() && tried.insert(name.clone()) {
                if let Ok(s) = bind_abstract(libc::SOCK_DGRAM, name) {
                    won.push(s);
                }
            }
            // Junk of every length the protocol uses, words it uses, and its own fd.
            let mut junk = [0u8; 40];
            for b in junk.iter_mut() {
                *b = rng.next() as u8;
            }
            let len = [1usize, 5, 8, 24, 28, 40][rng.below(6) as usize];
            accepted += send_junk(&out, name, &junk[..len]) as usize;
            accepted += send_fd(&out, Some(name), file.as_raw_fd()).is_ok() as usize;
            sends += 2;
        }
        if now.is_empty() {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    // Fds that came to a name it holds, other than rogues' own files (concurrent tests run
    // rogues of their own, which flood every name they see, this one's included).
    let mut got = 0;
    for s in &won {
        got += received_from_fdslot(s);
    }
    let seen_n = if given.is_empty() { seen.len() } else { given.len() };
    println!("ROGUE seen={seen_n} won={} sends={sends} accepted={accepted} got={got}", won.len());
}
