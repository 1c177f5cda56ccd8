//! `fdslot verify` and `fdslot run --verify`: a restored tree checked against plans that match
//! it and plans that differ in one way each. Each test also asks the kernel itself that the
//! difference verify reports is real.

#[macro_use]
mod common;

use common::*;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// The tree every test restores: two tasks sharing one description of a file at three fds,
/// a second description of the same file, a pipe, a stream and a datagram socket pair, and an
/// eventfd.
fn base(log: &str) -> String {
    format!(
        "fdslot 1
task 1
task 2 parent=1
reg 1 {log} flags=rdwr pos=4
  at 1:5
  at 2:5
  at 2:7 cloexec
reg 2 {log} flags=rdwr pos=4
  at 2:8
pipe 3
  r 1:3
  w 2:4 cloexec
socketpair 4 stream
  a 1:6
  b 2:6
socketpair 5 dgram
  a 1:10
  b 2:10
eventfd 6 count=3
  at 1:9
"
    )
}

struct Tree {
    dir: TmpDir,
    log: String,
    run: Running,
}

impl Tree {
    fn start() -> Tree {
        let dir = TmpDir::new("verify");
        let log = dir.file("app.log", b"0123456789").to_str().unwrap().to_string();
        let plan = dir.plan(&base(&log));
        let run = run_stop(&plan, &[]);
        Tree { dir, log, run }
    }

    fn pid(&self, t: u16) -> i32 {
        self.run.pid(t)
    }

    /// `fdslot verify` of plan text `text` against the tree.
    fn verify(&self, text: &str) -> Output {
        let p = self.dir.plan(text);
        let mut c = fdslot();
        c.arg("verify").arg(&p).arg(format!("1={}", self.pid(1))).arg(format!("2={}", self.pid(2)));
        output(c)
    }

    /// Verifies `text`, which differs from the tree: exit 1, and `line` among the mismatches.
    fn mismatch(&self, text: &str, line: &str) -> Output {
        let o = self.verify(text);
        assert_eq!(o.code(), Some(1), "{o}");
        let line = line.replace("LOG", &self.log);
        assert!(o.stdout.lines().any(|l| l == line), "want the line\n{line}\n{o}");
        assert!(o.stdout.lines().last().is_some_and(|l| l.starts_with("verify: ") && l.ends_with(" mismatches")), "{o}");
        o
    }
}

#[test]
fn matching_plan_passes_with_a_table() {
    let t = Tree::start();
    // The kernel agrees with the plan where verify will say so.
    assert_eq!(kcmp_file(t.pid(1), 5, t.pid(2), 7), Ok(0));
    assert_ne!(kcmp_file(t.pid(2), 5, t.pid(2), 8), Ok(0));
    assert_eq!(fdinfo(t.pid(2), 5).unwrap().0, 4);
    let o = t.verify(&base(&t.log));
    assert_eq!(o.code(), Some(0), "{o}");
    assert!(o.stdout.ends_with("verify: ok: 2 tasks, 11 fds match the plan\n"), "{o}");
    let rows: Vec<&str> = o.stdout.lines().filter(|l| l.starts_with("  ") && !l.trim_start().starts_with("fd ")).collect();
    assert_eq!(rows.len(), 11, "{o}");
    assert!(rows.iter().all(|r| r.contains(" ok") && !r.contains("MISMATCH") && !r.contains("EXTRA")), "{o}");
    // Each row says what the kernel says: task 2's fd 7 is the log, offset 4, rdwr, cloexec.
    let row7 = o.stdout.lines().skip_while(|l| !l.starts_with("task 2 ")).find(|l| l.trim_start().starts_with("7 ")).unwrap();
    let words: Vec<&str> = row7.split_whitespace().collect();
    assert_eq!(words, ["7", "reg", "1", &t.log, &t.log, "4", "rdwr", "yes", "ok", "(one", "description", "with", "task", "1", "fd", "5)"], "{row7}");
    // Task 2's fd 8 is another description of the same file: no sharing note.
    let row8 = o.stdout.lines().skip_while(|l| !l.starts_with("task 2 ")).find(|l| l.trim_start().starts_with("8 ")).unwrap();
    assert!(row8.ends_with(" ok"), "{row8}");
    let row9 = o.stdout.lines().find(|l| l.trim_start().starts_with("9 ")).unwrap();
    assert!(row9.contains("anon_inode:[eventfd]") && row9.contains("count=3"), "{row9}");
}

#[test]
fn wrong_pos() {
    let t = Tree::start();
    assert_eq!(fdinfo(t.pid(1), 5).unwrap().0, 4);
    let text = base(&t.log).replace("reg 1 LOG flags=rdwr pos=4".replace("LOG", &t.log).as_str(), &format!("reg 1 {} flags=rdwr pos=7", t.log));
    t.mismatch(&text, "mismatch: task 1 fd 5 (reg 1 LOG): pos is 4, plan says 7");
}

#[test]
fn share_the_plan_does_not_have() {
    let t = Tree::start();
    assert_eq!(kcmp_file(t.pid(1), 5, t.pid(2), 5), Ok(0), "the kernel: one description");
    let text = base(&t.log).replacen("  at 2:5\n", "", 1) + &format!("reg 7 {} flags=rdwr pos=4\n  at 2:5\n", t.log);
    t.mismatch(&text, "mismatch: task 2 fd 5 (reg 7 LOG): shares one open file description with task 1 fd 5 (reg 1 LOG), plan says separate (kcmp KCMP_FILE)");
}

#[test]
fn share_the_kernel_does_not_have() {
    let t = Tree::start();
    assert_ne!(kcmp_file(t.pid(1), 5, t.pid(2), 8), Ok(0), "the kernel: two descriptions");
    let text = base(&t.log).replace(&format!("reg 2 {} flags=rdwr pos=4\n  at 2:8\n", t.log), "").replace("  at 2:7 cloexec\n", "  at 2:7 cloexec\n  at 2:8\n");
    t.mismatch(&text, "mismatch: task 2 fd 8 (reg 1 LOG): does not share its open file description with task 1 fd 5 (kcmp KCMP_FILE)");
}

#[test]
fn extra_fd() {
    let t = Tree::start();
    assert!(list_fds(t.pid(2)).unwrap().contains(&8));
    let text = base(&t.log).replace(&format!("reg 2 {} flags=rdwr pos=4\n  at 2:8\n", t.log), "");
    let o = t.mismatch(&text, "mismatch: task 2 fd 8: open (LOG), but not in the plan");
    assert!(o.stdout.lines().any(|l| l.trim_start().starts_with("8 ") && l.ends_with("EXTRA: not in the plan")), "{o}");
}

#[test]
fn missing_fd() {
    let t = Tree::start();
    assert!(!list_fds(t.pid(1)).unwrap().contains(&11));
    let text = base(&t.log).replace("  at 1:9\n", "  at 1:9\n  at 1:11\n");
    t.mismatch(&text, "mismatch: task 1 fd 11 (eventfd 6): not open");
}

#[test]
fn wrong_cloexec() {
    let t = Tree::start();
    assert_eq!(fdinfo(t.pid(1), 5).unwrap().1 & O_CLOEXEC, 0);
    assert_ne!(fdinfo(t.pid(2), 7).unwrap().1 & O_CLOEXEC, 0);
    let text = base(&t.log).replace("  at 1:5\n", "  at 1:5 cloexec\n").replace("  at 2:7 cloexec\n", "  at 2:7\n");
    let o = t.mismatch(&text, "mismatch: task 1 fd 5 (reg 1 LOG): lacks FD_CLOEXEC, plan says cloexec");
    let line = "mismatch: task 2 fd 7 (reg 1 LOG): has FD_CLOEXEC, plan says not".replace("LOG", &t.log);
    assert!(o.stdout.lines().any(|l| l == line), "{o}");
}

#[test]
fn wrong_flags() {
    let t = Tree::start();
    assert_eq!(fdinfo(t.pid(2), 8).unwrap().1 & 0o3, 2, "the kernel: O_RDWR");
    let text = base(&t.log).replace(&format!("reg 2 {} flags=rdwr", t.log), &format!("reg 2 {} flags=wronly,append,creat,trunc", t.log));
    // creat and trunc are open-time flags: never reported, never a mismatch.
    let o = t.mismatch(&text, "mismatch: task 2 fd 8 (reg 2 LOG): flags are rdwr, plan says wronly,append");
    assert_eq!(o.stdout.lines().filter(|l| l.starts_with("mismatch: ")).count(), 1, "{o}");
}

#[test]
fn wrong_socket_peer() {
    let t = Tree::start();
    // The kernel: task 1 fd 6 and task 2 fd 6 are connected (bytes go through).
    let a = steal_fd(t.pid(1), 6).unwrap();
    let b = steal_fd(t.pid(2), 6).unwrap();
    // SAFETY: plain send/recv on fds we own.
    unsafe {
        assert_eq!(libc::send(a.as_raw_fd(), b"x".as_ptr().cast(), 1, libc::MSG_DONTWAIT), 1);
        let mut c = 0u8;
        assert_eq!(libc::recv(b.as_raw_fd(), (&mut c as *mut u8).cast(), 1, libc::MSG_DONTWAIT), 1);
    }
    let text = base(&t.log).replace("  b 2:6\n", "  b 2:XX\n").replace("  b 2:10\n", "  b 2:6\n").replace("  b 2:XX\n", "  b 2:10\n");
    let o = t.mismatch(&text, "mismatch: task 2 fd 10 (socketpair 4 b): is not connected to task 1 fd 6 (sock_diag)");
    assert!(o.stdout.contains("mismatch: task 2 fd 6 (socketpair 5 b): is not connected to task 1 fd 10 (sock_diag)"), "{o}");
    assert!(o.stdout.contains("mismatch: task 2 fd 10 (socketpair 4 b): socket type is dgram, plan says stream\n"), "{o}");
}

#[test]
fn wrong_eventfd_count() {
    let t = Tree::start();
    assert_eq!(fdinfo_field(t.pid(1), 9, "eventfd-count").as_deref().map(str::trim), Some("3"));
    t.mismatch(&base(&t.log).replace("count=3", "count=4"), "mismatch: task 1 fd 9 (eventfd 6): eventfd count is 3, plan says 4");
}

#[test]
fn wrong_table_sharing() {
    let t = Tree::start();
    assert_ne!(kcmp_files(t.pid(1), t.pid(2)), Ok(0), "the kernel: two tables");
    let text = "fdslot 1\ntask 1\ntask 2 parent=1 files=1\npipe 3\n  r 1:3\n";
    let o = t.verify(text);
    assert_eq!(o.code(), Some(1), "{o}");
    assert!(o.stdout.contains("mismatch: task 2: has a table of its own, plan says it shares task 1's (files=) (kcmp KCMP_FILES)\n"), "{o}");
}

#[test]
fn every_task_needs_a_pid() {
    let t = Tree::start();
    let p = t.dir.plan(&base(&t.log));
    let mut c = fdslot();
    c.arg("verify").arg(&p).arg(format!("1={}", t.pid(1)));
    let o = output(c);
    assert_eq!(o.code(), Some(2), "{o}");
    assert!(o.stderr.contains("verify: task 2 has no PID (give 2=PID)"), "{o}");
}

/// /dev/null ignores lseek: the restore "succeeds", and only --verify notices.
#[test]
fn run_verify_catches_what_the_restore_got_wrong() {
    let d = TmpDir::new("run-verify");
    let plan = d.plan("fdslot 1\ntask 1\nreg 1 /dev/null flags=rdwr pos=100\n  at 1:5\n");
    let r = run_stop(&plan, &[]);
    assert_eq!(fdinfo(r.pid(1), 5).unwrap().0, 0, "the kernel: /dev/null's offset stays 0");
    r.finish();
    let mut c = fdslot();
    c.arg("run").arg(&plan).arg("--verify");
    let o = output(c);
    assert_eq!(o.code(), Some(1), "{o}");
    assert_eq!(o.stderr, "fdslot: verify: task 1 fd 5 (reg 1 /dev/null): pos is 0, plan says 100\n", "{o}");
    assert_eq!(o.stdout, "");
}

/// A matching restore goes on: the tasks run their programs once verified.
#[test]
fn run_verify_passes_and_tasks_go_on() {
    let d = TmpDir::new("run-verify-ok");
    let log = d.file("out.log", b"");
    let text = format!(
        "fdslot 1\ntask 1 exec=/bin/sh,-c,echo%20one>&5;sleep%200.2\ntask 2 parent=1 exec=/bin/sh,-c,echo%20two>&5\nreg 1 {} flags=wronly,append\n  at 1:5\n  at 2:5\n",
        log.display()
    );
    let plan = d.plan(&text);
    let mut c = fdslot();
    c.arg("run").arg(&plan).arg("--verify");
    let o = output(c);
    assert_eq!(o.code(), Some(0), "{o}");
    let t = Instant::now();
    let mut got = String::new();
    while t.elapsed() < Duration::from_secs(5) {
        got = std::fs::read_to_string(&log).unwrap();
        if got.lines().count() == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut lines: Vec<&str> = got.lines().collect();
    lines.sort();
    assert_eq!(lines, ["one", "two"], "both tasks ran after verify");
}

/// With --stop, run verifies before it prints ready; the tasks stay stopped.
#[test]
fn run_verify_with_stop() {
    let d = TmpDir::new("run-verify-stop");
    let log = d.file("app.log", b"0123456789");
    let plan = d.plan(&base(log.to_str().unwrap()));
    let r = run_stop(&plan, &["--verify"]);
    assert_eq!(proc_state(r.pid(1)), Some('T'));
    assert_eq!(kcmp_file(r.pid(1), 5, r.pid(2), 7), Ok(0));
    r.finish();
}

/// verify where an initramfs runs it: a root holding only the executable, the plan and /proc
/// (no /dev, no /sys, no libc).
#[test]
fn verify_with_only_proc_mounted() {
    let d = TmpDir::new("verify-bare");
    let text = "fdslot 1\ntask 1\ntask 2 parent=1\npipe 1\n  r 1:3\n  w 2:3\nsocketpair 2 stream\n  a 1:4\n  b 2:4\neventfd 3 count=9\n  at 1:5\n  at 2:5\nmemfd 4 state size=16\n  at 1:6\n";
    let r = run_stop(&d.plan(text), &[]);
    let root = d.path("root");
    std::fs::create_dir_all(root.join("proc")).unwrap();
    std::fs::copy(bin(), root.join("fdslot")).unwrap();
    std::fs::write(root.join("good.plan"), text).unwrap();
    std::fs::write(root.join("bad.plan"), text.replace("count=9", "count=8")).unwrap();
    let in_root = |plan: &str| {
        let mut c = std::process::Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "sh", "-c", "mount -t proc proc \"$0/proc\" && exec chroot \"$0\" /fdslot verify \"$1\" \"$2\" \"$3\""])
            .arg(&root)
            .arg(plan)
            .arg(format!("1={}", r.pid(1)))
            .arg(format!("2={}", r.pid(2)));
        output(c)
    };
    let o = in_root("/good.plan");
    assert_eq!(o.code(), Some(0), "{o}");
    assert!(o.stdout.contains("verify: ok: 2 tasks, 7 fds match the plan"), "{o}");
    let o = in_root("/bad.plan");
    assert_eq!(o.code(), Some(1), "{o}");
    assert!(o.stdout.contains("mismatch: task 1 fd 5 (eventfd 3): eventfd count is 9, plan says 8\n"), "{o}");
    r.finish();
}

/// Without sock_diag's answer (verify in another network namespace, where it lists other
/// sockets), a socket pair's type is still checked, from the socket itself, and the table says
/// that the peers were not.
#[test]
fn socket_pairs_without_sock_diag() {
    let t = Tree::start();
    let in_netns = |text: &str| {
        let p = t.dir.plan(text);
        let mut c = std::process::Command::new("unshare");
        c.arg("--net").arg(bin()).arg("verify").arg(&p).arg(format!("1={}", t.pid(1))).arg(format!("2={}", t.pid(2)));
        output(c)
    };
    let o = in_netns(&base(&t.log));
    assert_eq!(o.code(), Some(0), "{o}");
    assert!(o.stdout.contains("note: socket pair peers not checked: sock_diag does not list them"), "{o}");
    // The kernel: task 1's fd 6 is a stream socket.
    let a = steal_fd(t.pid(1), 6).unwrap();
    let mut ty = 0i32;
    let mut len = 4u32;
    // SAFETY: getsockopt into a local int.
    unsafe { libc::getsockopt(a.as_raw_fd(), libc::SOL_SOCKET, libc::SO_TYPE, (&mut ty as *mut i32).cast(), &mut len) };
    assert_eq!(ty, libc::SOCK_STREAM);
    let o = in_netns(&base(&t.log).replace("socketpair 4 stream", "socketpair 4 dgram"));
    assert_eq!(o.code(), Some(1), "{o}");
    assert!(o.stdout.contains("mismatch: task 1 fd 6 (socketpair 4 a): socket type is stream, plan says dgram\n"), "{o}");
}

/// --keep names fds that may be open beyond the plan.
#[test]
fn keep_allows_extra_fds() {
    let t = Tree::start();
    let text = base(&t.log).replace(&format!("reg 2 {} flags=rdwr pos=4\n  at 2:8\n", t.log), "");
    let p = t.dir.plan(&text);
    let mut c = fdslot();
    c.arg("verify").arg(&p).arg(format!("1={}", t.pid(1))).arg(format!("2={}", t.pid(2))).args(["--keep", "8"]);
    let o = output(c);
    assert_eq!(o.code(), Some(0), "{o}");
    assert!(!o.stdout.contains("EXTRA"), "{o}");
}
