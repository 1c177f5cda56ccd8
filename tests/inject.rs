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

/// What the kernel says of a process's fd table and of the state inject must give back: for
/// each fd, its target, pos, flags (with O_CLOEXEC) and a copy of its description (for kcmp
/// afterwards); the blocked signals; the memory map; the tracer.
struct Snapshot {
    pid: i32,
    fds: Vec<(u32, String, u64, u32)>,
    copies: Vec<(u32, std::os::fd::OwnedFd)>,
    sig_blk: String,
    maps: String,
}

fn status_field(pid: i32, key: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.trim().to_string()).unwrap_or_default()
}

/// Each open fd of `pid` with its target, pos and flags (pos u64::MAX if it went meanwhile).
fn fd_rows(pid: i32) -> Vec<(u32, String, u64, u32)> {
    list_fds(pid)
        .unwrap()
        .into_iter()
        .map(|f| {
            let (pos, flags) = fdinfo(pid, f).unwrap_or((u64::MAX, 0));
            (f, fd_target(pid, f), pos, flags)
        })
        .collect()
}

impl Snapshot {
    fn take(pid: i32) -> Snapshot {
        let fds = fd_rows(pid);
        let copies = fds.iter().map(|x| (x.0, steal_fd(pid, x.0).unwrap())).collect();
        Snapshot { pid, fds, copies, sig_blk: status_field(pid, "SigBlk:"), maps: std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap() }
    }

    /// Every difference from now: fds added, gone, or holding another description.
    fn differences(&self) -> Vec<String> {
        use std::os::fd::AsRawFd;
        let mut out = Vec::new();
        let fds = fd_rows(self.pid);
        if fds != self.fds {
            out.push(format!("fds were {:?}, now {:?}", self.fds, fds));
        }
        let me = std::process::id() as i32;
        for (f, copy) in &self.copies {
            if kcmp_file(me, copy.as_raw_fd() as u32, self.pid, *f) != Ok(0) {
                out.push(format!("fd {f} no longer holds its original description (kcmp)"));
            }
        }
        let blk = status_field(self.pid, "SigBlk:");
        if blk != self.sig_blk {
            out.push(format!("blocked signals were {}, now {blk}", self.sig_blk));
        }
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", self.pid)).unwrap_or_default();
        if maps != self.maps {
            out.push(format!("memory map changed:\n{}\n--- now ---\n{maps}", self.maps));
        }
        let tracer = status_field(self.pid, "TracerPid:");
        if tracer != "0" {
            out.push(format!("still traced by {tracer}"));
        }
        out
    }

    fn assert_unchanged(&self, what: &str) {
        let d = self.differences();
        assert!(d.is_empty(), "{what}: pid {} changed:\n{}", self.pid, d.join("\n"));
        assert!(proc_state(self.pid).is_some_and(|s| s != 'Z' && s != 'X'), "{what}: pid {} no longer runs", self.pid);
    }
}

/// A process asleep in nanosleep(2) (its signal mask steady, unlike a shell's around fork) with
/// fds of its own in slots the plan takes (1, 5) and beside them (6, 9).
fn busy_shell(dir: &TmpDir) -> Ticker {
    let f = dir.file(&format!("own-{}", uniq("o")), b"0123456789");
    Ticker::start(&format!("exec 5<'{}' 6>>'{}' 9</dev/zero; exec sleep 1000", f.display(), f.display()))
}

/// One process's blob fails after the other's has finished its table: both tables come back
/// as they were, descriptions and cloexec bits included (the displaced fds were only parked).
#[test]
fn a_failing_blob_rolls_every_process_back() {
    let d = TmpDir::new("inj5");
    let log = d.file("log", b"");
    let a = busy_shell(&d);
    let b = busy_shell(&d);
    let (sa, sb) = (Snapshot::take(a.pid()), Snapshot::take(b.pid()));
    let mut p = Plan::new();
    p.task(1).task(2);
    p.reg(1, &log, "wronly,append").at(1, 1).at(1, 5).at(2, 5);
    p.pipe(2).r(1, 7).w(2, 8);
    p.reg(3, &d.path("missing/file"), "rdonly").at(2, 9);
    let plan = d.plan(&p.text());
    for form in [None, Some(1)] {
        let o = inject(&plan, &[(1, a.pid()), (2, b.pid())], &strs(&batch_args(form)));
        assert_eq!(o.code(), Some(1), "{o}");
        assert!(o.stderr.contains("task 2 fd 9") && o.stderr.contains("ENOENT"), "names the task, fd and errno: {o}");
        sa.assert_unchanged("the process whose blob succeeded");
        sb.assert_unchanged("the process whose blob failed");
    }
}

/// With `--keep all`, only the planned slots change: every other fd keeps its description.
#[test]
fn keep_all_replaces_only_the_planned_fds() {
    let d = TmpDir::new("inj6");
    let new = d.file("new", b"");
    let t = busy_shell(&d);
    let before = Snapshot::take(t.pid());
    let mut p = Plan::new();
    p.task(1);
    p.reg(1, &new, "rdwr").at(1, 5).at(1, 12);
    let plan = d.plan(&p.text());
    let o = inject(&plan, &[(1, t.pid())], &["--keep", "all"]);
    assert_eq!(o.code(), Some(0), "{o}");
    use std::os::fd::AsRawFd;
    let me = std::process::id() as i32;
    let fds = list_fds(t.pid()).unwrap();
    let mut expect: std::collections::BTreeSet<u32> = before.fds.iter().map(|x| x.0).collect();
    expect.insert(12);
    assert_eq!(fds, expect, "the old fds plus the planned new one");
    for (f, copy) in &before.copies {
        let same = kcmp_file(me, copy.as_raw_fd() as u32, t.pid(), *f) == Ok(0);
        assert_eq!(same, *f != 5, "fd {f}: only the planned slot holds a new description");
    }
    assert_eq!(fd_target(t.pid(), 5), new.display().to_string());
    assert_eq!(kcmp_file(t.pid(), 5, t.pid(), 12), Ok(0), "5 and 12 share the new description");
    assert_eq!(status_field(t.pid(), "SigBlk:"), before.sig_blk, "the signal mask is back");
    assert_eq!(status_field(t.pid(), "TracerPid:"), "0", "detached");
}

/// One process is killed while the blobs run (the injector is held stopped meanwhile, so the
/// group cannot have committed): the injector reports it, and the other process gets its
/// original table back and runs on, untraced.
#[test]
fn a_process_that_ends_mid_inject_leaves_the_others_unchanged() {
    let d = TmpDir::new("inj7");
    let f = d.file("shared", b"");
    let mut p = Plan::new();
    p.task(1).task(2);
    // Enough files that the window between "task 2 bound" and commit is milliseconds wide.
    for i in 0..1500u32 {
        p.reg(1 + i, &f, "rdonly").at(1, 20 + i).at(2, 20 + i);
    }
    let plan = d.plan(&p.text());
    let mut hit = false;
    for _attempt in 0..4 {
        let a = busy_shell(&d);
        let b = busy_shell(&d);
        let sb = Snapshot::take(b.pid());
        let mut c = fdslot();
        c.arg("inject").arg(&plan).arg(format!("1={}", a.pid())).arg(format!("2={}", b.pid()));
        c.arg("--blob").arg(blob_path()).args(["--timeout", "10"]).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut inj = c.spawn().unwrap();
        let err = Capture::start(inj.stderr.take().unwrap());
        // Task 2's blob has parked its receiving socket in slot 20: it is running.
        let t0 = Instant::now();
        while !fd_target(b.pid(), 20).starts_with("socket:") && t0.elapsed() < Duration::from_secs(5) {
            std::hint::spin_loop();
        }
        kill(inj.id() as i32, libc::SIGSTOP);
        kill(a.pid(), libc::SIGKILL);
        assert!(wait_for(|| proc_state(a.pid()).is_none_or(|s| s == 'Z')), "the killed process ends");
        kill(inj.id() as i32, libc::SIGCONT);
        let status = wait_timeout(&mut inj, Duration::from_secs(15)).expect("inject ends");
        let stderr = err.text(Duration::from_secs(2));
        if status.code() == Some(0) {
            // The group committed before the stop landed: try again.
            continue;
        }
        hit = true;
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(&format!("pid {}", a.pid())) && stderr.contains("ended"), "names the process that ended: {stderr}");
        sb.assert_unchanged("the surviving process");
        break;
    }
    assert!(hit, "the kill never landed before the commit in 4 attempts");
}

/// Ptrace refused (the injector runs as nobody; the second process is root's): the first
/// process, already seized and prepared, is released exactly as it was.
#[test]
fn ptrace_denied_releases_every_process_unchanged() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let d = TmpDir::new("inj8");
    std::fs::set_permissions(&d.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let f = d.file("f", b"x");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mine = Command::new("/bin/sh")
        .args(["-c", "exec 5</dev/null; exec sleep 1000"])
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mine = Ticker(mine);
    let roots = busy_shell(&d);
    std::thread::sleep(Duration::from_millis(100));
    let (s1, s2) = (Snapshot::take(mine.pid()), Snapshot::take(roots.pid()));
    let plan = d.plan(&format!("fdslot 1\ntask 1\ntask 2\nreg 1 {} flags=rdonly\n  at 1:5\n  at 2:5\n", pct(f.to_str().unwrap().as_bytes())));
    std::fs::set_permissions(&plan, std::fs::Permissions::from_mode(0o644)).unwrap();
    let blob = d.path("fdslot.blob");
    std::fs::copy(blob_path(), &blob).unwrap();
    std::fs::set_permissions(&blob, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut c = fdslot();
    c.arg("inject").arg(&plan).arg(format!("1={}", mine.pid())).arg(format!("2={}", roots.pid()));
    c.arg("--blob").arg(&blob).args(["--timeout", "5"]).uid(65534).gid(65534);
    let o = output(c);
    assert_eq!(o.code(), Some(1), "{o}");
    assert!(o.stderr.contains(&format!("task 2 pid {}: PTRACE_SEIZE: EPERM", roots.pid())), "{o}");
    s1.assert_unchanged("the process seized before the refusal");
    s2.assert_unchanged("the process that refused");
}
