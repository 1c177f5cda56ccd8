//! `fdslot capture`: plans from live processes, checked by restoring them and asking the kernel
//! whether the new tree's tables are the old tree's (kcmp, /proc/PID/fd, fdinfo).
//!
//! The live trees are forked from this test: after fork the child only makes raw syscalls
//! (through libc) and never returns, so the test harness's threads do not matter.

#[macro_use]
mod common;

use common::*;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// A process group this test forked; SIGKILLed and reaped on drop.
struct Group {
    root: i32,
}

impl Drop for Group {
    fn drop(&mut self) {
        kill(-self.root, libc::SIGKILL);
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(self.root, std::ptr::null_mut(), 0) };
    }
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// In a forked child: fds 0, 1 and 2 on /dev/null, everything else closed but `keep`, which
/// moves to fd 900.
///
/// # Safety
/// Only in a child right after fork: raw syscalls only.
unsafe fn fresh_table(keep: i32) {
    unsafe {
        libc::dup2(keep, 900);
        libc::syscall(libc::SYS_close_range, 0u32, 899u32, 0u32);
        libc::syscall(libc::SYS_close_range, 901u32, u32::MAX, 0u32);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        libc::dup2(null, 1);
        libc::dup2(null, 2);
    }
}

/// Tells the test the child is set up (one byte on fd 900), then sleeps until killed.
///
/// # Safety
/// Only in a forked child.
unsafe fn report_and_wait() -> ! {
    unsafe {
        libc::write(900, b"r".as_ptr().cast(), 1);
        libc::close(900);
        loop {
            libc::pause();
        }
    }
}

/// Forks a child that runs `setup` (raw syscalls only) on a fresh table, then waits; returns
/// once it reported.
fn fork_child(setup: impl FnOnce()) -> Group {
    fork_reporting(1, setup)
}

/// [`fork_child`], waiting for `reports` bytes on fd 900 (the child's, and its own children's)
/// and then for every copy of fd 900 to be closed.
fn fork_reporting(reports: usize, setup: impl FnOnce()) -> Group {
    let mut p = [0i32; 2];
    // SAFETY: plain syscalls; the child only makes raw syscalls (setup promises the same).
    let pid = unsafe {
        assert_eq!(libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC), 0);
        let pid = libc::fork();
        if pid == 0 {
            libc::setpgid(0, 0);
            fresh_table(p[1]);
            setup();
            report_and_wait();
        }
        libc::close(p[1]);
        pid
    };
    assert!(pid > 0, "fork failed");
    let g = Group { root: pid };
    let mut pfd = libc::pollfd { fd: p[0], events: libc::POLLIN, revents: 0 };
    // SAFETY: one pollfd, then read one byte at a time.
    unsafe {
        for _ in 0..reports {
            assert_eq!(libc::poll(&mut pfd, 1, 20_000), 1, "child did not report");
            let mut b = 0u8;
            assert_eq!(libc::read(p[0], (&mut b as *mut u8).cast(), 1), 1, "child died during setup");
        }
        // A process writes its byte and then closes fd 900: wait for the end of file, the last
        // close, so that no caller sees fd 900 still open in a table it then inspects.
        assert_eq!(libc::poll(&mut pfd, 1, 20_000), 1, "a child kept fd 900 open");
        let mut b = 0u8;
        assert_eq!(libc::read(p[0], (&mut b as *mut u8).cast(), 1), 0, "one report too many");
        libc::close(p[0]);
    }
    g
}

/// The children of `pid` (from every process's parent pid: no CONFIG_PROC_CHILDREN needed).
fn children(pid: i32) -> Vec<i32> {
    let mut v: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&c| proc_ppid(c) == Some(pid))
        .collect();
    v.sort();
    v
}

/// The pids of a captured plan's tasks, in task order (from its `# pid P` comments).
fn plan_pids(plan: &str) -> Vec<i32> {
    plan.lines().filter(|l| l.starts_with("task ")).map(|l| l.rsplit("# pid ").next().unwrap().trim().parse().unwrap()).collect()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < CAP, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Everything the kernel says about a list of tasks' tables, with kernel object identities
/// replaced by the first (task index, fd) that has them, so two trees can be compared:
/// per fd its target (inode numbers of pipes and sockets elided), status flags, offset,
/// close-on-exec bit, eventfd count, memfd size; which description (kcmp KCMP_FILE) and which
/// pipe (inode) it shares with an earlier fd; which task's table each task's is (KCMP_FILES).
fn signature(pids: &[i32]) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen: Vec<(usize, i32, u32, String)> = Vec::new();
    for (t, &pid) in pids.iter().enumerate() {
        let table = (0..t).find(|&u| kcmp_files(pids[u], pid) == Ok(0));
        if let Some(u) = table {
            out.push(format!("task {t}: table of task {u}"));
            continue;
        }
        for fd in list_fds(pid).unwrap() {
            let link = fd_target(pid, fd);
            let (pos, flags) = fdinfo(pid, fd).unwrap();
            let kind = match link.split_once(":[") {
                Some((k, _)) if !link.starts_with('/') => format!("{k}:[*]"),
                _ => link.clone(),
            };
            let count = fdinfo_field(pid, fd, "eventfd-count").unwrap_or_default();
            let size = if link.starts_with("/memfd:") {
                std::fs::metadata(format!("/proc/{pid}/fd/{fd}")).map(|m| m.len()).unwrap_or(0)
            } else {
                0
            };
            let share = seen.iter().find(|s| kcmp_file(s.1, s.2, pid, fd) == Ok(0)).map(|s| format!("task {} fd {}", s.0, s.2));
            let same_pipe = link.starts_with("pipe:").then(|| seen.iter().find(|s| s.3 == link).map(|s| format!("task {} fd {}", s.0, s.2))).flatten();
            out.push(format!(
                "task {t} fd {fd}: {kind} flags {:o} pos {pos} cloexec {} count {count:?} size {size} shares {share:?} pipe-of {same_pipe:?}",
                flags & !(O_LARGEFILE | O_CLOEXEC),
                flags & O_CLOEXEC != 0
            ));
            seen.push((t, pid, fd, link));
        }
    }
    out
}

/// A plan without comments, exec= and blank lines: what must be equal between captures.
fn normalized(plan: &str) -> Vec<String> {
    plan.lines()
        .map(|l| l.split('#').next().unwrap().trim_end())
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().filter(|w| !w.starts_with("exec=")).collect::<Vec<_>>().join(" "))
        .collect()
}

fn capture(args: &[&str]) -> Output {
    let mut c = fdslot();
    c.arg("capture").args(args);
    output(c)
}

/// The tree of the round trip: T0 (forked here) with T1 (fork), T2 (`sh -c 'sleep | sleep'`)
/// and T3 (clone with CLONE_FILES: T0's own table).
///
/// - 0 /dev/null; 1 and 2 one description of app.log (O_APPEND): the shared log of every task;
/// - 3 data, O_RDWR, offset 3: one description shared across fork by T0..T2 and the sleeps;
/// - 4 socket pair end a (cloexec) in T0, end b at 5 in T1;
/// - 6 a dup of 3 with FD_CLOEXEC; 7 an eventfd (count 5, cloexec);
/// - 8 a pipe's read end (cloexec) in T0, its write end at 9 in T1 (O_NONBLOCK);
/// - 10 data again, O_RDONLY: a second description of the same file;
/// - 11 a memfd "state" holding 5 bytes, offset 5, inherited by the shell and the sleeps;
/// - 12 a FIFO, O_RDWR; 13 the directory, O_DIRECTORY (cloexec); 14 a symlink itself, O_PATH |
///   O_NOFOLLOW (cloexec).
fn start_tree(d: &TmpDir) -> (Group, Vec<i32>) {
    let log = cstr(&d.path("app.log"));
    let data = cstr(&d.file("data", b"0123456789"));
    let fifo = cstr(&d.path("fifo"));
    let dir = cstr(&d.0);
    let link = cstr(&d.path("link"));
    std::os::unix::fs::symlink("data", d.path("link")).unwrap();
    // SAFETY: a plain syscall on a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let argv = [c"/bin/sh".as_ptr(), c"-c".as_ptr(), c"sleep 100 | sleep 100".as_ptr(), std::ptr::null()];
    let envp = [c"PATH=/usr/bin:/bin".as_ptr(), std::ptr::null()];
    // SAFETY (of the closure): raw syscalls only, on memory prepared before the fork.
    let g = fork_reporting(2, || unsafe {
        let l = libc::open(log.as_ptr(), libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND, 0o644);
        libc::dup2(l, 1);
        libc::dup2(l, 2);
        libc::close(l);
        let f = libc::open(data.as_ptr(), libc::O_RDWR);
        libc::dup2(f, 3);
        libc::lseek(3, 3, libc::SEEK_SET);
        let mut sp = [0i32; 2];
        libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, sp.as_mut_ptr());
        libc::dup2(sp[0], 4);
        libc::dup2(sp[1], 5);
        libc::fcntl(4, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::dup3(3, 6, libc::O_CLOEXEC);
        let e = libc::eventfd(5, libc::EFD_CLOEXEC);
        libc::dup3(e, 7, libc::O_CLOEXEC);
        let mut p = [0i32; 2];
        libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC);
        libc::dup3(p[0], 8, libc::O_CLOEXEC);
        libc::dup3(p[1], 9, libc::O_CLOEXEC);
        let r = libc::open(data.as_ptr(), libc::O_RDONLY);
        libc::dup2(r, 10);
        let m = libc::memfd_create(c"state".as_ptr(), 0);
        libc::dup2(m, 11);
        libc::write(11, b"hello".as_ptr().cast(), 5);
        libc::dup2(libc::open(fifo.as_ptr(), libc::O_RDWR), 12);
        libc::dup3(libc::open(dir.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY), 13, libc::O_CLOEXEC);
        libc::dup3(libc::open(link.as_ptr(), libc::O_PATH | libc::O_NOFOLLOW), 14, libc::O_CLOEXEC);
        for x in [sp[0], sp[1], e, p[0], p[1], r, m, f] {
            if x > 14 {
                libc::close(x);
            }
        }
        if libc::fork() == 0 {
            // T1: end b of the pair, the pipe's write end (non-blocking).
            libc::close(4);
            libc::close(8);
            libc::fcntl(9, libc::F_SETFL, libc::O_NONBLOCK);
            libc::write(900, b"1".as_ptr().cast(), 1);
            libc::close(900);
            loop {
                libc::pause();
            }
        }
        libc::close(5);
        libc::close(9);
        if libc::fork() == 0 {
            libc::close(900);
            libc::execve(argv[0], argv.as_ptr(), envp.as_ptr());
            libc::_exit(127);
        }
        if libc::syscall(libc::SYS_clone, (libc::CLONE_FILES | libc::SIGCHLD) as libc::c_long, 0, 0, 0, 0) == 0 {
            loop {
                libc::pause();
            }
        }
    });
    let t0 = g.root;
    let mut kids = Vec::new();
    wait_for("T0's three children", || {
        kids = children(t0);
        kids.len() == 3
    });
    // By role, not by pid order (pids may wrap): T3 shares T0's table, the shell runs sh.
    let t3 = *kids.iter().find(|&&k| kcmp_files(t0, k) == Ok(0)).expect("T3");
    let t1 = *kids.iter().find(|&&k| k != t3 && list_fds(k).unwrap().contains(&5)).expect("T1");
    let sh = *kids.iter().find(|&&k| k != t3 && k != t1).unwrap();
    let kids = vec![t1, sh, t3];
    let mut sleeps = Vec::new();
    wait_for("the shell's two sleeps", || {
        sleeps = children(sh);
        sleeps.len() == 2 && sleeps.iter().all(|&p| proc_comm(p).as_deref() == Some("sleep"))
    });
    // The setup is what the test says it is (the kernel, not the helper, is asked).
    assert_eq!(list_fds(t0).unwrap(), (0..=14).filter(|&f| f != 5 && f != 9).collect());
    assert_eq!(list_fds(kids[0]).unwrap(), (0..=14).filter(|&f| f != 4 && f != 8).collect());
    assert!(fd_target(t0, 14).ends_with("/link") && fdinfo(t0, 14).unwrap().1 & libc::O_PATH as u32 != 0);
    assert_eq!(kcmp_files(t0, kids[2]), Ok(0), "T3 shares T0's table");
    let mut pids = vec![t0];
    pids.extend(&kids);
    pids.extend(&sleeps);
    (g, pids)
}

#[test]
fn round_trip_of_a_real_tree() {
    let d = TmpDir::new("capture-rt");
    let (_g, old) = start_tree(&d);
    let out = capture(&[&old[0].to_string(), "--tree"]);
    assert_eq!(out.code(), Some(0), "capture: {out}");
    let plan = out.stdout.clone();
    // The plan's task order (parents first, siblings as they started): the old pids in it.
    let old = plan_pids(&plan);
    // What the plan must say in words (the rest is checked on the restored tree).
    for want in ["task 4 parent=1 files=1", "socketpair 4 stream", "eventfd 5 count=5", "pipe 6", "memfd 8 state size=5 seals=seal pos=5", "reopen 12 6 w flags=nonblock"] {
        assert!(plan.lines().any(|l| l.starts_with(want)), "plan lacks {want:?}:\n{plan}");
    }
    let plan_path = d.plan(&plan);
    let check = output({
        let mut c = fdslot();
        c.arg("check").arg(&plan_path);
        c
    });
    assert_eq!(check.code(), Some(0), "{check}");

    let r = run_stop(&plan_path, &[]);
    let new: Vec<i32> = (1..=old.len() as u16).map(|t| r.pid(t)).collect();
    // The kernel says the new tables are the old ones.
    let (a, b) = (signature(&old), signature(&new));
    let diff: Vec<String> = a.iter().zip(&b).filter(|(x, y)| x != y).map(|(x, y)| format!("old: {x}\nnew: {y}")).collect();
    assert!(diff.is_empty() && a.len() == b.len(), "restored tables differ:\n{}\nold:\n{}\nnew:\n{}", diff.join("\n"), a.join("\n"), b.join("\n"));
    // The new tasks are children of their planned parents, as the old ones were.
    for (i, &p) in new.iter().enumerate().skip(1) {
        let parent_old = proc_ppid(old[i]).unwrap();
        let pi = old.iter().position(|&o| o == parent_old).expect("old parent captured");
        assert_eq!(proc_ppid(p), Some(new[pi]), "task {} parent", i + 1);
    }

    let mut v = fdslot();
    v.arg("verify").arg(&plan_path);
    for (i, p) in new.iter().enumerate() {
        v.arg(format!("{}={p}", i + 1));
    }
    let v = output(v);
    assert_eq!(v.code(), Some(0), "verify on the restored tree: {v}");
    let targets = plan.lines().filter(|l| matches!(l.split_whitespace().next(), Some("at" | "r" | "w" | "a" | "b"))).count();
    assert!(v.stdout.contains(&format!("verify: ok: 6 tasks, {targets} fds match the plan")), "{v}");

    let again = capture(&[&new[0].to_string(), "--tree"]);
    assert_eq!(again.code(), Some(0), "capture of the restored tree: {again}");
    assert_eq!(normalized(&again.stdout), normalized(&plan), "captures differ:\n{}\n---\n{}", plan, again.stdout);
    r.finish();
}

/// Capture without --tree: only the given pids, parents linked where both are given.
#[test]
fn given_pids_only() {
    let d = TmpDir::new("capture-pids");
    let (_g, old) = start_tree(&d);
    let out = capture(&[&old[0].to_string(), &old[2].to_string()]);
    assert_eq!(out.code(), Some(0), "{out}");
    let tasks: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("task ")).collect();
    assert_eq!(tasks.len(), 2, "{}", out.stdout);
    assert!(tasks[1].starts_with("task 2 parent=1 exec=/bin/sh,-c,sleep%20100%20|%20sleep%20100"), "{}", tasks[1]);
    // A given pid below another given one comes after it, linked through the tree between.
    let out = capture(&[&old[4].to_string(), &old[0].to_string(), "--tree"]);
    assert_eq!(out.code(), Some(0), "{out}");
    let tasks: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("task ")).collect();
    assert_eq!(tasks.len(), 6, "{}", out.stdout);
    assert!(tasks[0].ends_with(&format!("# pid {}", old[0])), "{}", out.stdout);
    let id_of = |pid: i32| tasks.iter().position(|l| l.ends_with(&format!("# pid {pid}"))).unwrap() + 1;
    let sleep_line = tasks[id_of(old[4]) - 1];
    assert!(sleep_line.contains(&format!(" parent={} ", id_of(old[2]))) && id_of(old[4]) > id_of(old[2]), "{}", out.stdout);
}

/// One child holding one unsupported fd at 3.
fn unsupported(setup: impl FnOnce(), link_prefix: &str, reason: &str) {
    let g = fork_child(setup);
    let pid = g.root;
    assert!(fd_target(pid, 3).starts_with(link_prefix), "setup: fd 3 is {}", fd_target(pid, 3));
    let out = capture(&[&pid.to_string()]);
    assert_eq!(out.code(), Some(1), "{out}");
    assert_eq!(out.stdout, "", "no plan on failure: {out}");
    let line = format!("fdslot: capture: task 1 (pid {pid}) fd 3: {}: {reason}", fd_target(pid, 3));
    assert!(out.stderr.lines().any(|l| l.starts_with(&line)), "want a line starting {line:?}: {out}");
    assert_eq!(out.stderr.lines().filter(|l| l.starts_with("fdslot: capture: task ")).count(), 1, "only fd 3 is named: {out}");
    assert!(out.stderr.ends_with("fdslot: capture: 1 fd cannot be captured (see above); --skip-unsupported leaves them out\n"), "{out}");

    let skip = capture(&[&pid.to_string(), "--skip-unsupported"]);
    assert_eq!(skip.code(), Some(0), "{skip}");
    assert!(!skip.stdout.contains("at 1:3"), "fd 3 left out: {skip}");
    assert!(skip.stdout.lines().any(|l| l.starts_with("#") && l.contains("task 1 fd 3: ") && l.contains(reason)), "fd 3 listed in a comment: {skip}");
    let d = TmpDir::new("capture-skip");
    let p = d.plan(&skip.stdout);
    let check = output({
        let mut c = fdslot();
        c.arg("check").arg(&p);
        c
    });
    assert_eq!(check.code(), Some(0), "{check}");
    // The rest restores: fds 0..=2 and nothing at 3.
    let r = run_stop(&p, &[]);
    assert_eq!(list_fds(r.pid(1)).unwrap(), [0, 1, 2].into_iter().collect());
    r.finish();
}

#[test]
fn tcp_socket_is_named() {
    unsupported(
        // SAFETY (closure): raw syscalls only.
        || unsafe {
            let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            let addr = libc::sockaddr_in { sin_family: libc::AF_INET as u16, sin_port: 0, sin_addr: libc::in_addr { s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be() }, sin_zero: [0; 8] };
            libc::bind(s, (&addr as *const libc::sockaddr_in).cast(), std::mem::size_of::<libc::sockaddr_in>() as u32);
            libc::listen(s, 1);
            libc::dup2(s, 3);
        },
        "socket:[",
        "a TCP socket (domain 2, type 1, protocol 6)",
    );
}

#[test]
fn epoll_is_named() {
    unsupported(
        // SAFETY (closure): raw syscalls only.
        || unsafe {
            let e = libc::epoll_create1(0);
            libc::dup2(e, 3);
        },
        "anon_inode:[eventpoll]",
        "an epoll instance",
    );
}

#[test]
fn deleted_file_is_named() {
    let d = TmpDir::new("capture-deleted");
    let p = cstr(&d.file("gone", b"x"));
    unsupported(
        // SAFETY (closure): raw syscalls only.
        || unsafe {
            let f = libc::open(p.as_ptr(), libc::O_RDONLY);
            libc::unlink(p.as_ptr());
            libc::dup2(f, 3);
        },
        "/",
        "a deleted file",
    );
}

#[test]
fn listening_unix_socket_is_named() {
    unsupported(
        // SAFETY (closure): raw syscalls only.
        || unsafe {
            let s = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            let mut a: libc::sockaddr_un = std::mem::zeroed();
            a.sun_family = libc::AF_UNIX as u16;
            // An abstract name: nothing to clean up.
            for (i, b) in b"\0fdslot-capture-test".iter().enumerate() {
                a.sun_path[i] = *b as libc::c_char;
            }
            libc::bind(s, (&a as *const libc::sockaddr_un).cast(), (2 + 20) as u32);
            libc::listen(s, 1);
            libc::dup2(s, 3);
        },
        "socket:[",
        "an AF_UNIX socket that is not one end of a socket pair",
    );
}

/// --data DIR saves a memfd's bytes and the plan restores them.
#[test]
fn memfd_contents_with_data_dir() {
    let g = fork_child(
        // SAFETY (closure): raw syscalls only.
        || unsafe {
            let m = libc::memfd_create(c"blob".as_ptr(), libc::MFD_ALLOW_SEALING);
            libc::write(m, b"contents!".as_ptr().cast(), 9);
            libc::lseek(m, 2, libc::SEEK_SET);
            libc::fcntl(m, libc::F_ADD_SEALS, libc::F_SEAL_GROW | libc::F_SEAL_SHRINK);
            libc::dup2(m, 3);
        },
    );
    let d = TmpDir::new("capture-data");
    let out = capture(&[&g.root.to_string(), "--data", d.0.to_str().unwrap()]);
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stdout.contains("memfd 2 blob size=9 seals=shrink,grow pos=2 data="), "{}", out.stdout);
    let p = d.plan(&out.stdout);
    let r = run_stop(&p, &[]);
    let pid = r.pid(1);
    assert_eq!(std::fs::read(format!("/proc/{pid}/fd/3")).unwrap(), b"contents!");
    assert_eq!(fdinfo(pid, 3).unwrap().0, 2);
    r.finish();
}

#[test]
fn pipe_with_only_nonblocking_ends_is_named() {
    unsupported(
        // SAFETY (closure): raw syscalls only.
        || unsafe {
            let mut p = [0i32; 2];
            // The lowest free numbers: 3 and 4. Only the read end stays.
            libc::pipe2(p.as_mut_ptr(), libc::O_NONBLOCK);
            libc::close(p[1]);
        },
        "pipe:[",
        "a pipe with no blocking description",
    );
}

/// Siblings sharing one table (clone(CLONE_FILES | CLONE_PARENT)) become `files=` on a sibling;
/// the restored siblings share one table too, and verify agrees.
#[test]
fn sibling_tables_round_trip() {
    let d = TmpDir::new("capture-siblings");
    let data = cstr(&d.file("data", b"abc"));
    // SAFETY (closure): raw syscalls only.
    let g = fork_reporting(2, || unsafe {
        libc::dup2(libc::open(data.as_ptr(), libc::O_RDONLY), 5);
        if libc::fork() == 0 {
            // T1, and its sibling T2 on T1's table (CLONE_PARENT: T0 is T2's parent too).
            if libc::syscall(libc::SYS_clone, (libc::CLONE_FILES | libc::CLONE_PARENT) as libc::c_long | libc::SIGCHLD as libc::c_long, 0, 0, 0, 0) == 0 {
                loop {
                    libc::pause();
                }
            }
            libc::dup2(libc::open(data.as_ptr(), libc::O_RDWR), 6);
            libc::write(900, b"1".as_ptr().cast(), 1);
            libc::close(900);
            loop {
                libc::pause();
            }
        }
    });
    let kids = children(g.root);
    assert_eq!(kids.len(), 2, "T0 has two children");
    assert_eq!(kcmp_files(kids[0], kids[1]), Ok(0), "the kernel: T1 and T2 share one table");
    let out = capture(&[&g.root.to_string(), "--tree"]);
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stdout.lines().any(|l| l.starts_with("task 3 parent=1 files=2 ")), "{}", out.stdout);
    let plan = d.plan(&out.stdout);
    let r = run_stop(&plan, &[]);
    let (n1, n2, n3) = (r.pid(1), r.pid(2), r.pid(3));
    assert_eq!(kcmp_files(n2, n3), Ok(0), "restored siblings share one table");
    assert_ne!(kcmp_files(n1, n2), Ok(0));
    assert_eq!(proc_ppid(n3), Some(n1), "the sibling's parent is task 1");
    assert_eq!(signature(&plan_pids(&out.stdout)), signature(&[n1, n2, n3]));
    let mut v = fdslot();
    v.arg("verify").arg(&plan).arg(format!("1={n1}")).arg(format!("2={n2}")).arg(format!("3={n3}"));
    let v = output(v);
    assert_eq!(v.code(), Some(0), "{v}");
    assert!(v.stdout.contains("task 3 (pid ") && v.stdout.contains("shares the fd table of task 2, as planned (kcmp KCMP_FILES)"), "{v}");
    r.finish();
}
