//! Under `run`, the seed's form (one socket per received fd) keeps only a window of receiving
//! sockets bound at once per receiver (across its openers), sliding it with credits; under `restore`
//! (where a credit's sender cannot be checked by pid) every socket is bound before the
//! barrier. Checked in /proc/net/unix (read while the restore is frozen, so that it is one
//! moment's table), and by the kernel's view of the tables once done.

#[macro_use]
mod common;

use common::*;
use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::time::Duration;

/// fdslot's window (src/restore/mod.rs WINDOW).
const WINDOW: usize = 64;
const SYNC: i32 = 200;

/// Task 1 opens `n` files that task 2 also holds (and task 3 every third one).
fn shared_plan(d: &TmpDir, n: u32) -> Plan {
    let f = d.file("f", b"0123456789");
    let mut p = Plan::new();
    p.task(1).task(2).task(3);
    for i in 0..n {
        let o = p.reg(i + 1, &f, "rdonly").at(1, 10 + i).at(2, 10 + i);
        if i % 3 == 0 {
            o.at(3, 5000 - i);
        }
    }
    p
}

/// Task 1 opens `n` files that task 2 also holds, both at fds 10 and up.
fn one_to_one_plan(d: &TmpDir, n: u32) -> Plan {
    let f = d.file("f", b"x");
    let mut p = Plan::new();
    p.task(1).task(2);
    for i in 0..n {
        p.reg(i + 1, &f, "rdonly").at(1, 10 + i).at(2, 10 + i);
    }
    p
}

/// The abstract names bound right now (`@name` in /proc/net/unix).
fn bound_names() -> BTreeSet<String> {
    std::fs::read_to_string("/proc/net/unix")
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(7).and_then(|p| p.strip_prefix('@')).map(str::to_string))
        .collect()
}

/// `fdslot names`: the rx names of `receiver`, one per batch.
fn rx_names(plan: &std::path::Path, session: &str, batch: &str, receiver: u16) -> Vec<String> {
    let mut c = fdslot();
    c.arg("names").arg(plan).args(["--session", session, "--batch", batch]);
    let o = output(c);
    assert_eq!(o.code(), Some(0), "{o}");
    o.stdout
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.first() == Some(&"rx") && w[1] == receiver.to_string()).then(|| w[5].to_string())
        })
        .collect()
}

/// 700 files from task 1 to task 2 under `restore`: at the barrier every receiving name of task
/// 2 is bound (no window, no credits to forge); after go every fd lands where planned.
fn bounded_window((batch, n): (&str, u32)) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = TmpDir::new("window");
    let p = shared_plan(&d, n);
    let plan = d.plan(&p.text());
    let s = session("win");
    let mut procs: Vec<(Spawned, OwnedFd)> = Vec::new();
    for t in [1u16, 2, 3] {
        let cmd = restore_cmd(&plan, t, &s, &["--sync-fd", "200", "--batch", batch, "--timeout", "20", "--", "/bin/sleep", "100"]);
        procs.push(spawn_sync(cmd, SYNC));
    }
    for (i, (pr, sock)) in procs.iter_mut().enumerate() {
        let m = recv_packet(sock, CAP);
        assert_eq!(m, Ok(Some(b"bound".to_vec())), "task {}: {}", i + 1, pr.kill());
    }
    let names = rx_names(&plan, &s, batch, 2);
    let bound = bound_names();
    let now: Vec<&String> = names.iter().filter(|n| bound.contains(*n)).collect();
    assert_eq!(now.len(), names.len(), "task 2 has {} of its {} receiving names bound at the barrier", now.len(), names.len());
    for (_, sock) in &procs {
        send_packet(sock, b"go").unwrap();
    }
    let mut pids = std::collections::BTreeMap::new();
    for (i, (pr, sock)) in procs.iter_mut().enumerate() {
        let m = recv_packet(sock, CAP);
        assert_eq!(m, Ok(Some(b"done".to_vec())), "task {}: {}", i + 1, pr.kill());
        assert!(wait_sleeping(pr.pid(), Duration::from_secs(10)), "task {} execs", i + 1);
        pids.insert(i as u16 + 1, pr.pid());
    }
    assert_tables(&p.expect(), &pids, &CheckOpts { after_exec: true, ..Default::default() });
    assert!(rx_names(&plan, &s, batch, 2).iter().all(|n| !bound_names().contains(n)), "no receiving name stays bound");
}
forms!(bounded_window: seed = ("1", 700), batch2 = ("2", 700), batched = ("253", 700));

/// Tests here watch machine-wide name counts: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// How many `fdslot-` abstract names are bound right now.
fn fdslot_names_bound() -> usize {
    bound_names().iter().filter(|n| n.starts_with("fdslot-")).count()
}

/// A cgroup freezer that `run` and every task it forks are put in: while frozen, no process of
/// the restore can bind or close a socket, so /proc/net/unix read then is one moment's table.
/// (Read while they run, the file is walked bucket by bucket across several reads and mixes
/// moments: names bound after an unbound one was counted are counted too; under load it
/// showed up to 80 for a window of 64.) The freezer stops nothing as a signal would: `run`
/// sees no stopped child, and a frozen poll is restarted.
struct Freezer {
    dir: std::path::PathBuf,
    /// The file whose contents freeze and thaw: (file, frozen, thawed).
    control: (&'static str, &'static str, &'static str),
}

impl Freezer {
    /// A new freezer cgroup: v1's freezer hierarchy where mounted, else a cgroup2 group.
    fn new() -> Freezer {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
        let mount = |kind: &str, option: Option<&str>| {
            mounts.lines().find_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w.len() > 3 && w[2] == kind && option.is_none_or(|o| w[3].split(',').any(|x| x == o))).then(|| w[1].to_string())
            })
        };
        let (root, control) = match (mount("cgroup", Some("freezer")), mount("cgroup2", None)) {
            (Some(v1), _) => (v1, ("freezer.state", "FROZEN", "THAWED")),
            (None, Some(v2)) => (v2, ("cgroup.freeze", "1", "0")),
            (None, None) => panic!("no cgroup freezer mounted (v1 freezer or cgroup2): this test needs one to read the name table at one moment"),
        };
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::path::Path::new(&root).join(format!("fdslot-window-{}-{n}", std::process::id()));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        Freezer { dir, control }
    }

    /// Makes `cmd`'s process join this group before it execs (its forks follow it).
    fn enter(&self, cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        let procs = std::ffi::CString::new(self.dir.join("cgroup.procs").into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: between fork and exec only async-signal-safe calls (open, write, close) on
        // memory prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                let ok = fd >= 0 && libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
                if fd >= 0 {
                    libc::close(fd);
                }
                if ok { Ok(()) } else { Err(std::io::Error::last_os_error()) }
            });
        }
    }

    fn set(&self, value: &str) {
        std::fs::write(self.dir.join(self.control.0), value).unwrap();
    }

    /// Freezes the group and waits until every process in it is frozen: false if it is still
    /// freezing after a second (then it is thawed again).
    fn freeze(&self) -> bool {
        self.set(self.control.1);
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(1) {
            if self.is_frozen() {
                return true;
            }
            std::thread::yield_now();
        }
        self.thaw();
        false
    }

    fn is_frozen(&self) -> bool {
        if self.control.0 == "cgroup.freeze" {
            std::fs::read_to_string(self.dir.join("cgroup.events")).unwrap().lines().any(|l| l == "frozen 1")
        } else {
            std::fs::read_to_string(self.dir.join("freezer.state")).unwrap().trim() == "FROZEN"
        }
    }

    fn thaw(&self) {
        self.set(self.control.2);
    }
}

impl Drop for Freezer {
    fn drop(&mut self) {
        self.thaw();
        // The group empties as its processes are reaped.
        let start = std::time::Instant::now();
        while std::fs::remove_dir(&self.dir).is_err() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// `run --stop` inside a freezer while a thread freezes it over and over, counts the bound
/// fdslot names while nothing moves, and thaws it: the restore, the most names bound at one
/// moment (beyond those bound before it started), how many moments were counted, and the
/// freezer, to drop once the restore's processes are gone.
fn run_stop_counting_names(plan: &std::path::Path, args: &[&str]) -> (Running, usize, usize, std::sync::Arc<Freezer>) {
    let before = fdslot_names_bound();
    let freezer = std::sync::Arc::new(Freezer::new());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (stop, freezer) = (stop.clone(), freezer.clone());
        std::thread::spawn(move || {
            let (mut most, mut moments) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if freezer.freeze() {
                    most = most.max(fdslot_names_bound());
                    moments += 1;
                    freezer.thaw();
                }
                // Let the restore move on between moments.
                std::thread::sleep(Duration::from_micros(300));
            }
            (most, moments)
        })
    };
    let mut cmd = run_stop_cmd(plan, args);
    freezer.enter(&mut cmd);
    let r = start_stopped(cmd);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (most, moments) = watcher.join().unwrap();
    let r = r.unwrap_or_else(|o| panic!("fdslot run {} --stop did not get to ready: {o}", plan.display()));
    (r, most.saturating_sub(before), moments, freezer)
}

/// `run --stop`, 3,000 files from task 1 to task 2 in the seed's form, while this test counts
/// the bound fdslot names over and over: never more than one window (and the home socket),
/// and the count shows the restore was seen (without the window it peaks at 3,000). Task 1 is
/// named the opener of every file: `run` would otherwise spread the opens over both tasks,
/// and each would receive.
#[test]
fn run_keeps_one_window_bound() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = TmpDir::new("winrun");
    let f = d.file("f", b"x");
    let mut p = Plan::new();
    p.task(1).task(2);
    for i in 0..3000 {
        p.reg(i + 1, &f, "rdonly").opener(1).at(1, 10 + i).at(2, 10 + i);
    }
    let plan = d.plan(&p.text());
    let (r, most, moments, _freezer) = run_stop_counting_names(&plan, &["--batch", "1"]);
    assert_tables(&p.expect(), &r.pids, &CheckOpts { stopped: true, ..Default::default() });
    r.finish();
    assert!(most >= WINDOW / 2, "the watcher saw the restore's names ({most} at most in {moments} moments)");
    assert!(most <= WINDOW + 2, "{most} names bound at once; the window is {WINDOW}");
}

/// `run --stop` with windows sliding in two receivers at once, and a receiver (task 3) whose
/// slots lie in reverse order: every fd where planned, shared as planned.
fn sliding_windows(batch: Option<u32>) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = TmpDir::new("slide");
    let p = shared_plan(&d, 1500);
    run_and_check(&p, &d, &strs(&batch_args(batch)));
}
forms!(sliding_windows: seed = Some(1), batched = None);

/// `run --stop` with 64 tasks, each receiving 4 files from every other one in the seed's form:
/// 16,128 receiving sockets in all. The window is per receiver across all its openers (4096
/// names over 64 tasks: 64 each), so at no moment are more than 4,096 receiving names bound
/// (and 64 homes), where per-opener windows would bind all 16,128 at once. Openers whose
/// batches wait for credits send others meanwhile; every fd lands where planned.
#[test]
fn run_bounds_names_across_openers() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = TmpDir::new("winmany");
    let f = d.file("f", b"x");
    const TASKS: u32 = 64;
    const EACH: u32 = 4;
    let mut p = Plan::new();
    for t in 1..=TASKS {
        p.task(t as u16);
    }
    let mut id = 0;
    for o in 1..=TASKS {
        for r in (1..=TASKS).filter(|&r| r != o) {
            for i in 0..EACH {
                id += 1;
                // Opener o holds it at a slot of its own; receiver r at one of its received slots.
                p.reg(id, &f, "rdonly").at(o as u16, 10 + (r - 1) * EACH + i).at(r as u16, 1000 + (o - 1) * EACH + i);
            }
        }
    }
    let plan = d.plan(&p.text());
    let (r, most, moments, _freezer) = run_stop_counting_names(&plan, &["--batch", "1", "--timeout", "60"]);
    assert_tables(&p.expect(), &r.pids, &CheckOpts { stopped: true, ..Default::default() });
    r.finish();
    assert!(most >= 1000, "the watcher saw the restore's names ({most} at most in {moments} moments)");
    assert!(most <= 4096 + TASKS as usize, "{most} names bound at once; the budget is 4096 receiving names and one home per task");
}

/// The wakes a receiver sends to openers waiting for its credits, as strace saw them: (fd,
/// whether the call named a destination) per `"w"` datagram sent.
fn traced_wakes(plan: &std::path::Path, args: &[&str]) -> Vec<(u32, bool)> {
    let mut all: Vec<&std::ffi::OsStr> = vec!["run".as_ref(), plan.as_os_str()];
    all.extend(args.iter().map(std::ffi::OsStr::new));
    strace_fdslot("sendto", &all)
        .lines()
        .filter_map(|l| {
            let call = &l[l.find("sendto(")? + 7..];
            let (fd, rest) = call.split_once(", ")?;
            rest.starts_with("\"w\", 1,").then(|| (fd.parse().unwrap(), rest.contains("sun_path=@\"fdslot-")))
        })
        .collect()
}

/// An opener that waits for credits is woken by a datagram to its home, never from a receiving
/// socket connected to it: that socket may hold the batch already (the opener saw the credit
/// meanwhile, sent it, and ended), and a send on a datagram socket whose peer has closed purges
/// its queue, the file with it, leaving the receiver to wait for it until its timeout (seen
/// once in a few hundred runs of 1,000 tasks). Checked in what strace saw: every wake comes
/// from an unplanned fd and names the home; and there were wakes (3,000 files in the seed's
/// form, under strace's slowness, make the opener wait for credits many times).
#[test]
fn wakes_never_come_from_receiving_sockets() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = TmpDir::new("wake");
    const N: u32 = 3000;
    let p = one_to_one_plan(&d, N);
    let plan = d.plan(&p.text());
    let mut wakes = Vec::new();
    for _ in 0..3 {
        wakes = traced_wakes(&plan, &["--batch", "1", "--timeout", "60"]);
        if !wakes.is_empty() {
            break;
        }
    }
    assert!(!wakes.is_empty(), "no opener ever waited for a credit in three runs: the test saw nothing");
    for &(fd, named) in &wakes {
        assert!(!(10..10 + N).contains(&fd), "a wake was sent from fd {fd}, a planned slot (a receiving socket)");
        assert!(named, "a wake from fd {fd} named no destination: sent on a connected socket");
    }
}
