//! `fdslot inject PLAN T=PID... [--blob PATH] [--keep FD,...] [--timeout SECS] [--batch N]`:
//! rebuilds the fd tables of live processes by running fdslot.blob inside each of them.
//!
//! Per process: a pidfd first (a recycled pid is never touched), PTRACE_SEIZE of every thread
//! (with seccomp filters suspended), PTRACE_INTERRUPT; then, on the main thread, injected
//! syscalls (a `syscall; int3` patched over the word at its pc and put back after) map memory
//! for the blob, its arguments, the plan and a stack, and block signals. All blobs then run at
//! once (they meet at the tasks' own barrier) and end on an int3. Then the memory is unmapped,
//! the signal mask, registers (with syscall restart) and code restored, and every thread
//! detached. The process goes on as it was, with its fd table rebuilt.

use super::args::{self, Args};
use super::{eprint, load_plan, read_plan, usage_error};
use crate::report::{EXIT_PEER, EXIT_RESTORE, EXIT_USAGE};
use crate::restore::MAX_KEEP;
use crate::sys::{fd, proc, Errno, Fd};
use crate::text::{parse_radix, Line};
use linux_raw_sys::general as g;
use linux_raw_sys::ptrace as pt;

/// The most processes one inject command handles, and threads per process.
const MAX_TARGETS: usize = 64;
const MAX_THREADS: usize = 256;

// user_regs_struct indices (x86_64).
const RAX: usize = 10;
const RDX: usize = 12;
const RSI: usize = 13;
const RDI: usize = 14;
const ORIG_RAX: usize = 15;
const RIP: usize = 16;
const RSP: usize = 19;
const R10: usize = 7;
const R8: usize = 9;
const R9: usize = 8;
type Regs = [u64; 27];

/// The blob's argument block, as fdslot.h lays it out.
#[repr(C)]
struct Args64 {
    plan: u64,
    plan_len: u64,
    task: u32,
    sync_fd: i32,
    timeout_ms: u32,
    batch: u32,
    session: [u8; 32],
    error: u64,
    error_len: u64,
    keep: u64,
    keep_len: u32,
    reserved: u32,
}

struct Target {
    task: u16,
    pid: i32,
    pidfd: Fd,
    threads: heapless::Vec<i32, MAX_THREADS>,
    saved: Regs,
    code_addr: usize,
    code_word: usize,
    base: usize,
    len: usize,
    /// The blob's entry offset.
    entry: usize,
    /// Signals are blocked, the old mask saved in the mapping: put it back before unmapping.
    masked: bool,
    result: i64,
}

/// Offsets inside the injected mapping, after the blob's own memory.
struct Layout {
    args: usize,
    plan: usize,
    keep: usize,
    error: usize,
    masks: usize,
    trap: usize,
    stack_top: usize,
    len: usize,
}

fn layout(blob_mem: usize, plan_len: usize, stack: usize) -> Layout {
    let up = |x: usize| (x + 63) & !63;
    let args = up(blob_mem);
    let plan = up(args + core::mem::size_of::<Args64>());
    let keep = up(plan + plan_len);
    let error = up(keep + MAX_KEEP * 4);
    let masks = up(error + 512);
    let trap = masks + 16;
    let stack_bottom = (trap + 4096 + 4095) & !4095;
    let stack_top = stack_bottom + ((stack + 16384 + 4095) & !4095);
    Layout { args, plan, keep, error, masks, trap, stack_top, len: stack_top }
}

fn fail(what: &str, pid: i32, e: Option<Errno>) -> i32 {
    let mut l = Line::<200>::new();
    l.str("fdslot: inject: pid ").num(pid as u64).str(": ").str(what);
    if let Some(e) = e {
        l.str(": ").str(e.name().unwrap_or("error"));
    }
    l.str("\n");
    eprint(l.as_bytes());
    EXIT_RESTORE as i32
}

fn getregs(tid: i32) -> Result<Regs, Errno> {
    let mut r: Regs = [0; 27];
    proc::ptrace(pt::PTRACE_GETREGS, tid, 0, r.as_mut_ptr() as usize)?;
    Ok(r)
}

fn setregs(tid: i32, r: &Regs) -> Result<(), Errno> {
    proc::ptrace(pt::PTRACE_SETREGS, tid, 0, r.as_ptr() as usize).map(|_| ())
}

/// Resumes `tid` and waits for its next stop, up to `deadline`: Ok(Some(signal)) when it
/// stopped, Ok(None) on timeout, Err when it is gone.
fn cont_and_wait(tid: i32, deadline: u64) -> Result<Option<u32>, Errno> {
    proc::ptrace(pt::PTRACE_CONT, tid, 0, 0)?;
    wait_stop(tid, deadline)
}

fn wait_stop(tid: i32, deadline: u64) -> Result<Option<u32>, Errno> {
    const WALL: u32 = 0x4000_0000;
    loop {
        let (got, status) = proc::wait4(tid, WALL | g::WNOHANG)?;
        if got == tid {
            if status & 0x7f == 0x7f {
                return Ok(Some(((status >> 8) & 0xff) as u32));
            }
            return Err(Errno::SRCH); // exited or killed
        }
        if proc::monotonic_ns() >= deadline {
            return Ok(None);
        }
        proc::sleep_ns(100_000);
    }
}

/// Runs one syscall in the stopped main thread of `t`, at its patched code word.
fn remote_syscall(t: &Target, nr: u32, a: [u64; 6], deadline: u64) -> Result<i64, Errno> {
    let mut r = t.saved;
    r[RIP] = t.code_addr as u64;
    r[RAX] = nr as u64;
    r[ORIG_RAX] = u64::MAX;
    r[RDI] = a[0];
    r[RSI] = a[1];
    r[RDX] = a[2];
    r[R10] = a[3];
    r[R8] = a[4];
    r[R9] = a[5];
    for _ in 0..8 {
        setregs(t.pid, &r)?;
        match cont_and_wait(t.pid, deadline)? {
            Some(sig) if sig == g::SIGTRAP => return Ok(getregs(t.pid)?[RAX] as i64),
            // Another stop (a signal before our mask is in place): run the syscall again.
            Some(_) => {}
            None => return Err(Errno::TIMEDOUT),
        }
    }
    Err(Errno::INTR)
}

/// Seizes every thread of `pid` and stops them.
fn seize(t: &mut Target, deadline: u64) -> Result<(), (&'static str, Errno)> {
    let mut path = Line::<40>::new();
    path.str("/proc/").num(t.pid as u64).str("/task\0");
    let dir = fd::open(path.peek(), g::O_RDONLY | g::O_DIRECTORY | g::O_CLOEXEC, 0).map_err(|e| ("open /proc/PID/task", e))?;
    let mut buf = [0u8; 4096];
    loop {
        let n = fd::getdents64(dir, &mut buf).map_err(|e| ("getdents64", e))?;
        if n == 0 {
            break;
        }
        let mut off = 0;
        while off + 19 < n {
            let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
            let name = &buf[off + 19..off + reclen];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if let Some(tid) = parse_radix(name, 10) {
                if t.threads.push(tid as i32).is_err() {
                    let _ = fd::close(dir);
                    return Err(("more than 256 threads", Errno::INVAL));
                }
            }
            off += reclen;
        }
    }
    let _ = fd::close(dir);
    for &tid in t.threads.iter() {
        proc::ptrace(pt::PTRACE_SEIZE, tid, 0, pt::PTRACE_O_SUSPEND_SECCOMP as usize).map_err(|e| ("PTRACE_SEIZE", e))?;
        proc::ptrace(pt::PTRACE_INTERRUPT, tid, 0, 0).map_err(|e| ("PTRACE_INTERRUPT", e))?;
    }
    for &tid in t.threads.iter() {
        match wait_stop(tid, deadline) {
            Ok(Some(_)) => {}
            Ok(None) => return Err(("stop", Errno::TIMEDOUT)),
            Err(e) => return Err(("stop", e)),
        }
    }
    Ok(())
}

/// Puts back the code word, the registers (restarting an interrupted syscall), and detaches.
fn release(t: &Target) {
    if t.code_addr != 0 {
        let _ = proc::ptrace(pt::PTRACE_POKETEXT, t.pid, t.code_addr, t.code_word);
    }
    let mut r = t.saved;
    match r[RAX] as i64 {
        -514..=-512 => {
            r[RIP] -= 2;
            r[RAX] = r[ORIG_RAX];
        }
        -516 => {
            r[RIP] -= 2;
            r[RAX] = g::__NR_restart_syscall as u64;
        }
        _ => {}
    }
    let _ = setregs(t.pid, &r);
    for &tid in t.threads.iter() {
        let _ = proc::ptrace(pt::PTRACE_DETACH, tid, 0, 0);
    }
    let _ = fd::close(t.pidfd);
}

/// `fdslot inject`.
///
/// # Safety
/// `envp` must be the process's environment array.
pub unsafe fn cmd_inject(a: &mut Args, envp: *const *const u8) -> i32 {
    let (mut path, mut timeout, mut batch) = (None, 10_000u64, 0u32);
    let mut blob_path: Option<&[u8]> = None;
    let mut keep = heapless::Vec::<u32, MAX_KEEP>::new();
    let mut pairs = heapless::Vec::<(u16, i32), MAX_TARGETS>::new();
    while let Some(arg) = a.next() {
        let r = match arg {
            b"--timeout" => a.timeout().map(|v| timeout = v / 1_000_000),
            b"--batch" => a.batch().map(|v| batch = v as u32),
            b"--keep" => a.keep(&mut keep),
            b"--blob" => a.next().map(|v| blob_path = Some(v)).ok_or_else(|| usage_error(b"--blob needs a path")),
            _ if path.is_none() && !arg.starts_with(b"--") => {
                path = Some(arg);
                Ok(())
            }
            _ => match arg.iter().position(|&b| b == b'=') {
                Some(eq) => match (parse_radix(&arg[..eq], 10), parse_radix(&arg[eq + 1..], 10)) {
                    (Some(t), Some(p)) if (1..=65535).contains(&t) && p > 0 && p < i32::MAX as u64 => {
                        pairs.push((t as u16, p as i32)).map_err(|_| usage_error(b"inject: at most 64 processes"))
                    }
                    _ => Err(usage_error(b"inject: targets are TASK=PID")),
                },
                None => Err(args::unexpected(arg)),
            },
        };
        if let Err(c) = r {
            return c;
        }
    }
    let Some(path) = path else { return usage_error(b"inject needs PLAN and TASK=PID") };
    if pairs.is_empty() {
        return usage_error(b"inject needs at least one TASK=PID");
    }
    // SAFETY: envp is the process's environment (this function's contract).
    let blob_path = blob_path.or_else(|| unsafe { super::exec::env_value(envp, b"FDSLOT_BLOB") }).unwrap_or(b"fdslot.blob");
    let plan = match load_plan(path) {
        Ok(p) => p,
        Err(c) => return c,
    };
    for &(task, _) in pairs.iter() {
        if plan.task_by_id(task).is_none() {
            return usage_error(b"inject: a TASK is not in the plan");
        }
    }
    let image = match read_plan(blob_path) {
        Ok(b) if b.len() >= 40 && &b[..8] == b"FDSLOTB\0" => b,
        _ => return usage_error(b"inject: --blob is not a readable fdslot.blob"),
    };
    let u32_at = |o: usize| u32::from_le_bytes([image[o], image[o + 1], image[o + 2], image[o + 3]]) as usize;
    let u64_at = |o: usize| u64::from_le_bytes([image[o], image[o + 1], image[o + 2], image[o + 3], image[o + 4], image[o + 5], image[o + 6], image[o + 7]]) as usize;
    let (entry, image_size, mem_size, stack) = (u32_at(12), u64_at(16), u64_at(24), u64_at(32));
    if image_size != image.len() || mem_size < image_size || entry >= image_size {
        return usage_error(b"inject: --blob has a bad header");
    }
    let lay = layout(mem_size, plan.text.len(), stack);
    let mut random = [0u8; 12];
    if proc::getrandom(&mut random).is_err() {
        return fail("getrandom", 0, None);
    }
    let mut session = [0u8; 32];
    session[..6].copy_from_slice(b"inject");
    for (i, b) in random.iter().enumerate() {
        session[6 + 2 * i] = b"0123456789abcdef"[(b >> 4) as usize];
        session[7 + 2 * i] = b"0123456789abcdef"[(b & 15) as usize];
    }
    let deadline = proc::monotonic_ns() + timeout * 1_000_000;
    let mut targets = heapless::Vec::<Target, MAX_TARGETS>::new();
    let mut code = 0;
    for &(task, pid) in pairs.iter() {
        let pidfd = match proc::pidfd_open(pid) {
            Ok(f) => f,
            Err(e) => {
                code = fail("pidfd_open", pid, Some(e));
                break;
            }
        };
        let _ = targets.push(Target { task, pid, pidfd, threads: heapless::Vec::new(), saved: [0; 27], code_addr: 0, code_word: 0, base: 0, len: lay.len, entry, masked: false, result: 0 });
        let t = targets.last_mut().unwrap();
        if let Err((what, e)) = seize(t, deadline) {
            code = fail(what, pid, Some(e));
            break;
        }
        if let Err(e) = prepare(t, &lay, image, entry, &plan, &session, &keep, timeout, batch, deadline) {
            code = fail("injecting the blob", pid, Some(e));
            break;
        }
    }
    if code == 0 {
        code = run_blobs(&mut targets, &lay, deadline);
    }
    for t in targets.iter() {
        if t.masked {
            let _ = remote_syscall(t, g::__NR_rt_sigprocmask, [g::SIG_SETMASK as u64, (t.base + lay.masks + 8) as u64, 0, 8, 0, 0], deadline + 1_000_000_000);
        }
        if t.base != 0 {
            let _ = remote_syscall(t, g::__NR_munmap, [t.base as u64, t.len as u64, 0, 0, 0, 0], deadline + 1_000_000_000);
        }
        release(t);
    }
    code
}

/// Maps memory in the target, writes the blob, its arguments, the plan and the return trap,
/// and blocks its signals (the old mask is kept in the mapping).
#[allow(clippy::too_many_arguments)]
fn prepare(
    t: &mut Target,
    lay: &Layout,
    image: &[u8],
    entry: usize,
    plan: &crate::plan::Plan<'_>,
    session: &[u8; 32],
    keep: &[u32],
    timeout_ms: u64,
    batch: u32,
    deadline: u64,
) -> Result<(), Errno> {
    t.saved = getregs(t.pid)?;
    t.code_addr = (t.saved[RIP] as usize) & !7;
    // The raw PEEK request stores the word at `data` (libc's wrapper returns it instead).
    let mut word = 0usize;
    proc::ptrace(pt::PTRACE_PEEKTEXT, t.pid, t.code_addr, &mut word as *mut usize as usize)?;
    t.code_word = word;
    // syscall; int3 over the first three bytes of the word.
    let patched = (t.code_word & !0xff_ffff) | 0xcc_050f;
    proc::ptrace(pt::PTRACE_POKETEXT, t.pid, t.code_addr, patched)?;
    let prot = (g::PROT_READ | g::PROT_WRITE | g::PROT_EXEC) as u64;
    let flags = (g::MAP_PRIVATE | g::MAP_ANONYMOUS) as u64;
    let base = remote_syscall(t, g::__NR_mmap, [0, lay.len as u64, prot, flags, u64::MAX, 0], deadline)?;
    if (-4095..0).contains(&base) {
        return Err(Errno((-base) as u16));
    }
    t.base = base as usize;
    let b = t.base;
    let args = Args64 {
        plan: (b + lay.plan) as u64,
        plan_len: plan.text.len() as u64,
        task: t.task as u32,
        sync_fd: -1,
        timeout_ms: timeout_ms as u32,
        batch,
        session: *session,
        error: (b + lay.error) as u64,
        error_len: 512,
        keep: (b + lay.keep) as u64,
        keep_len: keep.len() as u32,
        reserved: 0,
    };
    // SAFETY: Args64 is plain integers; viewing it as bytes is sound.
    let args_bytes = unsafe { core::slice::from_raw_parts(&args as *const Args64 as *const u8, core::mem::size_of::<Args64>()) };
    let mut keep_bytes = [0u8; MAX_KEEP * 4];
    for (i, k) in keep.iter().enumerate() {
        keep_bytes[4 * i..4 * i + 4].copy_from_slice(&k.to_ne_bytes());
    }
    let all = u64::MAX.to_ne_bytes();
    let mut masks = [0u8; 16];
    masks[..8].copy_from_slice(&all);
    for (off, data) in [(0, image), (lay.args, args_bytes), (lay.plan, plan.text), (lay.keep, &keep_bytes[..]), (lay.masks, &masks[..]), (lay.trap, &[0xccu8][..])] {
        if proc::vm_write(t.pid, b + off, data)? != data.len() {
            return Err(Errno::INVAL);
        }
    }
    let r = remote_syscall(t, g::__NR_rt_sigprocmask, [g::SIG_SETMASK as u64, (b + lay.masks) as u64, (b + lay.masks + 8) as u64, 8, 0, 0], deadline)?;
    if r != 0 {
        return Err(Errno((-r) as u16));
    }
    t.masked = true;
    t.entry = entry;
    Ok(())
}

/// Starts every target's blob, waits for each to trap on return, and reports.
fn run_blobs(targets: &mut [Target], lay: &Layout, deadline: u64) -> i32 {
    for t in targets.iter() {
        let mut r = t.saved;
        let entry = t.entry;
        let rsp = lay.stack_top - 8;
        if proc::vm_write(t.pid, t.base + rsp, &((t.base + lay.trap) as u64).to_ne_bytes()).is_err() {
            return fail("writing the stack", t.pid, None);
        }
        r[RIP] = (t.base + entry) as u64;
        r[RSP] = (t.base + rsp) as u64;
        r[RDI] = (t.base + lay.args) as u64;
        r[RAX] = 0;
        r[ORIG_RAX] = u64::MAX;
        if let Err(e) = setregs(t.pid, &r).and_then(|_| proc::ptrace(pt::PTRACE_CONT, t.pid, 0, 0).map(|_| ())) {
            return fail("starting the blob", t.pid, Some(e));
        }
    }
    let mut code = 0;
    for t in targets.iter_mut() {
        loop {
            match wait_stop(t.pid, deadline + 2_000_000_000) {
                Ok(Some(sig)) if sig == g::SIGTRAP => break,
                // Signals are blocked, but a stop from another source: resume the blob.
                Ok(Some(_)) => {
                    let _ = proc::ptrace(pt::PTRACE_CONT, t.pid, 0, 0);
                }
                Ok(None) => return fail("the blob did not return in time", t.pid, None),
                Err(e) => return fail("the process ended while the blob ran", t.pid, Some(e)),
            }
        }
        t.result = getregs(t.pid).map(|r| r[RAX] as i64).unwrap_or(-(EXIT_RESTORE as i64));
        if t.result != 0 && code == 0 {
            let mut err = [0u8; 512];
            let _ = proc::vm_read(t.pid, t.base + lay.error, &mut err);
            let n = err.iter().position(|&b| b == 0).unwrap_or(0);
            eprint(&err[..n]);
            eprint(b"\n");
            code = match -t.result {
                2 => EXIT_USAGE as i32,
                3 => EXIT_PEER as i32,
                _ => EXIT_RESTORE as i32,
            };
        }
    }
    code
}
