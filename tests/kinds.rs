//! The object kinds beyond reg and plain pipes, each in `fdslot run --stop`, checked against the
//! kernel: fifo, socketpair, eventfd, memfd, pipe with data= and size=, reopen, inherit, reg of
//! directories / O_PATH / character devices, and the task option nofile=. Each scenario runs
//! in both transport forms (`--batch 1` and the default), with ends in different tasks and ends
//! planned nowhere; then the plan errors (line numbers) and runtime errors (exit 1, naming the
//! task, fd and object).

#[macro_use]
mod common;

use common::*;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

fn check(p: &Plan, d: &TmpDir, batch: Option<u32>) {
    let args = batch_args(batch);
    run_and_check(p, d, &strs(&args));
}

/// `run --stop` of `p`, kernel-checked; returns the running group (still stopped).
fn run_checked(p: &Plan, d: &TmpDir, args: &[String]) -> Running {
    let plan = d.plan(&p.text());
    let r = match start_stopped(run_stop_cmd(&plan, &strs(args))) {
        Ok(r) => r,
        Err(o) => panic!(
            "run --stop {} failed: {o}\n--- plan ---\n{}",
            args.join(" "),
            p.text()
        ),
    };
    let errs = check_plan(
        p,
        &r.pids,
        &CheckOpts {
            stopped: true,
            ..Default::default()
        },
    );
    assert!(
        errs.is_empty(),
        "kernel check failed ({} problems):\n  {}\n--- plan ---\n{}",
        errs.len(),
        errs.join("\n  "),
        p.text()
    );
    r
}

/// `fdslot run PLAN [--stop] ARGS` of raw plan text that must fail at runtime.
fn run_fails(d: &TmpDir, text: &str, stop: bool, args: &[&str]) -> Output {
    let plan = d.plan(text);
    let mut c = fdslot();
    c.arg("run").arg(&plan).args(["--timeout", "5"]).args(args);
    if stop {
        c.arg("--stop");
    }
    output(c)
}

/// A runtime failure: exit 1, one stderr line holding every one of `words`, no `ready`,
/// and well before the timeout.
fn assert_runtime_error(o: &Output, words: &[&str], text: &str) {
    assert_eq!(
        o.code(),
        Some(1),
        "a failed restore exits 1: {o}\n--- plan ---\n{text}"
    );
    assert!(!o.stdout.contains("ready"), "{o}");
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "exactly one error line: {o}\n--- plan ---\n{text}"
    );
    for w in words {
        assert!(
            lines[0].contains(w),
            "the error must name {w:?}: {o}\n--- plan ---\n{text}"
        );
    }
    assert!(
        o.elapsed < Duration::from_secs(4),
        "must not wait for the timeout: {o}"
    );
}

fn nonblock_of(pid: i32, fd: u32) -> bool {
    fdinfo(pid, fd).unwrap().1 & libc::O_NONBLOCK as u32 != 0
}

fn open_nb(path: &Path, mode: i32) -> Result<OwnedFd, i32> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), mode | libc::O_NONBLOCK | libc::O_CLOEXEC) };
    if fd < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap())
    } else {
        // SAFETY: fresh fd.
        Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
    }
}

/// read(2) of up to 64 bytes: Ok(bytes) or Err(errno).
fn read_fd(fd: &OwnedFd) -> Result<Vec<u8>, i32> {
    let mut b = [0u8; 64];
    // SAFETY: b is writable.
    let n = unsafe { libc::read(fd.as_raw_fd(), b.as_mut_ptr().cast(), b.len()) };
    if n < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap())
    } else {
        Ok(b[..n as usize].to_vec())
    }
}

// =============================================================================================
// fifo
// =============================================================================================

/// Both ends of one fifo in different tasks, plus a rdwr description; reader declared first,
/// writer first in another fifo; opener= a task holding nothing.
fn fifo_ends_in_different_tasks(batch: Option<u32>) {
    let d = TmpDir::new("fifo");
    let f = d.path("fifo1");
    let g = d.path("fifo2");
    mkfifo(&f);
    mkfifo(&g);
    let mut p = Plan::new();
    p.task(1).child(2, 1).task(3);
    p.fifo(1, &f, "rdonly").at(1, 3).at(2, 4);
    p.fifo(2, &f, "wronly").at(2, 5).at_ce(3, 5);
    p.fifo(3, &f, "rdwr").at(3, 6);
    p.fifo(4, &g, "wronly").opener(3).at(1, 7);
    p.fifo(5, &g, "rdonly").at(2, 7).at(1, 8);
    check(&p, &d, batch);
}
forms!(fifo_ends_in_different_tasks: batch1 = Some(1), batch_default = None);

/// A reader with no writer anywhere in the plan: opening must not block, flags stay rdonly
/// (no O_NONBLOCK), and the task really is a reader (a non-blocking writer open succeeds).
/// After resume the reader gets what we write, then EOF: no temporary writer was left behind
/// anywhere (in a task or in run).
fn fifo_reader_alone(batch: Option<u32>) {
    let d = TmpDir::new("fifor");
    let f = d.path("fifo");
    mkfifo(&f);
    let out = d.file("out", b"");
    let mut p = Plan::new();
    p.task(1).task(2);
    p.exec(1, &["/bin/sh", "-c", "cat <&3 >&4"]);
    p.fifo(1, &f, "rdonly").at(1, 3).at(2, 3);
    p.reg(2, &out, "wronly").at(1, 4);
    let r = run_checked(&p, &d, &batch_args(batch));
    assert!(
        !nonblock_of(r.pid(1), 3),
        "fifo rdonly must not be left O_NONBLOCK"
    );
    let w = open_nb(&f, libc::O_WRONLY)
        .expect("a writer open must find the restored reader (ENXIO means no reader)");
    // SAFETY: plain write of a readable buffer.
    assert_eq!(
        unsafe { libc::write(w.as_raw_fd(), b"hello".as_ptr().cast(), 5) },
        5
    );
    drop(w);
    r.resume();
    let o = r.wait(CAP);
    assert!(
        o.note.is_empty() && o.code() == Some(0),
        "cat must see EOF once our writer is closed (a leftover writer keeps it waiting): {o}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "hello");
}
forms!(fifo_reader_alone: batch1 = Some(1), batch_default = None);

/// A writer with no reader anywhere in the plan (open(O_WRONLY) alone would block, and
/// O_NONBLOCK alone would fail with ENXIO): the task holds a plain wronly writer.
fn fifo_writer_alone(batch: Option<u32>) {
    let d = TmpDir::new("fifow");
    let f = d.path("fifo");
    mkfifo(&f);
    let mut p = Plan::new();
    p.task(1).task(2);
    p.fifo(1, &f, "wronly").opener(1).at(2, 4).at(2, 5);
    let r = run_checked(&p, &d, &batch_args(batch));
    assert!(
        !nonblock_of(r.pid(2), 4),
        "fifo wronly must not be left O_NONBLOCK"
    );
    // A non-blocking reader sees a writer (EAGAIN), not EOF (which would mean no writer).
    let rd = open_nb(&f, libc::O_RDONLY).expect("open the fifo for reading");
    assert_eq!(
        read_fd(&rd),
        Err(libc::EAGAIN),
        "the restored task must hold a writer of the fifo (EOF means there is none)"
    );
    drop(rd);
    r.finish();
}
forms!(fifo_writer_alone: batch1 = Some(1), batch_default = None);

/// flags=nonblock on each access mode is kept; the others have no O_NONBLOCK.
fn fifo_nonblock_flags(batch: Option<u32>) {
    let d = TmpDir::new("fifonb");
    let f = d.path("fifo");
    mkfifo(&f);
    let mut p = Plan::new();
    p.task(1).task(2).task(3);
    p.fifo(1, &f, "wronly,nonblock").opener(3).at(1, 3);
    p.fifo(2, &f, "rdonly,nonblock").at(2, 3);
    p.fifo(3, &f, "rdwr,nonblock").at(3, 3).at(1, 4);
    p.fifo(4, &f, "wronly").at(2, 4);
    p.fifo(5, &f, "rdonly").at(3, 4);
    check(&p, &d, batch);
}
forms!(fifo_nonblock_flags: batch1 = Some(1), batch_default = None);

/// Data flows through the restored fifo: task 1 writes, task 2 (another process) reads to EOF.
/// A leftover writer anywhere would keep task 2's cat from ever seeing EOF.
#[test]
fn fifo_data_flow() {
    let d = TmpDir::new("fifoflow");
    let f = d.path("fifo");
    mkfifo(&f);
    let out = d.file("out", b"");
    let mut p = Plan::new();
    p.task(1).task(2);
    p.exec(1, &["/bin/sh", "-c", "printf 'through the fifo' >&5"]);
    p.exec(2, &["/bin/sh", "-c", "cat <&6 >&7"]);
    p.fifo(1, &f, "wronly").at(1, 5);
    p.fifo(2, &f, "rdonly").at(2, 6);
    p.reg(3, &out, "wronly").at(2, 7);
    let r = run_checked(&p, &d, &[]);
    r.resume();
    let o = r.wait(CAP);
    assert!(
        o.note.is_empty() && o.code() == Some(0),
        "the tasks must end: {o}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "through the fifo");
}

// =============================================================================================
// socketpair
// =============================================================================================

/// The three types, ends in different tasks, dups and cloexec, nonblock; the checker sends a
/// datagram each way between the ends (they must be each other's peer) and checks SO_TYPE.
fn socketpair_types(batch: Option<u32>) {
    let d = TmpDir::new("sp");
    let mut p = Plan::new();
    p.task(1).child(2, 1).task(3);
    p.socketpair(1, "stream", "").a(1, 3).b(2, 3).b_ce(2, 4);
    p.socketpair(2, "dgram", "").a(2, 5).a(3, 5).b(1, 5);
    p.socketpair(3, "seqpacket", "").a_ce(3, 6).b(3, 7);
    p.socketpair(4, "stream", "nonblock")
        .opener(3)
        .a(1, 8)
        .b(2, 8);
    p.socketpair(5, "dgram", "nonblock").a(1, 9).b(3, 9);
    p.socketpair(6, "seqpacket", "nonblock")
        .a(2, 10)
        .b(1, 10)
        .a(1, 11);
    check(&p, &d, batch);
}
forms!(socketpair_types: batch1 = Some(1), batch_default = None);

/// One end planned nowhere: only the other end exists (a send on it finds no peer: EPIPE for
/// stream and seqpacket, ECONNREFUSED for dgram; stream and seqpacket read EOF).
fn socketpair_one_end_to_nobody(batch: Option<u32>) {
    let d = TmpDir::new("sp1");
    let mut p = Plan::new();
    p.task(1).task(2).task(3);
    p.socketpair(1, "stream", "").a(1, 3).a(2, 3);
    p.socketpair(2, "dgram", "").b(2, 4);
    p.socketpair(3, "seqpacket", "").opener(3).b(1, 4);
    p.socketpair(4, "stream", "nonblock").opener(1).a(3, 4);
    p.socketpair(5, "dgram", "").opener(2).a(1, 5).a_ce(3, 5);
    check(&p, &d, batch);
}
forms!(socketpair_one_end_to_nobody: batch1 = Some(1), batch_default = None);

/// After resume, data written on one end arrives on the other, both ways, for each type:
/// task 1 writes "ping" on fd 5 and reads 4 bytes from it; task 2 reads 4 bytes from fd 6 and
/// answers "pong".
fn socketpair_data_after_resume(ty: &str) {
    let d = TmpDir::new("spdata");
    let out1 = d.file("out1", b"");
    let out2 = d.file("out2", b"");
    let mut p = Plan::new();
    p.task(1).child(2, 1);
    p.exec(
        1,
        &["/bin/sh", "-c", "printf ping >&5 && head -c 4 <&5 >&7"],
    );
    p.exec(
        2,
        &["/bin/sh", "-c", "head -c 4 <&6 >&7 && printf pong >&6"],
    );
    p.socketpair(1, ty, "").opener(2).a(1, 5).b(2, 6);
    p.reg(2, &out1, "wronly").at(1, 7);
    p.reg(3, &out2, "wronly").at(2, 7);
    let r = run_checked(&p, &d, &[]);
    r.resume();
    let o = r.wait(CAP);
    assert!(
        o.note.is_empty() && o.code() == Some(0),
        "[{ty}] the tasks must end: {o}"
    );
    assert_eq!(
        std::fs::read_to_string(&out2).unwrap(),
        "ping",
        "[{ty}] a -> b"
    );
    assert_eq!(
        std::fs::read_to_string(&out1).unwrap(),
        "pong",
        "[{ty}] b -> a"
    );
}

#[test]
fn socketpair_data_stream() {
    socketpair_data_after_resume("stream")
}
#[test]
fn socketpair_data_dgram() {
    socketpair_data_after_resume("dgram")
}
#[test]
fn socketpair_data_seqpacket() {
    socketpair_data_after_resume("seqpacket")
}

// =============================================================================================
// eventfd
// =============================================================================================

/// Counters (default 0, 5, the maximum 2^64-2) and flags (semaphore, nonblock), shared across
/// tasks, with an opener that holds nothing.
fn eventfd_counts(batch: Option<u32>) {
    let d = TmpDir::new("efd");
    let mut p = Plan::new();
    p.task(1).task(2).child(3, 2);
    p.eventfd(1, None, "").at(1, 3).at(2, 3);
    p.eventfd(2, Some(5), "").at(2, 4).at_ce(3, 4);
    p.eventfd(3, Some(u64::MAX - 1), "nonblock").at(3, 5);
    p.eventfd(4, Some(3), "semaphore")
        .opener(1)
        .at(2, 6)
        .at(3, 6);
    p.eventfd(5, Some(7), "semaphore,nonblock")
        .at(1, 7)
        .at(1, 8);
    p.eventfd(6, Some(0), "nonblock").at(2, 9);
    check(&p, &d, batch);
}
forms!(eventfd_counts: batch1 = Some(1), batch_default = None);

/// The restored eventfds behave: a semaphore read gives 1 and leaves count-1; a plain read
/// gives the count and leaves 0; a non-blocking read of 0 gives EAGAIN.
#[test]
fn eventfd_semantics() {
    let d = TmpDir::new("efd2");
    let mut p = Plan::new();
    p.task(1).task(2);
    p.eventfd(1, Some(5), "semaphore").at(1, 3).at(2, 3);
    p.eventfd(2, Some(9), "").at(2, 4);
    p.eventfd(3, None, "nonblock").at(2, 5);
    let r = run_checked(&p, &d, &[]);
    let read8 = |pid: i32, fd: u32| -> Result<u64, i32> {
        let c = steal_fd(pid, fd).unwrap();
        let mut v = [0u8; 8];
        // SAFETY: v is writable.
        let n = unsafe { libc::read(c.as_raw_fd(), v.as_mut_ptr().cast(), 8) };
        if n < 0 {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap())
        } else {
            Ok(u64::from_ne_bytes(v))
        }
    };
    assert_eq!(read8(r.pid(2), 3), Ok(1), "semaphore read");
    assert_eq!(
        fdinfo_field(r.pid(1), 3, "eventfd-count").map(|v| u64::from_str_radix(&v, 16).unwrap()),
        Some(4),
        "task 1's fd 3 is the same counter"
    );
    assert_eq!(read8(r.pid(2), 4), Ok(9), "plain read");
    assert_eq!(
        read8(r.pid(2), 5),
        Err(libc::EAGAIN),
        "nonblocking read of 0"
    );
    r.finish();
}

// =============================================================================================
// memfd
// =============================================================================================

fn mspec(name: &str) -> MemfdSpec {
    MemfdSpec {
        name: name.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// Contents from data=, shared by several tasks, pos=, flags=; size= truncating and
/// extending; size only; neither (empty).
fn memfd_contents(batch: Option<u32>) {
    let d = TmpDir::new("memfd");
    let text = b"the memfd's contents, from a file".to_vec();
    let df = d.file("data", &text);
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let bf = d.file("big", &big);
    let mut p = Plan::new();
    p.task(1).task(2).child(3, 1);
    p.memfd(
        1,
        MemfdSpec {
            data: Some((df.clone(), text.clone())),
            ..mspec("plain")
        },
    )
    .at(1, 3)
    .at(2, 3)
    .at_ce(3, 3);
    p.memfd(
        2,
        MemfdSpec {
            data: Some((df.clone(), text.clone())),
            size: Some(10),
            pos: Some(4),
            ..mspec("cut")
        },
    )
    .at(2, 4);
    p.memfd(
        3,
        MemfdSpec {
            data: Some((df.clone(), text.clone())),
            size: Some(5000),
            ..mspec("grown")
        },
    )
    .opener(1)
    .at(3, 5)
    .at(2, 5);
    p.memfd(
        4,
        MemfdSpec {
            size: Some(4096),
            pos: Some(4096),
            ..mspec("zeros")
        },
    )
    .at(1, 6);
    p.memfd(5, mspec("empty")).at(1, 7).at(3, 7);
    p.memfd(
        6,
        MemfdSpec {
            data: Some((bf, big.clone())),
            pos: Some(123_456),
            ..mspec("big")
        },
    )
    .at(2, 8)
    .at(3, 8);
    p.memfd(
        7,
        MemfdSpec {
            flags: "append,nonblock".into(),
            pos: Some(7),
            data: Some((df, text)),
            ..mspec("flags")
        },
    )
    .at(1, 9)
    .at(2, 9);
    p.memfd(
        8,
        MemfdSpec {
            flags: "nonblock".into(),
            ..mspec("nb")
        },
    )
    .at(3, 9);
    check(&p, &d, batch);
}
forms!(memfd_contents: batch1 = Some(1), batch_default = None);

/// Seals, each alone and together, added after contents and size; the kernel enforces them on
/// the restored file (a write past a write seal fails; growing past a grow seal fails).
fn memfd_seals(batch: Option<u32>) {
    let d = TmpDir::new("seals");
    let df = d.file("data", b"0123456789");
    let data = Some((df, b"0123456789".to_vec()));
    let mut p = Plan::new();
    p.task(1).task(2);
    let seals = [
        "seal",
        "shrink",
        "grow",
        "write",
        "future_write",
        "shrink,grow",
        "seal,shrink,grow,write,future_write",
    ];
    for (i, s) in seals.iter().enumerate() {
        let i = i as u32;
        p.memfd(
            i + 1,
            MemfdSpec {
                data: data.clone(),
                size: Some(16),
                seals: s.to_string(),
                ..mspec(&format!("s{i}"))
            },
        )
        .at(1, 3 + i)
        .at(2, 20 + i);
    }
    let r = run_checked(&p, &d, &batch_args(batch));
    let pw = |fd: u32, off: i64| -> Result<(), i32> {
        let c = steal_fd(r.pid(2), fd).unwrap();
        // SAFETY: readable buffer.
        let n = unsafe { libc::pwrite(c.as_raw_fd(), b"x".as_ptr().cast(), 1, off) };
        if n < 0 {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap())
        } else {
            Ok(())
        }
    };
    assert_eq!(
        pw(20 + 3, 0),
        Err(libc::EPERM),
        "write seal: a write must fail"
    );
    assert_eq!(
        pw(20 + 2, 100),
        Err(libc::EPERM),
        "grow seal: growing must fail"
    );
    assert_eq!(
        pw(20 + 1, 0),
        Ok(()),
        "shrink seal alone: writes in place work"
    );
    r.finish();
}
forms!(memfd_seals: batch1 = Some(1), batch_default = None);

/// Names: percent-encoded bytes (space, %, comma, #, non-ASCII) and the longest allowed name
/// (249 bytes) come back in readlink as `/memfd:NAME (deleted)`.
#[test]
fn memfd_names() {
    let d = TmpDir::new("mname");
    let long = "n".repeat(249);
    let mut p = Plan::new();
    p.task(1).task(2);
    p.memfd(
        1,
        MemfdSpec {
            name: "a b%c,d#e\u{e9}".as_bytes().to_vec(),
            ..Default::default()
        },
    )
    .at(1, 3)
    .at(2, 3);
    p.memfd(2, mspec(&long)).at(2, 4);
    p.memfd(
        3,
        MemfdSpec {
            name: vec![0x01, 0x7f, 0xff, b'z'],
            ..Default::default()
        },
    )
    .at(1, 4);
    check(&p, &d, None);
}

// =============================================================================================
// pipe data= and size=
// =============================================================================================

/// Buffered data in pipes whose ends sit in different tasks, with one end planned nowhere, of
/// a reopened read end; the checker compares FIONREAD and (tee) the bytes themselves.
fn pipe_data(batch: Option<u32>) {
    let d = TmpDir::new("pdata");
    let small = b"hello through the pipe\n".to_vec();
    let sf = d.file("small", &small);
    let page: Vec<u8> = (0..4096u32).map(|i| (i % 253) as u8).collect();
    let pf = d.file("page", &page);
    let full: Vec<u8> = (0..65536u32).map(|i| (i % 199) as u8).collect();
    let ff = d.file("full", &full);
    let ef = d.file("empty", b"");
    let mut p = Plan::new();
    p.task(1).child(2, 1).task(3);
    p.pipe(1).pipe_data(&sf, &small).r(1, 3).w(2, 3);
    p.pipe(2)
        .pipe_data(&pf, &page)
        .pipe_size(4096)
        .r(2, 4)
        .r(3, 4)
        .w(1, 4);
    p.pipe(3).pipe_data(&ff, &full).opener(3).r(1, 5);
    p.pipe(4).pipe_data(&sf, &small).w(3, 5);
    p.pipe(5).pipe_data(&ef, b"").r(3, 6).w(3, 7);
    p.pipe(6)
        .pipe_data(&sf, &small)
        .pipe_size(100_000)
        .r_ce(2, 6)
        .w(1, 6);
    p.reopen(7, 6, 0, "nonblock").at(2, 7).at(3, 8);
    check(&p, &d, batch);
}
forms!(pipe_data: batch1 = Some(1), batch_default = None);

/// size= rounds up to a power-of-two number of pages (F_GETPIPE_SZ), and data exactly filling
/// the capacity fits.
fn pipe_size(batch: Option<u32>) {
    let d = TmpDir::new("psize");
    let mut p = Plan::new();
    p.task(1).task(2);
    for (i, (size, fill)) in [
        (1u64, false),
        (4096, true),
        (4097, false),
        (5000, true),
        (65536, false),
        (65537, true),
        (1 << 20, false),
    ]
    .iter()
    .enumerate()
    {
        let i = i as u32;
        p.pipe(i + 1).pipe_size(*size);
        if *fill {
            let cap = pipe_capacity(*size) as usize;
            let data: Vec<u8> = (0..cap).map(|k| (k % 241) as u8).collect();
            let f = d.file(&format!("fill{i}"), &data);
            p.pipe_data(&f, &data);
        }
        p.r(1, 3 + i).w(2, 3 + i);
    }
    check(&p, &d, batch);
}
forms!(pipe_size: batch1 = Some(1), batch_default = None);

/// After resume the reader gets exactly the planned data, then EOF (its write end is planned
/// nowhere, so nothing else may hold it).
#[test]
fn pipe_data_read_after_resume() {
    let d = TmpDir::new("pread");
    let data: Vec<u8> = (0..30_000u32)
        .map(|i| b"abcdefghij"[(i % 10) as usize])
        .collect();
    let f = d.file("data", &data);
    let out = d.file("out", b"");
    let mut p = Plan::new();
    p.task(1).task(2);
    p.exec(2, &["/bin/sh", "-c", "cat <&3 >&4"]);
    p.pipe(1).pipe_data(&f, &data).opener(1).r(2, 3);
    p.reg(2, &out, "wronly").at(2, 4);
    let r = run_checked(&p, &d, &[]);
    let pid1 = r.pid(1);
    kill(r.pid(2), libc::SIGCONT);
    let t = std::time::Instant::now();
    while std::fs::metadata(&out).unwrap().len() < data.len() as u64 && t.elapsed() < CAP {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        wait_gone(r.pid(2), Duration::from_secs(10)),
        "cat must see EOF and end"
    );
    assert_eq!(
        std::fs::read(&out).unwrap(),
        data,
        "the reader must get the planned data"
    );
    kill(pid1, libc::SIGKILL);
    let o = r.wait(CAP);
    assert!(o.note.is_empty(), "{o}");
}

/// Data larger than the capacity is refused, naming the object (explicit size= and the
/// default capacity of 64 KiB).
#[test]
fn pipe_data_too_big() {
    let d = TmpDir::new("pbig");
    let f = d.file("d4097", &vec![b'x'; 4097]);
    let g = d.file("d65537", &vec![b'y'; 65537]);
    for (text, obj) in [
        (
            format!(
                "fdslot 1\ntask 1\ntask 2\npipe 3 data={} size=4096\n  r 1:3\n  w 2:3\n",
                pct(f.as_os_str().as_encoded_bytes())
            ),
            "pipe 3",
        ),
        (
            format!(
                "fdslot 1\ntask 1\npipe 8 data={}\n  r 1:3\n",
                pct(g.as_os_str().as_encoded_bytes())
            ),
            "pipe 8",
        ),
    ] {
        for stop in [true, false] {
            let o = run_fails(&d, &text, stop, &[]);
            assert!(
                matches!(o.code(), Some(1) | Some(2)),
                "data over the capacity must be refused: {o}\n--- plan ---\n{text}"
            );
            assert!(!o.stdout.contains("ready"), "{o}");
            assert!(o.stderr.contains(obj), "the error must name {obj}: {o}");
            assert_eq!(o.stderr.lines().count(), 1, "one line: {o}");
        }
    }
}

// =============================================================================================
// reopen (zdtm pipe02)
// =============================================================================================

/// Two descriptions of one read end with different O_NONBLOCK, and a reopened write end, in
/// different tasks: kcmp says different descriptions, readlink says one pipe.
fn reopen_pipe02(batch: Option<u32>) {
    let d = TmpDir::new("reopen");
    let mut p = Plan::new();
    p.task(1).child(2, 1).task(3);
    p.pipe(1).r(1, 3).w(1, 4).w(3, 4);
    p.reopen(2, 1, 0, "nonblock").at(1, 5).at(2, 5);
    p.reopen(3, 1, 1, "").at(2, 6);
    p.reopen(4, 1, 0, "").at(3, 7);
    p.pipe(5).opener(3).r(2, 8).w(1, 8);
    p.reopen(6, 5, 1, "nonblock").at(2, 9).at(3, 9);
    let r = run_checked(&p, &d, &batch_args(batch));
    let (p1, p2) = (r.pid(1), r.pid(2));
    assert_ne!(
        kcmp_file(p1, 3, p1, 5),
        Ok(0),
        "reopen is another description"
    );
    assert_eq!(fd_target(p1, 3), fd_target(p1, 5), "of the same pipe");
    assert_eq!(fd_target(p1, 3), fd_target(p2, 6));
    assert!(
        !nonblock_of(p1, 3) && nonblock_of(p1, 5),
        "O_NONBLOCK differs"
    );
    r.finish();
}
forms!(reopen_pipe02: batch1 = Some(1), batch_default = None);

// =============================================================================================
// inherit
// =============================================================================================

/// A listening TCP socket and one end of a socketpair, both inherited at fds 40 and 41 from
/// the caller, placed in several tasks (and not in task 4, which must not keep them).
fn inherit_socket(batch: Option<u32>) {
    let d = TmpDir::new("inh");
    let l = tcp_listener();
    let (mine, theirs) = unix_pair(libc::SOCK_STREAM);
    let mut p = Plan::new();
    p.task(1).child(2, 1).task(3).task(4);
    p.inherit(1, 40, l.as_raw_fd())
        .at(1, 3)
        .at(2, 40)
        .at_ce(3, 7);
    p.inherit(2, 41, theirs.as_raw_fd())
        .opener(2)
        .at(3, 3)
        .at(3, 41);
    p.reg(3, &d.file("a", b"a"), "rdonly").at(4, 3).at(2, 41);
    let plan = d.plan(&p.text());
    let mut cmd = run_stop_cmd(&plan, &strs(&batch_args(batch)));
    pass_fd(&mut cmd, l.as_raw_fd(), 40);
    pass_fd(&mut cmd, theirs.as_raw_fd(), 41);
    let r = start_stopped(cmd).unwrap_or_else(|o| panic!("{o}\n--- plan ---\n{}", p.text()));
    assert_plan(
        &p,
        &r.pids,
        &CheckOpts {
            stopped: true,
            ..Default::default()
        },
    );
    let me = std::process::id() as i32;
    for (t, fd) in [(1u16, 3u32), (2, 40), (3, 7)] {
        assert_eq!(
            kcmp_file(me, l.as_raw_fd() as u32, r.pid(t), fd),
            Ok(0),
            "task {t} fd {fd}"
        );
    }
    assert!(
        list_fds(r.pid(4)).unwrap().iter().all(|&fd| fd == 3),
        "task 4 keeps nothing inherited"
    );
    // The socket still works: what we send on our end arrives at task 3's copy.
    send_packet(&mine, b"hi").unwrap();
    let c = steal_fd(r.pid(3), 41).unwrap();
    let mut b = [0u8; 8];
    // SAFETY: b is writable.
    let n = unsafe { libc::recv(c.as_raw_fd(), b.as_mut_ptr().cast(), 8, libc::MSG_DONTWAIT) };
    assert_eq!(n, 2, "the inherited end must be our peer");
    r.finish();
}
forms!(inherit_socket: batch1 = Some(1), batch_default = None);

/// The inherited fd's number is a planned slot of other objects: in the opener (which plans
/// the inherited file elsewhere) and in a task that does not plan it at all.
fn inherit_slot_reused(batch: Option<u32>) {
    let d = TmpDir::new("inh2");
    let src = open_rw(&d.file("inherited", b"inherited file"));
    let mut p = Plan::new();
    p.task(1).task(2).task(3);
    p.inherit(1, 9, src.as_raw_fd()).at(1, 4).at(2, 5);
    p.reg(2, &d.file("a", b"a"), "rdonly").at(1, 9).at(3, 9);
    p.pipe(3).r(2, 9).w(3, 4);
    let plan = d.plan(&p.text());
    let mut cmd = run_stop_cmd(&plan, &strs(&batch_args(batch)));
    pass_fd(&mut cmd, src.as_raw_fd(), 9);
    let r = start_stopped(cmd).unwrap_or_else(|o| panic!("{o}\n--- plan ---\n{}", p.text()));
    assert_plan(
        &p,
        &r.pids,
        &CheckOpts {
            stopped: true,
            ..Default::default()
        },
    );
    r.finish();
}
forms!(inherit_slot_reused: batch1 = Some(1), batch_default = None);

/// After resume, a task writes into the inherited socket and the caller reads it.
#[test]
fn inherit_data_after_resume() {
    let d = TmpDir::new("inh3");
    let (mine, theirs) = unix_pair(libc::SOCK_STREAM);
    let mut p = Plan::new();
    p.task(1).task(2);
    p.exec(2, &["/bin/sh", "-c", "printf 'from task 2' >&5"]);
    p.inherit(1, 30, theirs.as_raw_fd()).opener(1).at(2, 5);
    let plan = d.plan(&p.text());
    let mut cmd = run_stop_cmd(&plan, &[]);
    pass_fd(&mut cmd, theirs.as_raw_fd(), 30);
    let r = start_stopped(cmd).unwrap_or_else(|o| panic!("{o}"));
    assert_plan(
        &p,
        &r.pids,
        &CheckOpts {
            stopped: true,
            ..Default::default()
        },
    );
    drop(theirs);
    r.resume();
    let pid1 = r.pid(1);
    let mut got = Vec::new();
    let t = std::time::Instant::now();
    while got.len() < 11 && t.elapsed() < CAP {
        match read_fd_nb(&mine) {
            Some(b) if b.is_empty() => break,
            Some(b) => got.extend(b),
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    assert_eq!(String::from_utf8_lossy(&got), "from task 2");
    kill(pid1, libc::SIGKILL);
    let o = r.wait(CAP);
    assert!(o.note.is_empty(), "{o}");
}

fn read_fd_nb(fd: &OwnedFd) -> Option<Vec<u8>> {
    let mut b = [0u8; 64];
    // SAFETY: b is writable.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            b.as_mut_ptr().cast(),
            b.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        None
    } else {
        Some(b[..n as usize].to_vec())
    }
}

/// An inherit fd that is not open: exit 1, naming the object and the fd.
#[test]
fn inherit_missing_fd() {
    let d = TmpDir::new("inh4");
    let text = format!(
        "fdslot 1\ntask 1\ntask 2\nreg 1 {}\n  at 1:4\n  at 2:4\ninherit 2 77\n  at 1:3\n  at 2:5\n",
        pct(d.file("a", b"a").as_os_str().as_encoded_bytes())
    );
    for stop in [true, false] {
        let o = run_fails(&d, &text, stop, &[]);
        assert_runtime_error(&o, &["inherit 2", "77"], &text);
    }
}

// =============================================================================================
// reg: directories, O_PATH, character devices
// =============================================================================================

/// flags=directory, flags=path (of a file, a directory and a device), /dev/null, /dev/zero
/// and a pty slave, shared across tasks.
fn reg_special(batch: Option<u32>) {
    let d = TmpDir::new("regsp");
    let sub = d.path("dir");
    std::fs::create_dir(&sub).unwrap();
    let (_master, slave) = pty_pair();
    let mut p = Plan::new();
    p.task(1).child(2, 1).task(3);
    p.reg(1, &sub, "rdonly,directory").at(1, 3).at(2, 3);
    p.reg(2, &sub, "path").at(2, 4).at_ce(3, 4);
    p.reg(3, &d.file("f", b"f"), "path").at(3, 5);
    p.reg(4, Path::new("/dev/null"), "rdwr")
        .at(1, 0)
        .at(2, 0)
        .at(3, 0);
    p.reg(5, Path::new("/dev/zero"), "rdonly").at(1, 6).at(3, 6);
    p.reg(6, Path::new("/dev/null"), "wronly,append")
        .opener(3)
        .at(1, 1);
    p.reg(7, &slave, "rdwr,noctty").at(1, 7).at(2, 7).at(3, 7);
    p.reg(8, &slave, "wronly,noctty").at(2, 8);
    p.reg(9, Path::new("/dev/null"), "path").at(2, 9);
    check(&p, &d, batch);
}
forms!(reg_special: batch1 = Some(1), batch_default = None);

// =============================================================================================
// nofile=
// =============================================================================================

/// nofile= sets the restored task's RLIMIT_NOFILE (soft and hard), after its table is rebuilt:
/// fd 63 under nofile=64; a limit above ours; tasks without nofile= keep run's.
fn nofile(batch: Option<u32>) {
    let d = TmpDir::new("nofile");
    let mine = {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: plain call.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
        r
    };
    let high = (mine.rlim_max.min(1 << 20) as u64).max(8192);
    let mut p = Plan::new();
    p.task(1).child(2, 1).task(3).task(4);
    p.nofile(1, 64).nofile(2, high).nofile(4, 4);
    p.reg(1, &d.file("a", b"a"), "rdonly")
        .at(1, 63)
        .at(2, 63)
        .at(3, 63)
        .at(4, 3);
    p.pipe(2).r(1, 3).w(2, 1000).w(4, 0);
    p.eventfd(3, Some(1), "").at(1, 62).at(4, 2);
    let r = run_checked(&p, &d, &batch_args(batch));
    assert_eq!(
        proc_nofile(r.pid(3)).unwrap(),
        (mine.rlim_cur, mine.rlim_max),
        "task 3 has no nofile=: it keeps run's limit"
    );
    r.finish();
}
forms!(nofile: batch1 = Some(1), batch_default = None);

/// nofile= survives exec: the exec'd program sees it.
#[test]
fn nofile_after_exec() {
    let d = TmpDir::new("nofile2");
    let out = d.file("out", b"");
    let mut p = Plan::new();
    p.task(1);
    p.nofile(1, 100);
    p.exec(1, &["/bin/sh", "-c", "ulimit -n >&5; ulimit -H -n >&5"]);
    p.reg(1, &out, "wronly").at(1, 5);
    let r = run_checked(&p, &d, &[]);
    r.resume();
    let o = r.wait(CAP);
    assert!(o.note.is_empty() && o.code() == Some(0), "{o}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "100\n100\n");
}

// =============================================================================================
// plan errors
// =============================================================================================

const H: &str = "fdslot 1\n";

#[test]
fn unsupported_kinds_and_options() {
    check_rejects_at("epoll", &format!("{H}task 1\nepoll 5\n  at 1:3\n"), &[3]);
    check_rejects_at(
        "bogus option",
        &format!("{H}task 1\nreg 1 /x bogus=1\n  at 1:3\n"),
        &[3],
    );
    check_rejects_at(
        "task option",
        &format!("{H}task 1 bogus=1\nreg 1 /x\n  at 1:3\n"),
        &[2],
    );
    check_rejects_at(
        "fifo bogus",
        &format!("{H}task 1\nfifo 1 /x count=1\n  at 1:3\n"),
        &[3],
    );
    check_rejects_at(
        "eventfd pos",
        &format!("{H}task 1\n\neventfd 1 pos=3\n  at 1:3\n"),
        &[4],
    );
    check_rejects_at(
        "socketpair data",
        &format!("{H}task 1\nsocketpair 1 stream data=/x\n  a 1:3\n"),
        &[3],
    );
    check_rejects_at(
        "reopen size",
        &format!("{H}task 1\npipe 1\n  r 1:3\nreopen 2 1 r size=4096\n  at 1:4\n"),
        &[5],
    );
    check_rejects_at(
        "inherit flags",
        &format!("{H}task 1\ninherit 1 40 flags=rdonly\n  at 1:3\n"),
        &[3],
    );
    check_rejects_at(
        "memfd mode",
        &format!("{H}task 1\nmemfd 1 m mode=644\n  at 1:3\n"),
        &[3],
    );
    check_rejects_at(
        "pipe flags",
        &format!("{H}task 1\npipe 1 flags=nonblock\n  r 1:3\n"),
        &[3],
    );
}

#[test]
fn bad_kind_values() {
    let cases: &[(&str, &str, u32)] = &[
        ("socketpair type", "task 1\nsocketpair 1 raw\n  a 1:3\n", 3),
        ("socketpair no type", "task 1\nsocketpair 1\n  a 1:3\n", 3),
        (
            "socketpair flag",
            "task 1\nsocketpair 1 stream flags=append\n  a 1:3\n",
            3,
        ),
        (
            "eventfd count",
            "task 1\neventfd 1 count=abc\n  at 1:3\n",
            3,
        ),
        (
            "eventfd flag",
            "task 1\neventfd 1 flags=append\n  at 1:3\n",
            3,
        ),
        ("memfd no name", "task 1\nmemfd 1\n  at 1:3\n", 3),
        ("memfd seal", "task 1\nmemfd 1 m seals=bogus\n  at 1:3\n", 3),
        ("memfd size", "task 1\nmemfd 1 m size=-1\n  at 1:3\n", 3),
        (
            "memfd flag",
            "task 1\nmemfd 1 m flags=directory\n  at 1:3\n",
            3,
        ),
        ("fifo no path", "task 1\nfifo 1\n  at 1:3\n", 3),
        (
            "fifo flag",
            "task 1\nfifo 1 /x flags=semaphore\n  at 1:3\n",
            3,
        ),
        ("pipe size", "task 1\npipe 1 size=abc\n  r 1:3\n", 3),
        ("inherit no fd", "task 1\ninherit 1\n  at 1:3\n", 3),
        ("inherit bad fd", "task 1\ninherit 1 x7\n  at 1:3\n", 3),
        (
            "inherit fd too big",
            "task 1\ninherit 1 1048576\n  at 1:3\n",
            3,
        ),
        (
            "reopen end",
            "task 1\npipe 1\n  r 1:3\nreopen 2 1 x\n  at 1:4\n",
            5,
        ),
        (
            "reopen flag",
            "task 1\npipe 1\n  r 1:3\nreopen 2 1 r flags=wronly,bogus\n  at 1:4\n",
            5,
        ),
        ("nofile value", "task 1 nofile=abc\nreg 1 /x\n  at 1:3\n", 2),
    ];
    for (name, body, line) in cases {
        check_rejects_at(name, &format!("{H}{body}"), &[*line]);
    }
    // nofile=0: no fd fits under it (the task line or the target line).
    check_rejects_at(
        "nofile zero",
        &format!("{H}task 1 nofile=0\nreg 1 /x\n  at 1:3\n"),
        &[2, 4],
    );
}

#[test]
fn wrong_target_keywords() {
    check_rejects_at(
        "socketpair at",
        &format!("{H}task 1\nsocketpair 1 dgram\n  at 1:3\n"),
        &[4],
    );
    check_rejects_at(
        "socketpair r",
        &format!("{H}task 1\nsocketpair 1 dgram\n  a 1:3\n  r 1:4\n"),
        &[5],
    );
    check_rejects_at(
        "eventfd a",
        &format!("{H}task 1\neventfd 1\n  a 1:3\n"),
        &[4],
    );
    check_rejects_at("memfd w", &format!("{H}task 1\nmemfd 1 m\n  w 1:3\n"), &[4]);
    check_rejects_at("fifo r", &format!("{H}task 1\nfifo 1 /x\n  r 1:3\n"), &[4]);
    check_rejects_at(
        "reopen r",
        &format!("{H}task 1\npipe 1\n  r 1:3\nreopen 2 1 r\n  r 1:4\n"),
        &[6],
    );
    check_rejects_at(
        "inherit b",
        &format!("{H}task 1\ninherit 1 9\n  b 1:3\n"),
        &[4],
    );
    check_rejects_at("pipe a", &format!("{H}task 1\npipe 1\n  a 1:3\n"), &[4]);
    check_rejects_at(
        "no targets",
        &format!("{H}task 1\nsocketpair 1 stream\neventfd 2\n  at 1:3\n"),
        &[3],
    );
}

#[test]
fn memfd_name_limit() {
    let n249 = "x".repeat(249);
    let n250 = "x".repeat(250);
    check_accepts("249", &format!("{H}task 1\nmemfd 1 {n249}\n  at 1:3\n"));
    check_rejects_at(
        "250",
        &format!("{H}task 1\nmemfd 1 {n250}\n  at 1:3\n"),
        &[3],
    );
    // 249 bytes decoded, though the encoded name is longer.
    let enc = "%41".repeat(249);
    check_accepts(
        "249 encoded",
        &format!("{H}task 1\nmemfd 1 {enc}\n  at 1:3\n"),
    );
    check_rejects_at(
        "nul",
        &format!("{H}task 1\nmemfd 1 a%00b\n  at 1:3\n"),
        &[3],
    );
}

#[test]
fn reopen_rules() {
    check_accepts(
        "reopen",
        &format!("{H}task 1\ntask 2\npipe 1\n  r 1:3\nreopen 2 1 r flags=nonblock\n  at 2:4\n"),
    );
    check_rejects_at(
        "opener",
        &format!("{H}task 1\ntask 2\npipe 1\n  r 1:3\nreopen 2 1 r opener=2\n  at 2:4\n"),
        &[6],
    );
    check_rejects_at(
        "undeclared",
        &format!("{H}task 1\nreopen 2 1 r\n  at 1:4\n"),
        &[3],
    );
    check_rejects_at(
        "before the pipe",
        &format!("{H}task 1\nreopen 2 1 r\n  at 1:4\npipe 1\n  r 1:3\n"),
        &[3],
    );
    check_rejects_at(
        "of a reg",
        &format!("{H}task 1\nreg 1 /x\n  at 1:3\nreopen 2 1 r\n  at 1:4\n"),
        &[5],
    );
    check_rejects_at(
        "of a reopen",
        &format!("{H}task 1\npipe 1\n  r 1:3\nreopen 2 1 r\n  at 1:4\nreopen 3 2 r\n  at 1:5\n"),
        &[7],
    );
    check_rejects_at(
        "of a socketpair",
        &format!("{H}task 1\nsocketpair 1 stream\n  a 1:3\nreopen 2 1 r\n  at 1:4\n"),
        &[5],
    );
    check_rejects_at(
        "self",
        &format!("{H}task 1\nreopen 2 2 r\n  at 1:4\n"),
        &[3],
    );
}

#[test]
fn nofile_fd_at_limit_is_plan_error() {
    // The target line is the natural one to name; the task line is accepted too.
    check_rejects_at(
        "fd = nofile",
        &format!("{H}task 1 nofile=10\nreg 1 /x\n  at 1:3\n  at 1:10\n"),
        &[5, 2],
    );
    check_rejects_at(
        "fd > nofile",
        &format!("{H}task 1\ntask 2 nofile=64\npipe 1\n  r 1:100\n  w 2:100\n"),
        &[6, 3],
    );
    check_accepts(
        "fd = nofile - 1",
        &format!("{H}task 1 nofile=10\nreg 1 /x\n  at 1:9\n"),
    );
    check_rejects_at(
        "repeated",
        &format!("{H}task 1 nofile=10 nofile=10\nreg 1 /x\n  at 1:3\n"),
        &[2],
    );
}

// =============================================================================================
// runtime errors
// =============================================================================================

#[test]
fn fifo_missing_path() {
    let d = TmpDir::new("fifoerr");
    let missing = d.path("no-fifo");
    let text = format!(
        "{H}task 1\ntask 2\nfifo 4 {}\n  at 2:3\n  at 1:6\n",
        pct(missing.as_os_str().as_encoded_bytes())
    );
    for stop in [true, false] {
        let o = run_fails(&d, &text, stop, &[]);
        assert_runtime_error(&o, &["task 1", "fd 6", "fifo 4", "ENOENT"], &text);
    }
}

#[test]
fn memfd_missing_data() {
    let d = TmpDir::new("memerr");
    let missing = d.path("no-data");
    let text = format!(
        "{H}task 1\ntask 2\nmemfd 5 m data={}\n  at 2:3\n",
        pct(missing.as_os_str().as_encoded_bytes())
    );
    for stop in [true, false] {
        let o = run_fails(&d, &text, stop, &[]);
        assert_runtime_error(&o, &["task 2", "fd 3", "memfd 5", "ENOENT"], &text);
    }
}

#[test]
fn pipe_missing_data() {
    let d = TmpDir::new("piperr");
    let missing = d.path("no-data");
    let text = format!(
        "{H}task 1\ntask 2\npipe 6 data={}\n  r 2:3\n  w 1:3\n",
        pct(missing.as_os_str().as_encoded_bytes())
    );
    let o = run_fails(&d, &text, true, &[]);
    assert_runtime_error(&o, &["pipe 6", "ENOENT"], &text);
}

/// A fifo path that is a directory, opened wronly: exit 1, naming the fifo and the fd.
#[test]
fn fifo_on_directory() {
    let d = TmpDir::new("fifodir");
    let text = format!(
        "{H}task 1\nfifo 2 {} flags=wronly\n  at 1:3\n",
        pct(d.0.as_os_str().as_encoded_bytes())
    );
    let o = run_fails(&d, &text, true, &[]);
    assert_eq!(o.code(), Some(1), "{o}");
    assert!(
        o.stderr.contains("fifo 2") && o.stderr.contains("fd 3"),
        "{o}"
    );
}

/// kinds mix in one task table, checked as a whole (a quick smoke test of every kind at once).
fn all_kinds_one_plan(batch: Option<u32>) {
    let d = TmpDir::new("allk");
    let f = d.path("fifo");
    mkfifo(&f);
    let data = b"buffered".to_vec();
    let df = d.file("data", &data);
    let src = open_rw(&d.file("inh", b"inherited"));
    let mut p = Plan::new();
    p.task(1).child(2, 1).task(3);
    p.reg(1, &d.file("r", b"reg"), "rdwr").at(1, 3).at(2, 3);
    p.pipe(2)
        .pipe_data(&df, &data)
        .pipe_size(8192)
        .r(1, 4)
        .w(3, 4);
    p.reopen(3, 2, 0, "nonblock").at(2, 4);
    p.fifo(4, &f, "wronly").at(2, 5);
    p.socketpair(5, "seqpacket", "").a(1, 5).b(3, 5);
    p.eventfd(6, Some(42), "semaphore").at(3, 6).at(1, 6);
    p.memfd(
        7,
        MemfdSpec {
            data: Some((df.clone(), data.clone())),
            seals: "grow".into(),
            ..mspec("all")
        },
    )
    .at(2, 6)
    .at(3, 7);
    p.inherit(8, 50, src.as_raw_fd()).at(3, 8);
    let plan = d.plan(&p.text());
    let mut cmd = run_stop_cmd(&plan, &strs(&batch_args(batch)));
    pass_fd(&mut cmd, src.as_raw_fd(), 50);
    let r = start_stopped(cmd).unwrap_or_else(|o| panic!("{o}\n--- plan ---\n{}", p.text()));
    assert_plan(
        &p,
        &r.pids,
        &CheckOpts {
            stopped: true,
            ..Default::default()
        },
    );
    r.assert_parents(&p);
    r.finish();
}
forms!(all_kinds_one_plan: batch1 = Some(1), batch_default = None);

// =============================================================================================
// restore mode (one `fdslot restore` per task, the barrier among themselves)
// =============================================================================================

/// Starts `restore PLAN T --session S -- /bin/sleep 100` for each task (fds passed as
/// (our fd, fd in the task) to every task), waits until each sleeps; returns them by task.
fn restore_all(plan: &Path, p: &Plan, tag: &str, args: &[&str], pass: &[(i32, i32)]) -> Group {
    let s = session(tag);
    let mut procs: Vec<(u16, Spawned)> = p
        .task_ids()
        .into_iter()
        .map(|t| {
            let mut a = vec!["--timeout", "10"];
            a.extend_from_slice(args);
            let mut c = restore_cmd(plan, t, &s, &a);
            c.args(["--", "/bin/sleep", "100"]);
            for &(mine, theirs) in pass {
                pass_fd(&mut c, mine, theirs);
            }
            (t, Spawned::spawn(c))
        })
        .collect();
    let mut pids = std::collections::BTreeMap::new();
    for (t, pr) in procs.iter_mut() {
        if !wait_sleeping(pr.pid(), Duration::from_secs(15)) {
            panic!(
                "task {t}: did not exec: {}\n--- plan ---\n{}",
                pr.wait(Duration::from_secs(1)),
                p.text()
            );
        }
        pids.insert(*t, pr.pid());
    }
    Group {
        pids,
        _procs: procs,
    }
}

struct Group {
    pids: std::collections::BTreeMap<u16, i32>,
    _procs: Vec<(u16, Spawned)>,
}

/// The new kinds in restore mode, across processes: checked after exec (no cloexec fds, and
/// the exec'd sleep has not touched them).
fn restore_mode_kinds(batch: Option<u32>) {
    let d = TmpDir::new("rkinds");
    let f = d.path("fifo");
    mkfifo(&f);
    let data = b"restored data".to_vec();
    let df = d.file("data", &data);
    let mut p = Plan::new();
    p.task(1).task(2).task(3);
    p.fifo(1, &f, "wronly").at(2, 3);
    p.socketpair(2, "stream", "").a(1, 4).b(3, 4);
    p.socketpair(3, "dgram", "nonblock")
        .opener(3)
        .a(1, 5)
        .b(2, 5);
    p.eventfd(4, Some(11), "semaphore").at(1, 6).at(3, 6);
    p.memfd(
        5,
        MemfdSpec {
            data: Some((df.clone(), data.clone())),
            seals: "shrink".into(),
            pos: Some(2),
            ..mspec("restored")
        },
    )
    .at(2, 7)
    .at(3, 7);
    p.pipe(6)
        .pipe_data(&df, &data)
        .pipe_size(16384)
        .r(1, 8)
        .w(2, 8);
    p.reopen(7, 6, 0, "nonblock").at(3, 9);
    let plan = d.plan(&p.text());
    let g = restore_all(&plan, &p, "rkinds", &strs(&batch_args(batch)), &[]);
    assert_plan(
        &p,
        &g.pids,
        &CheckOpts {
            after_exec: true,
            ..Default::default()
        },
    );
    // The objects' state is right too (sleep does not touch its fds): probe them directly.
    assert_eq!(
        fionread(&steal_fd(g.pids[&3], 9).unwrap()),
        Ok(data.len() as i64),
        "pipe data through the reopen"
    );
    assert_eq!(
        fdinfo_field(g.pids[&1], 6, "eventfd-count").map(|v| u64::from_str_radix(&v, 16).unwrap()),
        Some(11)
    );
}
forms!(restore_mode_kinds: batch1 = Some(1), batch_default = None);

/// inherit in restore mode: every task's caller passes the fd; the opener places and sends it.
#[test]
fn restore_mode_inherit() {
    let d = TmpDir::new("rinh");
    let l = tcp_listener();
    let mut p = Plan::new();
    p.task(1).task(2);
    p.inherit(1, 60, l.as_raw_fd()).opener(2).at(1, 3).at(2, 4);
    p.reg(2, &d.file("a", b"a"), "rdonly").at(1, 60);
    let plan = d.plan(&p.text());
    let g = restore_all(&plan, &p, "rinh", &[], &[(l.as_raw_fd(), 60)]);
    assert_plan(
        &p,
        &g.pids,
        &CheckOpts {
            after_exec: true,
            ..Default::default()
        },
    );
}

/// nofile= without privilege (as nobody, hard limit 1024): lowering both limits is permitted,
/// so both are set.
#[test]
fn nofile_as_nobody() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let d = TmpDir::new("nofilenb");
    std::fs::set_permissions(&d.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let f = d.file("a", b"a");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut p = Plan::new();
    p.task(1).task(2);
    p.nofile(1, 100);
    p.reg(1, &f, "rdonly").at(1, 99).at(2, 99);
    p.eventfd(2, Some(2), "").at(2, 3).at(1, 3);
    let plan = d.plan(&p.text());
    std::fs::set_permissions(&plan, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = run_stop_cmd(&plan, &[]);
    cmd.uid(65534).gid(65534);
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 1024,
                rlim_max: 1024,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let r = start_stopped(cmd).unwrap_or_else(|o| panic!("{o}\n--- plan ---\n{}", p.text()));
    assert_plan(
        &p,
        &r.pids,
        &CheckOpts {
            stopped: true,
            ..Default::default()
        },
    );
    assert_eq!(
        proc_nofile(r.pid(2)).unwrap(),
        (1024, 1024),
        "task 2 keeps run's limit"
    );
    r.finish();
}

/// Reopens of one end of a pipe whose other end is planned nowhere: opening a pipe end through
/// /proc is a FIFO open (a reader waits for a writer, a non-blocking writer without a reader
/// fails with ENXIO), so the opener must reopen while it still holds both ends. Data buffered
/// in the pipe is seen through the reopen.
fn reopen_other_end_nowhere(batch: Option<u32>) {
    let d = TmpDir::new("reopen1");
    let data = b"seen through the reopen".to_vec();
    let df = d.file("data", &data);
    let mut p = Plan::new();
    p.task(1).task(2);
    // Read end planned, write end nowhere; reopens of the read end (blocking and not).
    p.pipe(1).pipe_data(&df, &data).r(1, 3);
    p.reopen(2, 1, 0, "").at(2, 3);
    p.reopen(3, 1, 0, "nonblock").at(2, 4);
    // Write end planned, read end nowhere; reopens of the write end (blocking and not).
    p.pipe(4).opener(2).w(2, 5);
    p.reopen(5, 4, 1, "").at(1, 5);
    p.reopen(6, 4, 1, "nonblock").at(1, 6);
    check(&p, &d, batch);
}
forms!(reopen_other_end_nowhere: batch1 = Some(1), batch_default = None);
