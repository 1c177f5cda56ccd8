//! fdslot.blob, loaded the way an injector would: copied to a random address in a fresh
//! process, called in place, then checked against the kernel (kcmp, /proc/PID/fd, fdinfo).
//! The host process must survive every call, success or failure.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

/// `struct fdslot_args` (fdslot.h).
#[repr(C)]
struct BlobArgs {
    plan: *const u8,
    plan_len: u64,
    task: u32,
    sync_fd: i32,
    timeout_ms: u32,
    batch: u32,
    session: [u8; 32],
    error: *mut u8,
    error_len: u64,
    keep: *const u32,
    keep_len: u32,
    flags: u32,
}

/// fdslot.h's FDSLOT_FLAG_PRESERVE: park displaced fds, put them back on failure.
const FLAG_PRESERVE: u32 = 1;

/// The flat image: made from the linked blob with objcopy, as `make blob` does.
fn blob() -> &'static [u8] {
    static BLOB: OnceLock<Vec<u8>> = OnceLock::new();
    BLOB.get_or_init(|| {
        let _ = bin();
        let elf = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/fdslot-blob");
        let out = std::env::temp_dir().join(format!("fdslot-test-{}.blob", std::process::id()));
        let st = std::process::Command::new("objcopy").arg("-O").arg("binary").arg(&elf).arg(&out).status().unwrap();
        assert!(st.success(), "objcopy of {}", elf.display());
        let b = std::fs::read(&out).unwrap();
        let _ = std::fs::remove_file(&out);
        b
    })
}

struct Header {
    entry: usize,
    image: usize,
    memory: usize,
    stack_need: usize,
    exec: usize,
}

fn header(b: &[u8]) -> Header {
    assert_eq!(&b[..8], b"FDSLOTB\0", "magic");
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap()) as usize;
    assert_eq!(u32_at(8), 2, "version");
    let h = Header { entry: u32_at(12), image: u64_at(16), memory: u64_at(24), stack_need: u64_at(32), exec: u64_at(40) };
    assert!(h.exec.is_multiple_of(4096) && h.entry < h.exec && h.exec <= h.image, "read+exec part: {:#x}", h.exec);
    assert_eq!(h.image, b.len(), "the header's image size is the file's");
    assert!(h.memory >= h.image && h.entry < h.image);
    h
}

/// What a child reports through shared memory: the entry's return and its error line.
#[repr(C)]
struct Report {
    ret: i64,
    base: u64,
    /// Bytes of the painted stack the call touched.
    stack_used: u64,
    error: [u8; 512],
    /// Signals the host's handler caught during the call (see `ALARM_US`).
    signals: u64,
}

thread_local! {
    /// When nonzero, a child host catches SIGALRM every this many microseconds while the blob
    /// runs, with a handler installed without SA_RESTART: the blob's blocking calls see EINTR.
    /// Thread-local, so it reaches only the children this test thread forks.
    static ALARM_US: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

static CAUGHT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

extern "C" fn on_alarm(_: libc::c_int) {
    CAUGHT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// In a child host: SIGALRM every `us` microseconds, caught by a handler without SA_RESTART.
///
/// # Safety
/// Only in a forked child, before the call.
unsafe fn start_alarms(us: u64) {
    // SAFETY: a plain handler that only touches an atomic; the timer is the child's own.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_alarm as *const () as usize;
        sa.sa_flags = 0;
        libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
        let tv = libc::timeval { tv_sec: 0, tv_usec: us as libc::suseconds_t };
        let it = libc::itimerval { it_interval: tv, it_value: tv };
        libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut());
    }
}

/// Bytes of painted stack each child runs the blob on; the pattern shows how deep it went.
const PAINTED: usize = 1 << 20;
const PAINT: u8 = 0xa5;

/// Calls the entry on a stack of its own at `top` (16-aligned), so its depth can be measured.
///
/// # Safety
/// `entry` must be the blob's entry, `top` the end of a writable region large enough.
unsafe fn call_on_stack(entry: usize, args: *mut BlobArgs, top: usize) -> i64 {
    let ret: i64;
    // SAFETY: r12 is callee-saved, so it carries our stack pointer across the call; the new
    // stack is 16-aligned at the call as the ABI requires.
    unsafe {
        std::arch::asm!(
            "mov r12, rsp",
            "mov rsp, {top}",
            "call {entry}",
            "mov rsp, r12",
            top = in(reg) top,
            entry = in(reg) entry,
            in("rdi") args,
            lateout("rax") ret,
            out("r12") _,
            clobber_abi("C"),
        );
    }
    ret
}

/// Forks a child that maps the blob at `hint`, runs it for `task`, reports, and stops itself.
fn spawn_blob_task(plan: &str, task: u32, session: &str, hint: usize, report: *mut Report) -> i32 {
    spawn_blob_task_with(plan, task, session, hint, report, &[], 0, false)
}

/// With `stop_first`, the child also stops itself before the call, so that its table can be
/// looked at as it was.
#[allow(clippy::too_many_arguments)]
fn spawn_blob_task_with(plan: &str, task: u32, session: &str, hint: usize, report: *mut Report, keep: &[u32], flags: u32, stop_first: bool) -> i32 {
    let image = blob();
    let h = header(image);
    let mut args = BlobArgs {
        plan: plan.as_ptr(),
        plan_len: plan.len() as u64,
        task,
        sync_fd: -1,
        timeout_ms: 10_000,
        batch: BATCH.with(|b| b.get()),
        session: [0; 32],
        // SAFETY: report points to a shared page that outlives the children.
        error: unsafe { (*report).error.as_mut_ptr() },
        error_len: 512,
        keep: keep.as_ptr(),
        keep_len: keep.len() as u32,
        flags,
    };
    args.session[..session.len()].copy_from_slice(session.as_bytes());
    let alarm_us = ALARM_US.with(|a| a.get());
    // SAFETY: fork in a test process: the child only makes raw syscalls and copies memory.
    let pid = unsafe { libc::fork() };
    if pid != 0 {
        return pid;
    }
    // SAFETY: the child maps fresh memory, copies the image in, and calls its entry.
    unsafe {
        let len = (h.memory + 4095) & !4095;
        let at = libc::mmap(
            hint as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        );
        if at == libc::MAP_FAILED {
            (*report).ret = -1000;
            libc::_exit(1);
        }
        std::ptr::copy_nonoverlapping(image.as_ptr(), at as *mut u8, image.len());
        // W^X: the code becomes read+exec; what the blob relocates stays writable.
        if libc::mprotect(at, h.exec, libc::PROT_READ | libc::PROT_EXEC) != 0 {
            (*report).ret = -1002;
            libc::_exit(1);
        }
        let stack = libc::mmap(std::ptr::null_mut(), PAINTED, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
        if stack == libc::MAP_FAILED {
            (*report).ret = -1001;
            libc::_exit(1);
        }
        std::ptr::write_bytes(stack as *mut u8, PAINT, PAINTED);
        (*report).base = at as u64;
        if stop_first {
            libc::raise(libc::SIGSTOP);
        }
        if alarm_us > 0 {
            start_alarms(alarm_us);
        }
        (*report).ret = call_on_stack(at as usize + h.entry, &mut args, stack as usize + PAINTED);
        if alarm_us > 0 {
            let off: libc::itimerval = std::mem::zeroed();
            libc::setitimer(libc::ITIMER_REAL, &off, std::ptr::null_mut());
            (*report).signals = CAUGHT.load(std::sync::atomic::Ordering::Relaxed);
        }
        let painted = std::slice::from_raw_parts(stack as *const u8, PAINTED);
        (*report).stack_used = (PAINTED - painted.iter().position(|&b| b != PAINT).unwrap_or(PAINTED)) as u64;
        libc::raise(libc::SIGSTOP);
        libc::_exit(0);
    }
}

fn shared_reports(n: usize) -> *mut Report {
    // SAFETY: a fresh shared anonymous mapping, zero-filled (a valid Report).
    let p = unsafe {
        libc::mmap(std::ptr::null_mut(), n * std::mem::size_of::<Report>(), libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0)
    };
    assert_ne!(p, libc::MAP_FAILED);
    p as *mut Report
}

fn kill_and_reap(pid: i32) {
    kill(pid, libc::SIGKILL);
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
}

fn wait_stopped(pid: i32) -> bool {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED) };
    r == pid && libc::WIFSTOPPED(status)
}

/// The header's stack need covers what the calls used, with at least a quarter to spare.
fn check_stack(reports: *mut Report, n: usize) {
    let need = header(blob()).stack_need;
    for i in 0..n {
        // SAFETY: i < n reports, written by children that have stopped.
        let used = unsafe { (*reports.add(i)).stack_used } as usize;
        eprintln!("blob stack used: {used} bytes (stack_need {need})");
        assert!(used > 0, "the painted stack must show the call");
        assert!(used + used / 4 <= need, "stack used {used} B plus margin exceeds the header's stack_need {need} B");
    }
}

fn error_text(r: &Report) -> String {
    let n = r.error.iter().position(|&b| b == 0).unwrap_or(0);
    String::from_utf8_lossy(&r.error[..n]).into_owned()
}

/// Two hosts, each running the blob at a random address: they share a file and a pipe as
/// planned, hold nothing else, and survive the call.
#[test]
fn restores_at_random_addresses() {
    let d = TmpDir::new("blob");
    let mut p = Plan::new();
    p.task(1).task(2);
    p.reg(1, &d.file("log", b"0123456789"), "wronly,append").at(1, 1).at(2, 1).at_ce(2, 7);
    p.reg_pos(2, &d.file("data", b"abcdefgh"), "rdonly", 3).at(1, 3).at(2, 4);
    p.pipe(3).r(1, 0).w(2, 5);
    let text = p.text();
    let mut rng = Rng(0x5eed_b10b);
    for round in 0..8 {
        let reports = shared_reports(2);
        let session = format!("blob{}r{round}", std::process::id());
        let mut pids = BTreeMap::new();
        let mut bases = Vec::new();
        for (i, task) in [1u32, 2].into_iter().enumerate() {
            // Page-aligned, anywhere in the lower user half that is free.
            let hint = (0x1000_0000_0000 + rng.below(0x3000_0000_0000) as usize) & !0xfff;
            // SAFETY: i < 2 reports.
            let pid = spawn_blob_task(&text, task, &session, hint, unsafe { reports.add(i) });
            pids.insert(task as u16, pid);
            bases.push(hint);
        }
        for (i, (&task, &pid)) in pids.iter().enumerate() {
            assert!(wait_stopped(pid), "round {round}: the host of task {task} must survive the call");
            // SAFETY: the child wrote its report before stopping.
            let r = unsafe { &*reports.add(i) };
            assert_eq!(r.ret, 0, "round {round} task {task}: {}", error_text(r));
            assert_eq!(r.base as usize, bases[i], "mapped where asked");
        }
        assert_tables(&p.expect(), &pids, &CheckOpts { stopped: true, ..Default::default() });
        check_stack(reports, 2);
        for &pid in pids.values() {
            kill_and_reap(pid);
        }
    }
}

/// Bad input comes back as an error code and record; the host keeps running with its table.
#[test]
fn bad_plan_returns_error_and_host_survives() {
    let reports = shared_reports(1);
    let pid = spawn_blob_task("fdslot 1\ntask 1\nbogus 3\n", 1, "blobbad", 0x2000_0000_0000, reports);
    assert!(wait_stopped(pid), "the host must survive");
    // SAFETY: the child wrote its report before stopping.
    let r = unsafe { &*reports };
    assert_eq!(r.ret, -2, "plan error: {}", error_text(r));
    assert!(error_text(r).contains("line 3"), "names the line: {}", error_text(r));
    // Nothing was touched: the host still has its stdio.
    let fds = list_fds(pid).unwrap();
    assert!(fds.contains(&0) && fds.contains(&1) && fds.contains(&2), "{fds:?}");
    kill_and_reap(pid);
}

/// The deepest paths (a full batch of 253 received, a parallel move, opens of every kind the
/// opener has) on the painted stack: the header's stack need must cover them.
#[test]
fn stack_need_covers_a_full_batch() {
    let d = TmpDir::new("blobstack");
    let f = d.file("f", b"x");
    let mut p = Plan::new();
    p.task(1).task(2);
    for i in 0..300u32 {
        // The receiver's slots in reverse order: received fds land where others must go.
        p.reg(i + 1, &f, "rdonly").at(1, 3 + i).at(2, 302 - i);
    }
    p.pipe(400).r(1, 400).w(2, 401);
    let text = p.text();
    let reports = shared_reports(2);
    let session = format!("blobstk{}", std::process::id());
    let mut pids = BTreeMap::new();
    for (i, task) in [1u32, 2].into_iter().enumerate() {
        // SAFETY: i < 2 reports.
        // Preserve mode, as inject runs it: the deepest path there is.
        let pid = spawn_blob_task_with(&text, task, &session, 0x3000_0000_0000 + i * 0x1000_0000, unsafe { reports.add(i) }, &[], FLAG_PRESERVE, false);
        pids.insert(task as u16, pid);
    }
    for (i, &pid) in pids.values().enumerate() {
        assert!(wait_stopped(pid));
        // SAFETY: written before the child stopped.
        let r = unsafe { &*reports.add(i) };
        assert_eq!(r.ret, 0, "{}", error_text(r));
    }
    assert_tables(&p.expect(), &pids, &CheckOpts { stopped: true, ..Default::default() });
    check_stack(reports, 2);
    for &pid in pids.values() {
        kill_and_reap(pid);
    }
}

/// `keep`: the host's own fds listed there stay open and untouched (the same description),
/// everything else is the plan.
#[test]
fn keeps_the_hosts_fds() {
    let d = TmpDir::new("blobkeep");
    let mut p = Plan::new();
    p.task(1);
    p.reg(1, &d.file("f", b"x"), "rdonly").at(1, 5);
    let text = p.text();
    let reports = shared_reports(1);
    // The test's fd 2 (stderr) is inherited by the host: keep it at 2.
    let pid = spawn_blob_task_with(&text, 1, "blobkeep", 0x2800_0000_0000, reports, &[2], 0, false);
    assert!(wait_stopped(pid));
    // SAFETY: written before the child stopped.
    let r = unsafe { &*reports };
    assert_eq!(r.ret, 0, "{}", error_text(r));
    let fds = list_fds(pid).unwrap();
    assert_eq!(fds.iter().copied().collect::<Vec<_>>(), vec![2, 5], "the plan plus the kept fd");
    let me = std::process::id() as i32;
    assert_eq!(kcmp_file(me, 2, pid, 2), Ok(0), "fd 2 is still the host's own description");
    kill_and_reap(pid);
}


/// FLAG_PRESERVE: a restore that fails after displacing the host's fds (one planned slot holds
/// the host's stdout) puts every one back: same numbers, same descriptions, same cloexec bits.
#[test]
fn preserve_puts_the_hosts_fds_back_on_failure() {
    use std::os::fd::AsRawFd;
    let d = TmpDir::new("blobpreserve");
    let mut p = Plan::new();
    p.task(1);
    p.reg(1, &d.file("f", b"x"), "rdonly").at(1, 1).at(1, 3).at(1, 4);
    p.reg(2, &d.path("missing"), "rdonly").at(1, 6);
    let text = p.text();
    let reports = shared_reports(1);
    let pid = spawn_blob_task_with(&text, 1, "blobpreserve", 0x2a00_0000_0000, reports, &[], FLAG_PRESERVE, true);
    assert!(wait_stopped(pid), "stopped before the call");
    // pos is the description's (checked by kcmp below): the host's stdout is the test's, which
    // other tests write to meanwhile.
    let before: Vec<(u32, String, u32)> = list_fds(pid).unwrap().into_iter().map(|f| (f, fd_target(pid, f), fdinfo(pid, f).unwrap().1)).collect();
    let copies: Vec<(u32, std::os::fd::OwnedFd)> = before.iter().map(|x| (x.0, steal_fd(pid, x.0).unwrap())).collect();
    assert!(before.iter().any(|x| x.0 == 1), "the host has an fd in a planned slot");
    kill(pid, libc::SIGCONT);
    assert!(wait_stopped(pid), "the host must survive");
    // SAFETY: written before the child stopped.
    let r = unsafe { &*reports };
    assert_eq!(r.ret, -1, "{}", error_text(r));
    assert!(error_text(r).contains("fd 6") && error_text(r).contains("ENOENT"), "{}", error_text(r));
    let after: Vec<(u32, String, u32)> = list_fds(pid).unwrap().into_iter().map(|f| (f, fd_target(pid, f), fdinfo(pid, f).unwrap().1)).collect();
    assert_eq!(before, after, "the table is back: numbers, targets, flags with cloexec");
    let me = std::process::id() as i32;
    for (f, c) in &copies {
        assert_eq!(kcmp_file(me, c.as_raw_fd() as u32, pid, *f), Ok(0), "fd {f} holds its own description again");
    }
    kill_and_reap(pid);
}

/// Interrupted syscalls are retried, not failures: three hosts catch a SIGALRM every 30 us
/// (handler without SA_RESTART, so every blocking call in the blob can return EINTR) while the
/// blob restores them with the tasks' own barrier and one socket per fd; every call returns 0
/// with exactly the planned tables, after many signals.
#[test]
fn signals_during_the_restore_are_retried() {
    let d = TmpDir::new("blobintr");
    let mut p = Plan::new();
    p.task(1).task(2).task(3);
    for i in 0..24u32 {
        let opener = 1 + (i % 3) as u16;
        let others: Vec<u16> = (1..=3).filter(|&t| t != opener).collect();
        p.reg(10 + i, &d.file(&format!("f{i}"), b"x"), "rdonly").at(opener, 3 + i).at(others[0], 3 + i).at(others[1], 40 + i);
    }
    p.pipe(100).r(1, 90).w(3, 90);
    // One message per fd (spawn_blob_task_batch1): the most sends, receives and polls to interrupt.
    let text = p.text();
    let session = format!("blobintr{}", std::process::id());
    for round in 0..3 {
        let reports = shared_reports(3);
        let mut pids = BTreeMap::new();
        ALARM_US.with(|a| a.set(30));
        for (i, task) in [1u32, 2, 3].into_iter().enumerate() {
            let s = format!("{session}r{round}");
            // SAFETY: i < 3 reports.
            let pid = spawn_blob_task_batch1(&text, task, &s, 0x3400_0000_0000 + i * 0x1000_0000, unsafe { reports.add(i) });
            pids.insert(task as u16, pid);
        }
        ALARM_US.with(|a| a.set(0));
        let mut caught = 0;
        for (i, (&task, &pid)) in pids.iter().enumerate() {
            assert!(wait_stopped(pid), "round {round}: the host of task {task} must survive");
            // SAFETY: the child wrote its report before stopping.
            let r = unsafe { &*reports.add(i) };
            assert_eq!(r.ret, 0, "round {round} task {task} (after {} signals): {}", r.signals, error_text(r));
            caught += r.signals;
        }
        assert!(caught >= 3, "round {round}: the hosts must have caught signals during the call (caught {caught})");
        eprintln!("round {round}: {caught} signals caught during the restores");
        assert_tables(&p.expect(), &pids, &CheckOpts { stopped: true, ..Default::default() });
        for &pid in pids.values() {
            kill_and_reap(pid);
        }
    }
}

/// `spawn_blob_task` with one fd per message.
fn spawn_blob_task_batch1(plan: &str, task: u32, session: &str, hint: usize, report: *mut Report) -> i32 {
    BATCH.with(|b| b.set(1));
    let pid = spawn_blob_task(plan, task, session, hint, report);
    BATCH.with(|b| b.set(0));
    pid
}

thread_local! {
    /// The batch size the next spawned host passes (0: the default).
    static BATCH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}
