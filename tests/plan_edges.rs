//! The plan parser at its edges: plans larger than any fixed buffer, 100,000-byte lines, every
//! limit at and just past its value, paths with every byte value, raw NUL and other raw bytes,
//! duplicate targets through a shared table. Every input ends in a summary or in one error line
//! with the right line number (`plan_errors.rs` has the ordinary rule breaks).

mod common;

use common::*;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::process::Stdio;

const H: &str = "fdslot 1\n";

fn check_bytes(text: &[u8]) -> Output {
    let d = TmpDir::new("edge");
    let plan = d.path("p.plan");
    std::fs::write(&plan, text).unwrap();
    let mut c = fdslot();
    c.arg("check").arg(&plan);
    output(c)
}

fn accepts(name: &str, text: &[u8], tasks: usize, objects: usize, fds: usize) {
    let o = check_bytes(text);
    assert_eq!(o.code(), Some(0), "[{name}] must be accepted: {o}");
    let want = format!(": ok: {tasks} tasks, {objects} objects, {fds} fds\n");
    assert!(o.stdout.ends_with(&want), "[{name}] want {want:?}: {o}");
}

fn rejects(name: &str, text: &[u8], line: u32, says: &str) {
    let o = check_bytes(text);
    assert_eq!(o.code(), Some(2), "[{name}] must be rejected: {o}");
    assert_eq!(o.stderr.lines().count(), 1, "[{name}] one line: {o}");
    assert!(o.stderr.contains(&format!(" line {line}: ")), "[{name}] at line {line}: {o}");
    assert!(o.stderr.contains(says), "[{name}] says {says:?}: {o}");
    assert!(o.stderr.bytes().all(|b| b == b'\n' || (0x20..0x7f).contains(&b)), "[{name}] printable: {o}");
    assert!(o.stderr.len() < 600, "[{name}] one short line: {o}");
}

/// A plan of several MB, from a file and through a pipe (read in growing chunks, past the
/// first 64 KiB buffer): the whole of it is read and counted.
#[test]
fn plans_larger_than_any_fixed_buffer() {
    let mut t = String::from(H);
    t.push_str("task 1\ntask 2\n");
    let n = 60_000u32;
    for i in 0..n {
        t.push_str(&format!("reg {} /dev/null\n  at 1:{}\n  at 2:{}\n", i + 1, i, i));
    }
    assert!(t.len() > 2 << 20);
    accepts("big file", t.as_bytes(), 2, n as usize, 2 * n as usize);
    let mut c = fdslot();
    c.args(["check", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let text = t.clone();
    let w = std::thread::spawn(move || {
        // Small writes, so that reads come in pieces.
        for chunk in text.as_bytes().chunks(4000) {
            stdin.write_all(chunk).unwrap();
        }
    });
    let o = child.wait_with_output().unwrap();
    w.join().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).ends_with(&format!("-: ok: 2 tasks, {n} objects, {} fds\n", 2 * n)));
    // The last line counts too: an error there is found and numbered.
    t.push_str("  at 1:0\n");
    rejects("big, error at the end", t.as_bytes(), 2 + 1 + 3 * n + 1, "planned twice");
}

/// Lines of 100,000 bytes: a comment, blanks before a keyword, an exec= within 128 KiB (ok);
/// a path, a word and an exec= past their limits (one error line, cut short, right line).
#[test]
fn lines_of_100000_bytes() {
    let long = "x".repeat(100_000);
    let blanks = " ".repeat(100_000);
    accepts("comment", format!("{H}# {long}\ntask 1\nreg 1 /x\n  at 1:3\n").as_bytes(), 1, 1, 1);
    accepts("blanks", format!("{H}{blanks}task 1{blanks}\nreg 1 /x\n{blanks}at 1:3\n").as_bytes(), 1, 1, 1);
    accepts("exec 100 KB", format!("{H}task 1 exec=/bin/echo,{long}\nreg 1 /x\n  at 1:3\n").as_bytes(), 1, 1, 1);
    rejects("path 100 KB", format!("{H}task 1\nreg 1 /{long}\n  at 1:3\n").as_bytes(), 3, "longer than 4095");
    rejects("exec 140 KB", format!("{H}task 1 exec=/bin/echo,{long},{}\nreg 1 /x\n  at 1:3\n", "y".repeat(40_000)).as_bytes(), 2, "128 KiB");
    rejects("exec 5000 args", format!("{H}task 1 exec=/bin/echo{}\nreg 1 /x\n  at 1:3\n", ",a".repeat(5000)).as_bytes(), 2, "4096 arguments");
    rejects("keyword 100 KB", format!("{H}task 1\n{long}\n").as_bytes(), 3, "unknown keyword");
    rejects("fd 100 KB", format!("{H}task 1\nreg 1 /x\n  at 1:{}\n", "9".repeat(100_000)).as_bytes(), 4, "bad fd");
    rejects("memfd name", format!("{H}task 1\nmemfd 1 {}\n  at 1:3\n", "n".repeat(250)).as_bytes(), 3, "longer than 249");
    accepts("memfd name 249", format!("{H}task 1\nmemfd 1 {}\n  at 1:3\n", "n".repeat(249)).as_bytes(), 1, 1, 1);
    accepts("path 4095", format!("{H}task 1\nreg 1 /{}\n  at 1:3\n", "p".repeat(4094)).as_bytes(), 1, 1, 1);
    rejects("path 4096", format!("{H}task 1\nreg 1 /{}\n  at 1:3\n", "p".repeat(4095)).as_bytes(), 3, "longer than 4095");
}

/// Every limit at its value (accepted) and one past it (rejected at its line).
#[test]
fn limits_at_and_past_their_values() {
    let ok = |name: &str, body: &str| accepts(name, format!("{H}{body}").as_bytes(), body.matches("task ").count(), 1, body.matches(" at ").count() + body.matches("\n  r ").count());
    let bad = |name: &str, body: &str, line: u32, says: &str| rejects(name, format!("{H}{body}").as_bytes(), line, says);
    ok("fd 1048575", "task 1\nreg 1 /x\n  at 1:1048575\n");
    bad("fd 1048576", "task 1\nreg 1 /x\n  at 1:1048576\n", 4, "nr_open");
    ok("nofile 1048576", "task 1 nofile=1048576\nreg 1 /x\n  at 1:1048575\n");
    bad("nofile 1048577", "task 1 nofile=1048577\nreg 1 /x\n  at 1:3\n", 2, "nofile");
    bad("nofile 0", "task 1 nofile=0\nreg 1 /x\n  at 1:3\n", 2, "nofile");
    bad("fd at nofile", "task 1 nofile=64\nreg 1 /x\n  at 1:64\n", 2, "not below nofile=64");
    ok("fd below nofile", "task 1 nofile=64\nreg 1 /x\n  at 1:63\n");
    ok("inherit fd 1048575", "task 1\ninherit 1 1048575\n  at 1:3\n");
    bad("inherit fd 1048576", "task 1\ninherit 1 1048576\n  at 1:3\n", 3, "inherit fd");
    ok("pos 2^63-1", "task 1\nreg 1 /x pos=9223372036854775807\n  at 1:3\n");
    bad("pos 2^63", "task 1\nreg 1 /x pos=9223372036854775808\n  at 1:3\n", 3, "bad pos");
    ok("count 2^64-2", "task 1\neventfd 1 count=18446744073709551614\n  at 1:3\n");
    bad("count 2^64-1", "task 1\neventfd 1 count=18446744073709551615\n  at 1:3\n", 3, "bad count");
    bad("count 2^64", "task 1\neventfd 1 count=18446744073709551616\n  at 1:3\n", 3, "bad count");
    ok("mode 7777", "task 1\nreg 1 /x flags=creat,wronly mode=7777\n  at 1:3\n");
    bad("mode 10000", "task 1\nreg 1 /x flags=creat,wronly mode=10000\n  at 1:3\n", 3, "mode");
    ok("size 2^63-1", "task 1\nmemfd 1 m size=9223372036854775807\n  at 1:3\n");
    bad("size 2^63", "task 1\nmemfd 1 m size=9223372036854775808\n  at 1:3\n", 3, "bad size");
    ok("object 2^32-1", "task 1\nreg 4294967295 /x\n  at 1:3\n");
    bad("object 2^32", "task 1\nreg 4294967296 /x\n  at 1:3\n", 3, "object id");
    bad("flags 2^32", "task 1\nreg 1 /x flags=4294967296\n  at 1:3\n", 3, "flags");
}

/// 65535 tasks are accepted; a 65536th is refused at its own line.
#[test]
fn task_count_at_and_past_65535() {
    let mut t = String::from(H);
    for i in 1..=65535u32 {
        t.push_str(&format!("task {i}\n"));
    }
    let body = "reg 1 /x\n  at 65535:3\n";
    accepts("65535 tasks", format!("{t}{body}").as_bytes(), 65535, 1, 1);
    rejects("65536 tasks", format!("{t}task 1\n{body}").as_bytes(), 65537, "more than 65535 tasks");
}

/// Paths with every byte value but NUL and '/', percent-encoded: each file is created and
/// restored by its own name (the kernel's readlink of each fd says which file it is).
#[test]
fn paths_with_every_byte_value() {
    let d = TmpDir::new("bytes");
    let mut p = Plan::new();
    p.task(1);
    let mut want = Vec::new();
    for b in 1..=255u8 {
        if b == b'/' {
            continue;
        }
        let name = [b'f', b, b'g'];
        let path = d.0.join(std::ffi::OsStr::from_bytes(&name));
        p.reg(b as u32, &path, "wronly,creat").mode(0o600).at(1, 10 + b as u32);
        want.push((10 + b as u32, path));
    }
    let plan = d.plan(&p.text());
    let r = start_stopped(run_stop_cmd(&plan, &[])).unwrap_or_else(|o| panic!("{o}"));
    for (fd, path) in &want {
        let got = std::fs::read_link(format!("/proc/{}/fd/{fd}", r.pid(1))).unwrap();
        assert_eq!(got.as_os_str().as_bytes(), path.as_os_str().as_bytes(), "fd {fd}");
        assert!(path.exists(), "{}", path.display());
    }
    r.finish();
}

/// Raw bytes outside printable ASCII are refused with the line and the byte's encoding: a raw
/// NUL (which would cut the path short: another file), control bytes, DEL, UTF-8. In a
/// comment they are fine. `%00` is refused too.
#[test]
fn raw_nul_and_other_raw_bytes() {
    for b in [0u8, 1, 0x1b, 0x7f, 0x80, 0xc3, 0xff] {
        let mut t = format!("{H}task 1\nreg 1 /x").into_bytes();
        t.push(b);
        t.extend_from_slice(b"y\n  at 1:3\n");
        rejects(&format!("raw {b:#x} in a path"), &t, 3, &format!("write it as %{b:02x}"));
        let mut t = format!("{H}task 1\n").into_bytes();
        t.extend_from_slice(&[b'#', b' ', b, b'\n']);
        t.extend_from_slice(b"reg 1 /x\n  at 1:3\n");
        accepts(&format!("raw {b:#x} in a comment"), &t, 1, 1, 1);
    }
    let mut t = format!("{H}task 1 exec=/bin/echo,a").into_bytes();
    t.extend_from_slice(b"\0b\nreg 1 /x\n  at 1:3\n");
    rejects("raw NUL in exec", &t, 2, "0x00");
    let mut t = format!("{H}task 1\nreg 1 /x\n  at 1:3\0\n").into_bytes();
    t.push(b'\n');
    rejects("raw NUL in a target", &t, 4, "0x00");
    rejects("%00", format!("{H}task 1\nreg 1 /x%00y\n  at 1:3\n").as_bytes(), 3, "%00");
    rejects("data %00", format!("{H}task 1\npipe 1 data=/x%00\n  r 1:3\n").as_bytes(), 3, "%00");
}

/// Duplicate targets through a shared table: tasks sharing one table (files=) name one set of
/// slots, so the same fd on two of them is planned twice.
#[test]
fn duplicate_targets_through_a_shared_table() {
    rejects(
        "files= sibling",
        format!("{H}task 1\ntask 2 parent=1\ntask 3 parent=1 files=2\nreg 1 /x\n  at 2:4\nreg 2 /y\n  at 3:4\n").as_bytes(),
        8,
        "planned twice",
    );
    rejects(
        "same object, both tasks",
        format!("{H}task 1\ntask 2 parent=1 files=1\nreg 1 /x\n  at 1:4\n  at 2:4\n").as_bytes(),
        6,
        "planned twice",
    );
    rejects("a target in an undeclared task", format!("{H}task 1\nreg 1 /x\n  at 1:3\n  at 2:3\n").as_bytes(), 5, "not declared");
    rejects("an object without targets", format!("{H}task 1\nreg 1 /x\n  at 1:3\npipe 2\n").as_bytes(), 5, "no targets");
    rejects("no task at all", format!("# a\n{H}reg 1 /x\n").as_bytes(), 2, "declares no task");
}

/// A runtime error names the path as the plan wrote it (percent-encoded), so the line stays
/// printable whatever bytes the path holds.
#[test]
fn error_lines_print_paths_encoded() {
    let d = TmpDir::new("encerr");
    let missing = d.0.join(std::ffi::OsStr::from_bytes(b"no\x01such\x1b[31m\xff"));
    let plan = d.plan(&format!("{H}task 1\nreg 4 {}\n  at 1:3\n", pct(missing.as_os_str().as_bytes())));
    let mut c = fdslot();
    c.arg("run").arg(&plan);
    let o = output(c);
    assert_eq!(o.code(), Some(1), "{o}");
    assert_eq!(o.stderr.lines().count(), 1, "{o}");
    assert!(o.stderr.contains("no%01such%1B[31m%FF") && o.stderr.contains("ENOENT"), "{o}");
    assert!(o.stderr.bytes().all(|b| b == b'\n' || (0x20..0x7f).contains(&b)), "printable: {o}");
}
