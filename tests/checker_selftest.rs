//! The kernel checker itself, without fdslot: a shell builds a known fd table and stops; the
//! checker must accept the true layout and catch each kind of wrong one.

mod common;

use common::*;
use std::collections::BTreeMap;

/// A forked child builds: fd 3 = A (pos 6 after reading 6 bytes), 4 = dup of 3 with
/// FD_CLOEXEC, 5 = A again (pos 0), 6 = B opened for append; nothing else; then it stops.
struct Stopped(i32);

impl Drop for Stopped {
    fn drop(&mut self) {
        kill(self.0, libc::SIGKILL);
        let mut st = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(self.0, &mut st, 0) };
    }
}

fn fork_table(d: &TmpDir) -> (Stopped, std::path::PathBuf, std::path::PathBuf) {
    use std::os::unix::ffi::OsStrExt;
    let a = d.file("A", b"hello\nworld\n");
    let b = d.file("B", b"");
    let ca = std::ffi::CString::new(a.as_os_str().as_bytes()).unwrap();
    let cb = std::ffi::CString::new(b.as_os_str().as_bytes()).unwrap();
    // SAFETY: the child makes only async-signal-safe calls, then stops and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: see above.
        unsafe {
            libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
            let fa = libc::open(ca.as_ptr(), libc::O_RDONLY);
            libc::dup2(fa, 3);
            libc::dup2(3, 4);
            libc::fcntl(4, libc::F_SETFD, libc::FD_CLOEXEC);
            let fb = libc::open(ca.as_ptr(), libc::O_RDONLY);
            libc::dup2(fb, 5);
            let fc = libc::open(cb.as_ptr(), libc::O_WRONLY | libc::O_APPEND);
            libc::dup2(fc, 6);
            for fd in [fa, fb, fc] {
                if fd < 3 {
                    libc::close(fd);
                }
            }
            let mut buf = [0u8; 6];
            libc::read(3, buf.as_mut_ptr().cast(), 6);
            libc::kill(libc::getpid(), libc::SIGSTOP);
            libc::_exit(0);
        }
    }
    let mut st = 0;
    // SAFETY: our child.
    let r = unsafe { libc::waitpid(pid, &mut st, libc::WUNTRACED) };
    assert!(r == pid && libc::WIFSTOPPED(st), "child did not stop");
    (Stopped(pid), a, b)
}

fn layout(a: &std::path::Path, b: &std::path::Path) -> Plan {
    let mut p = Plan::new();
    p.task(1);
    p.reg_pos(1, a, "rdonly", 6).at(1, 3).at_ce(1, 4);
    p.reg(2, a, "rdonly").at(1, 5);
    p.reg(3, b, "wronly,append").at(1, 6);
    p
}

fn errors_for(p: &Plan, pid: i32) -> Vec<String> {
    check_tables(
        &p.expect(),
        &BTreeMap::from([(1u16, pid)]),
        &CheckOpts {
            stopped: true,
            ..Default::default()
        },
    )
}

#[test]
fn checker_accepts_true_layout_and_catches_wrong_ones() {
    let d = TmpDir::new("selftest");
    let (child, a, b) = fork_table(&d);
    let pid = child.0;
    let good = layout(&a, &b);
    assert_eq!(
        errors_for(&good, pid),
        Vec::<String>::new(),
        "the true layout must pass"
    );

    let mut cases: Vec<(&str, Plan, &str)> = Vec::new();
    // 3 and 4 share, but are planned as different objects.
    let mut p = Plan::new();
    p.task(1);
    p.reg_pos(1, &a, "rdonly", 6).at(1, 3);
    p.reg_pos(2, &a, "rdonly", 6).at_ce(1, 4);
    p.reg(4, &a, "rdonly").at(1, 5);
    p.reg(3, &b, "wronly,append").at(1, 6);
    cases.push((
        "shared planned distinct",
        p,
        "share one description; they must not",
    ));
    // 5 is independent, but planned as sharing with 3.
    let mut p = Plan::new();
    p.task(1);
    p.reg_pos(1, &a, "rdonly", 6).at(1, 3).at_ce(1, 4).at(1, 5);
    p.reg(3, &b, "wronly,append").at(1, 6);
    cases.push(("distinct planned shared", p, "must share one description"));
    // fd 6 not planned.
    let mut p = Plan::new();
    p.task(1);
    p.reg_pos(1, &a, "rdonly", 6).at(1, 3).at_ce(1, 4);
    p.reg(2, &a, "rdonly").at(1, 5);
    cases.push(("unplanned fd", p, "unplanned fds open: 6 ->"));
    // fd 7 planned but absent.
    let mut p = layout(&a, &b);
    p.reg(9, &b, "rdonly").at(1, 7);
    cases.push(("missing fd", p, "planned fds missing: [7]"));
    // Wrong pos.
    let mut p = Plan::new();
    p.task(1);
    p.reg_pos(1, &a, "rdonly", 7).at(1, 3).at_ce(1, 4);
    p.reg(2, &a, "rdonly").at(1, 5);
    p.reg(3, &b, "wronly,append").at(1, 6);
    cases.push(("pos", p, "pos 6, planned 7"));
    // Wrong flags.
    let mut p = Plan::new();
    p.task(1);
    p.reg_pos(1, &a, "rdonly", 6).at(1, 3).at_ce(1, 4);
    p.reg(2, &a, "rdonly").at(1, 5);
    p.reg(3, &b, "wronly").at(1, 6);
    cases.push(("flags", p, "status flags wronly,append"));
    // Wrong cloexec.
    let mut p = Plan::new();
    p.task(1);
    p.reg_pos(1, &a, "rdonly", 6).at_ce(1, 3).at_ce(1, 4);
    p.reg(2, &a, "rdonly").at(1, 5);
    p.reg(3, &b, "wronly,append").at(1, 6);
    cases.push(("cloexec", p, "FD_CLOEXEC is false, planned true"));
    // Wrong path; a pipe where a file is.
    let mut p = Plan::new();
    p.task(1);
    p.reg_pos(1, &a, "rdonly", 6).at(1, 3).at_ce(1, 4);
    p.reg(2, &b, "rdonly").at(1, 5);
    p.pipe(3).w(1, 6);
    cases.push(("path", p.clone(), "links to"));
    cases.push(("pipe", p, "planned a pipe"));

    let mut bad = Vec::new();
    for (name, p, want) in &cases {
        let errs = errors_for(p, pid);
        if !errs.iter().any(|e| e.contains(want)) {
            bad.push(format!(
                "[{name}] expected an error containing {want:?}, got {errs:?}"
            ));
        }
    }
    drop(child);
    // Not stopped any more (gone): the stopped check and the listing must complain.
    let errs = errors_for(&good, pid);
    assert!(
        errs.iter().any(|e| e.contains("expected stopped")),
        "{errs:?}"
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// kcmp orders descriptions consistently (the checker sorts representatives with it).
#[test]
fn kcmp_is_an_order() {
    let d = TmpDir::new("kcmp");
    let files: Vec<std::fs::File> = (0..20)
        .map(|i| std::fs::File::open(d.file(&format!("f{i}"), b"x")).unwrap())
        .collect();
    let me = std::process::id() as i32;
    use std::os::fd::AsRawFd;
    for x in &files {
        for y in &files {
            let (a, b) = (x.as_raw_fd() as u32, y.as_raw_fd() as u32);
            let r = kcmp_file(me, a, me, b).unwrap();
            let s = kcmp_file(me, b, me, a).unwrap();
            assert_eq!(r == 0, a == b);
            if a != b {
                assert_eq!(r + s, 3, "kcmp must be antisymmetric");
            }
        }
    }
}
