//! Faults during a restore: paths that would block an open (a FIFO planned as `reg`, a FIFO
//! as `data=`), refused permissions, limits too low; and tasks killed at each stage of the
//! restore, with `run` and with `restore`. Nothing may hang; every error is one line naming the
//! task, the fd and the object; `run` leaves no process behind.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::time::Duration;

const H: &str = "fdslot 1\n";

/// `fdslot run PLAN --timeout 5`, expected to fail quickly: one error line, exit 1.
fn run_fails_fast(plan: &std::path::Path, want: &[&str]) -> Output {
    let mut c = fdslot();
    c.arg("run").arg(plan).args(["--timeout", "5"]);
    let o = output(c);
    assert!(o.note.is_empty(), "must not hang: {o}");
    assert!(o.elapsed < Duration::from_secs(4), "must fail at once, not wait for the deadline: {o}");
    assert_eq!(o.code(), Some(1), "{o}");
    assert_eq!(o.stderr.lines().count(), 1, "one line: {o}");
    for w in want {
        assert!(o.stderr.contains(w), "the error names {w:?}: {o}");
    }
    o
}

// --- opens that could block ---------------------------------------------------------------

/// A FIFO planned as `reg`, read-only, with no writer: a blocking open would wait forever. It
/// is opened non-blocking, and the description has the planned flags (no O_NONBLOCK).
#[test]
fn fifo_planned_as_reg_for_reading_does_not_block() {
    let d = TmpDir::new("regfifo");
    let f = d.path("fifo");
    mkfifo(&f);
    let mut p = Plan::new();
    p.task(1).task(2);
    p.reg(1, &f, "rdonly").at(1, 3).at(2, 5);
    let plan = d.plan(&p.text());
    let r = start_stopped(run_stop_cmd(&plan, &["--timeout", "5"])).unwrap_or_else(|o| panic!("{o}"));
    for (t, fd) in [(1u16, 3u32), (2, 5)] {
        let (_, flags) = fdinfo(r.pid(t), fd).unwrap();
        assert_eq!(flags & libc::O_NONBLOCK as u32, 0, "task {t} fd {fd}: O_NONBLOCK was not planned: {flags:o}");
        assert_eq!(flags & libc::O_ACCMODE as u32, libc::O_RDONLY as u32);
        assert!(fd_target(r.pid(t), fd).ends_with("/fifo"), "{}", fd_target(r.pid(t), fd));
    }
    assert_eq!(kcmp_file(r.pid(1), 3, r.pid(2), 5), Ok(0), "one description");
    assert_plan(&p, &r.pids, &CheckOpts { stopped: true, ..Default::default() });
    r.finish();
}

/// The same FIFO planned `reg` write-only, with no reader: fails at once (ENXIO), naming task,
/// fd and object, instead of blocking in open(2).
#[test]
fn fifo_planned_as_reg_for_writing_fails_at_once() {
    let d = TmpDir::new("regfifow");
    let f = d.path("fifo");
    mkfifo(&f);
    let plan = d.plan(&format!("{H}task 1\ntask 2\nreg 7 {} flags=wronly\n  at 2:4\n  at 1:6\n", pct(f.as_os_str().as_encoded_bytes())));
    run_fails_fast(&plan, &["task 1 fd 6", "reg 7", "ENXIO", "fifo"]);
}

/// `data=` naming a FIFO (pipe and memfd): refused at once (not a regular file) rather than
/// waiting for a writer forever; likewise a device with no end.
#[test]
fn data_must_be_a_regular_file() {
    let d = TmpDir::new("datafifo");
    let f = d.path("fifo");
    mkfifo(&f);
    let fe = pct(f.as_os_str().as_encoded_bytes());
    let plan = d.plan(&format!("{H}task 1\ntask 2\npipe 3 data={fe}\n  r 2:3\n  w 1:3\n"));
    run_fails_fast(&plan, &["task 1", "pipe 3", "data= is not a regular file"]);
    let plan = d.plan(&format!("{H}task 1\ntask 2\nmemfd 4 m data={fe}\n  at 2:3\n  at 1:5\n"));
    run_fails_fast(&plan, &["task 1 fd 5", "memfd 4", "data= is not a regular file"]);
    let plan = d.plan(&format!("{H}task 1\nmemfd 4 m data=/dev/zero\n  at 1:5\n"));
    run_fails_fast(&plan, &["task 1 fd 5", "memfd 4", "data= is not a regular file"]);
}

/// A regular file opened non-blocking for safety gets its planned status flags back: without
/// `nonblock` no O_NONBLOCK, with it O_NONBLOCK (checked in /proc/PID/fdinfo).
#[test]
fn regular_files_keep_their_planned_nonblock_bit() {
    let d = TmpDir::new("regnb");
    let mut p = Plan::new();
    p.task(1);
    p.reg(1, &d.file("a", b"a"), "rdwr").at(1, 3);
    p.reg(2, &d.file("b", b"b"), "rdonly,nonblock").at(1, 4);
    p.reg(3, &d.0, "rdonly,directory").at(1, 5);
    p.reg(4, &d.file("c", b"c"), "path").at(1, 6);
    let plan = d.plan(&p.text());
    let r = start_stopped(run_stop_cmd(&plan, &[])).unwrap_or_else(|o| panic!("{o}"));
    let nb = |fd| fdinfo(r.pid(1), fd).unwrap().1 & libc::O_NONBLOCK as u32 != 0;
    assert!(!nb(3) && nb(4) && !nb(5) && !nb(6), "nonblock bits as planned");
    assert_plan(&p, &r.pids, &CheckOpts { stopped: true, ..Default::default() });
    r.finish();
}

// --- permissions and limits ---------------------------------------------------------------

fn as_nobody(cmd: &mut std::process::Command, nofile: Option<u64>) {
    cmd.uid(65534).gid(65534);
    if let Some(n) = nofile {
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit { rlim_cur: n, rlim_max: n };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

fn world_readable(d: &TmpDir) {
    std::fs::set_permissions(&d.0, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A permission refused (EACCES): as `nobody`, a file only root may read. One line naming the
/// task, the fd, the object and the errno; exit 1; nothing hangs.
#[test]
fn permission_refused_names_task_fd_object() {
    let d = TmpDir::new("eacces");
    world_readable(&d);
    let secret = d.file("secret", b"s");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let open = d.file("open", b"o");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut p = Plan::new();
    p.task(1).task(2);
    p.reg(1, &open, "rdonly").at(1, 3).at(2, 3);
    p.reg(2, &secret, "rdonly").at(2, 4).at(1, 9);
    let plan = d.plan(&p.text());
    std::fs::set_permissions(&plan, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut c = fdslot();
    c.arg("run").arg(&plan).args(["--timeout", "5"]);
    as_nobody(&mut c, None);
    let o = output(c);
    assert_eq!(o.code(), Some(1), "{o}");
    assert!(o.elapsed < Duration::from_secs(4), "{o}");
    assert_eq!(o.stderr.lines().count(), 1, "{o}");
    for w in ["task 1 fd 9", "reg 2", "/secret", "open: EACCES"] {
        assert!(o.stderr.contains(w), "names {w:?}: {o}");
    }
}

/// A planned fd at or above the task's RLIMIT_NOFILE soft limit: refused before any change,
/// naming the task, the fd, the object and the limit. Just below it (with room for the
/// restorer's own fds), the same plan restores.
#[test]
fn fd_at_or_above_rlimit_nofile() {
    let d = TmpDir::new("nofilefd");
    world_readable(&d);
    let f = d.file("f", b"f");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    for (fd, ok) in [(64u32, false), (100, false), (63, true)] {
        let mut p = Plan::new();
        p.task(1).task(2);
        p.reg(1, &f, "rdonly").at(1, 3).at(2, fd);
        let plan = d.plan(&p.text());
        std::fs::set_permissions(&plan, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut c = run_stop_cmd(&plan, &["--timeout", "5"]);
        as_nobody(&mut c, Some(64));
        if ok {
            let r = start_stopped(c).unwrap_or_else(|o| panic!("fd {fd} under a limit of 64: {o}"));
            assert_plan(&p, &r.pids, &CheckOpts { stopped: true, ..Default::default() });
            r.finish();
            continue;
        }
        let o = output(c);
        assert_eq!(o.code(), Some(1), "fd {fd}: {o}");
        assert_eq!(o.stderr.lines().count(), 1, "{o}");
        let want = format!("task 2 fd {fd} (reg 1 ");
        assert!(o.stderr.contains(&want) && o.stderr.contains("RLIMIT_NOFILE") && o.stderr.contains("64"), "fd {fd}: names {want:?} and the limit: {o}");
    }
}
