//! `fdslot inject`: rebuilds the fd tables of running processes with ptrace and fdslot.blob,
//! and the processes keep running. Checked against the kernel (/proc, kcmp) and by what the
//! processes themselves write afterwards.

mod common;

use common::*;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn blob_path() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let _ = bin();
        let elf = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/fdslot-blob");
        let out = std::env::temp_dir().join(format!("fdslot-inject-{}.blob", std::process::id()));
        let st = Command::new("objcopy").arg("-O").arg("binary").arg(&elf).arg(&out).status().unwrap();
        assert!(st.success());
        out
    })
}

/// A shell that writes a tick to its fd 1 every 20 ms, forever (killed on drop).
struct Ticker(Child);

impl Ticker {
    fn start(script: &str) -> Ticker {
        let c = Command::new("/bin/sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        Ticker(c)
    }
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn inject(plan: &std::path::Path, targets: &[(u16, i32)], extra: &[&str]) -> Output {
    let mut c = fdslot();
    c.arg("inject").arg(plan);
    for (t, p) in targets {
        c.arg(format!("{t}={p}"));
    }
    c.arg("--blob").arg(blob_path()).args(["--timeout", "5"]).args(extra);
    output(c)
}

fn wait_for(cond: impl Fn() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// reptyr-style: a running program's stdout moves to a new file at the planned offset, its
/// stderr is kept, and it goes on running and writing.
#[test]
fn moves_a_running_programs_stdout() {
    let d = TmpDir::new("inj");
    let out = d.file("out", b"HEAD");
    let t = Ticker::start("while :; do echo tick; sleep 0.02; done");
    let plan = d.plan(&format!("fdslot 1\ntask 1\nreg 1 {} flags=wronly pos=4\n  at 1:1\n", pct(out.to_str().unwrap().as_bytes())));
    let before_err = fd_target(t.pid(), 2);
    let o = inject(&plan, &[(1, t.pid())], &["--keep", "2"]);
    assert_eq!(o.code(), Some(0), "{o}");
    assert_eq!(list_fds(t.pid()).unwrap().into_iter().collect::<Vec<_>>(), vec![1, 2], "the plan plus the kept fd");
    assert_eq!(fd_target(t.pid(), 2), before_err, "fd 2 untouched");
    assert!(wait_for(|| std::fs::read(&out).unwrap().len() > 20), "the program keeps writing, now into the file");
    let data = std::fs::read(&out).unwrap();
    assert!(data.starts_with(b"HEADtick\n"), "written at the planned offset: {:?}", String::from_utf8_lossy(&data));
    assert_eq!(proc_state(t.pid()).map(|s| s != 'Z' && s != 'X'), Some(true), "still running");
}

/// Two running processes made to share a file (one description, one offset) and a pipe.
#[test]
fn two_processes_share_a_file_and_a_pipe() {
    let d = TmpDir::new("inj2");
    let log = d.file("log", b"");
    let a = Ticker::start("while :; do sleep 0.02; done");
    let b = Ticker::start("while :; do sleep 0.02; done");
    let mut p = Plan::new();
    p.task(1).task(2);
    p.reg(1, &log, "wronly,append").at(1, 5).at(2, 5).at(2, 6);
    p.pipe(2).r(1, 7).w(2, 8);
    let plan = d.plan(&p.text());
    let o = inject(&plan, &[(1, a.pid()), (2, b.pid())], &[]);
    assert_eq!(o.code(), Some(0), "{o}");
    let pids = [(1u16, a.pid()), (2, b.pid())].into_iter().collect();
    assert_tables(&p.expect(), &pids, &CheckOpts::default());
    assert_eq!(proc_state(a.pid()).map(|s| s != 'Z'), Some(true));
    assert_eq!(proc_state(b.pid()).map(|s| s != 'Z'), Some(true));
}

/// Refused cleanly: a pid that does not exist, and a plan error. The process is untouched.
#[test]
fn failures_leave_the_target_unchanged() {
    let d = TmpDir::new("inj3");
    let t = Ticker::start("while :; do sleep 0.02; done");
    let before: Vec<(u32, String)> = list_fds(t.pid()).unwrap().into_iter().map(|f| (f, fd_target(t.pid(), f))).collect();
    let bad = d.plan("fdslot 1\ntask 1\nbogus 1\n");
    let o = inject(&bad, &[(1, t.pid())], &[]);
    assert_eq!(o.code(), Some(2), "{o}");
    let good = d.plan(&format!("fdslot 1\ntask 1\nreg 1 {} flags=rdonly\n  at 1:5\n", pct(d.file("f", b"x").to_str().unwrap().as_bytes())));
    let o = inject(&good, &[(1, 999_999_999)], &[]);
    assert_ne!(o.code(), Some(0), "{o}");
    let after: Vec<(u32, String)> = list_fds(t.pid()).unwrap().into_iter().map(|f| (f, fd_target(t.pid(), f))).collect();
    assert_eq!(before, after, "the target's table is untouched");
    assert_eq!(proc_state(t.pid()).map(|s| s != 'Z'), Some(true), "and it still runs");
}

/// A process asleep in read(2) when it is injected: its read restarts afterwards and gets the
/// line written later, and it then writes through the fd the plan gave it.
#[test]
fn a_process_sleeping_in_read_restarts_it() {
    use std::io::Write;
    let d = TmpDir::new("inj4");
    let out = d.file("out", b"");
    let mut c = Command::new("/bin/sh")
        .args(["-c", "read line; echo \"got $line\" >&3"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = c.id() as i32;
    assert!(wait_for(|| std::fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| w.contains("pipe"))), "the shell sleeps in read");
    let plan = d.plan(&format!("fdslot 1\ntask 1\nreg 1 {} flags=wronly\n  at 1:3\n", pct(out.to_str().unwrap().as_bytes())));
    let o = inject(&plan, &[(1, pid)], &["--keep", "0"]);
    assert_eq!(o.code(), Some(0), "{o}");
    c.stdin.as_mut().unwrap().write_all(b"hello\n").unwrap();
    let status = c.wait().unwrap();
    assert!(status.success(), "the shell's read restarted and it finished: {status:?}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "got hello\n");
}
