//! Process, signal, time and limit syscalls.

use super::arch::*;
use super::errno::check;
use super::{Errno, Fd, SysResult};
use core::sync::atomic::AtomicU32;
use linux_raw_sys::general as g;

/// `getpid()`.
pub fn getpid() -> i32 {
    // SAFETY: no arguments; cannot fail.
    unsafe { syscall0(g::__NR_getpid) as i32 }
}

/// `getppid()`.
pub fn getppid() -> i32 {
    // SAFETY: no arguments; cannot fail.
    unsafe { syscall0(g::__NR_getppid) as i32 }
}

/// `getuid()`.
pub fn getuid() -> u32 {
    // SAFETY: no arguments; cannot fail.
    unsafe { syscall0(g::__NR_getuid) as u32 }
}

/// `getgid()`.
pub fn getgid() -> u32 {
    // SAFETY: no arguments; cannot fail.
    unsafe { syscall0(g::__NR_getgid) as u32 }
}

/// `clone(flags | SIGCHLD)` without a new stack: a fork that may share (CLONE_FILES) the fd
/// table or take the caller's parent (CLONE_PARENT). `Ok(0)` in the child.
pub fn clone_process(flags: usize) -> SysResult<i32> {
    // SAFETY: without CLONE_VM the child gets a copy of the address space, so it may keep
    // using the stack it returns on; fdslot is single-threaded and holds no locks.
    check(unsafe { syscall5(g::__NR_clone, flags | g::SIGCHLD as usize, 0, 0, 0, 0) }).map(|v| v as i32)
}

/// `clone(SIGCHLD)`, that is fork: `Ok(0)` in the child, the child's pid in the parent.
pub fn fork() -> SysResult<i32> {
    // SAFETY: fdslot is single-threaded and holds no locks.
    check(unsafe { fork_raw() }).map(|v| v as i32)
}

/// `execve(path, argv, envp)`; returns only on failure.
///
/// # Safety
/// `path` must be NUL-terminated; `argv` and `envp` NULL-terminated arrays of NUL-terminated strings.
pub unsafe fn execve(path: *const u8, argv: *const *const u8, envp: *const *const u8) -> Errno {
    // SAFETY: the caller vouches for the pointers.
    let r = unsafe { syscall3(g::__NR_execve, path as usize, argv as usize, envp as usize) };
    check(r).err().unwrap_or(Errno::INVAL)
}

/// `exit_group(code)`.
pub fn exit(code: i32) -> ! {
    // SAFETY: ends the process.
    unsafe { syscall1(g::__NR_exit_group, code as usize) };
    // exit_group does not return; should it ever, stop here rather than run on.
    loop {
        core::hint::spin_loop();
    }
}

/// `kill(pid, sig)`.
pub fn kill(pid: i32, sig: u32) -> SysResult<()> {
    // SAFETY: integer arguments only.
    check(unsafe { syscall2(g::__NR_kill, pid as isize as usize, sig as usize) }).map(|_| ())
}

/// What `waitid` reported about one child.
#[derive(Clone, Copy, Debug)]
pub struct ChildEvent {
    pub pid: i32,
    /// CLD_EXITED, CLD_KILLED, CLD_DUMPED, CLD_STOPPED, ...
    pub code: u32,
    /// The exit status or the signal number.
    pub status: i32,
}

/// `waitid(idtype, id, options)`; `Ok(None)` when WNOHANG found nothing.
pub fn waitid(idtype: u32, id: i32, options: u32) -> SysResult<Option<ChildEvent>> {
    // siginfo_t is 128 bytes; for SIGCHLD si_code sits at 8, si_pid at 16, si_status at 24.
    let mut info = [0i32; 32];
    // SAFETY: the kernel writes one siginfo_t into info; rusage is NULL.
    check(unsafe { syscall5(g::__NR_waitid, idtype as usize, id as usize, info.as_mut_ptr() as usize, options as usize, 0) })?;
    if info[4] == 0 {
        return Ok(None);
    }
    Ok(Some(ChildEvent { pid: info[4], code: info[2] as u32, status: info[6] }))
}

/// `prctl(option, arg)`.
pub fn prctl(option: u32, arg: usize) -> SysResult<()> {
    // SAFETY: only integer options are used by callers.
    check(unsafe { syscall5(g::__NR_prctl, option as usize, arg, 0, 0, 0) }).map(|_| ())
}

/// `rt_sigprocmask(how, set)`: returns the previous mask.
pub fn sigprocmask(how: u32, set: u64) -> SysResult<u64> {
    let mut old = 0u64;
    // SAFETY: set and old are 8-byte masks.
    check(unsafe { syscall4(g::__NR_rt_sigprocmask, how as usize, &set as *const u64 as usize, &mut old as *mut u64 as usize, 8) })?;
    Ok(old)
}

/// `signalfd4(-1, mask, flags)`.
pub fn signalfd(mask: u64, flags: u32) -> SysResult<Fd> {
    // SAFETY: mask is an 8-byte sigset.
    check(unsafe { syscall4(g::__NR_signalfd4, usize::MAX, &mask as *const u64 as usize, 8, flags as usize) }).map(|v| v as Fd)
}

/// `pidfd_open(pid, 0)`.
pub fn pidfd_open(pid: i32) -> SysResult<Fd> {
    // SAFETY: integer arguments only.
    check(unsafe { syscall2(g::__NR_pidfd_open, pid as usize, 0) }).map(|v| v as Fd)
}

/// `futex(word, FUTEX_WAIT, expected, timeout)`, on a word that other processes may share.
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout_ns: u64) -> SysResult<()> {
    let ts = g::__kernel_timespec { tv_sec: (timeout_ns / 1_000_000_000) as i64, tv_nsec: (timeout_ns % 1_000_000_000) as i64 };
    // SAFETY: word is a live aligned u32; ts outlives the call.
    check(unsafe {
        syscall4(g::__NR_futex, word.as_ptr() as usize, g::FUTEX_WAIT as usize, expected as usize, &ts as *const _ as usize)
    })
    .map(|_| ())
}

/// `futex(word, FUTEX_WAKE, all)`.
pub fn futex_wake_all(word: &AtomicU32) {
    // SAFETY: word is a live aligned u32. Waking cannot fail in a way callers could act on.
    unsafe { syscall3(g::__NR_futex, word.as_ptr() as usize, g::FUTEX_WAKE as usize, i32::MAX as usize) };
}

/// `sched_getscheduler(0)`: the calling thread's policy (with SCHED_RESET_ON_FORK, if set).
pub fn sched_getscheduler() -> SysResult<u32> {
    // SAFETY: integer arguments only.
    check(unsafe { syscall1(g::__NR_sched_getscheduler, 0) }).map(|v| v as u32)
}

/// `sched_setscheduler(0, policy, {0})`: a fair policy (SCHED_NORMAL, SCHED_BATCH) for the
/// calling thread; its nice value stays.
pub fn sched_setscheduler(policy: u32) -> SysResult<()> {
    let param = 0i32;
    // SAFETY: `param` is a valid struct sched_param (one int) that outlives the call.
    check(unsafe { syscall3(g::__NR_sched_setscheduler, 0, policy as usize, &param as *const i32 as usize) }).map(|_| ())
}

/// `prlimit64(0, resource, NULL, &old)`: returns (soft, hard).
pub fn getrlimit(resource: u32) -> SysResult<(u64, u64)> {
    let mut lim = g::rlimit64 { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: the kernel writes one rlimit64.
    check(unsafe { syscall4(g::__NR_prlimit64, 0, resource as usize, 0, &mut lim as *mut _ as usize) })?;
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// `prlimit64(0, resource, &new, NULL)`.
pub fn setrlimit(resource: u32, soft: u64, hard: u64) -> SysResult<()> {
    let lim = g::rlimit64 { rlim_cur: soft, rlim_max: hard };
    // SAFETY: the kernel reads one rlimit64.
    check(unsafe { syscall4(g::__NR_prlimit64, 0, resource as usize, &lim as *const _ as usize, 0) }).map(|_| ())
}

/// `getrandom(buf, 0)`, retried until full.
pub fn getrandom(buf: &mut [u8]) -> SysResult<()> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the kernel writes at most the remaining length.
        match check(unsafe { syscall3(g::__NR_getrandom, buf[done..].as_mut_ptr() as usize, buf.len() - done, 0) }) {
            Ok(n) => done += n,
            Err(e) if e == Errno::INTR => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `clock_gettime(CLOCK_MONOTONIC)` in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = g::__kernel_timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: the kernel writes one timespec; CLOCK_MONOTONIC always exists.
    unsafe { syscall2(g::__NR_clock_gettime, g::CLOCK_MONOTONIC as usize, &mut ts as *mut _ as usize) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `nanosleep(ns)`; an interrupted sleep just returns early.
pub fn sleep_ns(ns: u64) {
    let ts = g::__kernel_timespec { tv_sec: (ns / 1_000_000_000) as i64, tv_nsec: (ns % 1_000_000_000) as i64 };
    // SAFETY: ts outlives the call; rem is NULL.
    unsafe { syscall2(g::__NR_nanosleep, &ts as *const _ as usize, 0) };
}

/// `ptrace(request, pid, addr, data)`. The raw PEEK requests store the word at `data`.
pub fn ptrace(request: u32, pid: i32, addr: usize, data: usize) -> SysResult<usize> {
    // SAFETY: callers pass pointers (for GETREGS/SETREGS) to live buffers of the right size.
    check(unsafe { syscall4(g::__NR_ptrace, request as usize, pid as usize, addr, data) })
}

/// `wait4(pid, &status, options, NULL)`: returns (pid, status); pid 0 with WNOHANG and nothing.
pub fn wait4(pid: i32, options: u32) -> SysResult<(i32, i32)> {
    let mut status = 0i32;
    // SAFETY: the kernel writes one int.
    let r = check(unsafe { syscall4(g::__NR_wait4, pid as usize, &mut status as *mut i32 as usize, options as usize, 0) })?;
    Ok((r as i32, status))
}

/// `process_vm_writev(pid, local, remote)`: one buffer each way.
pub fn vm_write(pid: i32, remote: usize, data: &[u8]) -> SysResult<usize> {
    let local = g::iovec { iov_base: data.as_ptr() as *mut _, iov_len: data.len() as _ };
    let far = g::iovec { iov_base: remote as *mut _, iov_len: data.len() as _ };
    // SAFETY: local describes our buffer; the kernel checks the remote range.
    check(unsafe { syscall6(g::__NR_process_vm_writev, pid as usize, &local as *const _ as usize, 1, &far as *const _ as usize, 1, 0) })
}

/// `process_vm_readv(pid, local, remote)`.
pub fn vm_read(pid: i32, remote: usize, buf: &mut [u8]) -> SysResult<usize> {
    let local = g::iovec { iov_base: buf.as_mut_ptr() as *mut _, iov_len: buf.len() as _ };
    let far = g::iovec { iov_base: remote as *mut _, iov_len: buf.len() as _ };
    // SAFETY: local describes our buffer; the kernel checks the remote range.
    check(unsafe { syscall6(g::__NR_process_vm_readv, pid as usize, &local as *const _ as usize, 1, &far as *const _ as usize, 1, 0) })
}

/// The bit of signal `sig` in a 64-bit sigset.
pub const fn sigbit(sig: u32) -> u64 {
    1u64 << (sig - 1)
}

/// `reboot(LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, cmd, NULL)`: only returns on failure.
pub fn reboot(cmd: u32) -> Errno {
    // SAFETY: integer arguments only; the argument pointer is NULL (used only by RESTART2).
    let r = unsafe { syscall4(g::__NR_reboot, g::LINUX_REBOOT_MAGIC1 as usize, g::LINUX_REBOOT_MAGIC2 as usize, cmd as usize, 0) };
    check(r).err().unwrap_or(Errno::INVAL)
}
