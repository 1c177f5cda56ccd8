//! File-descriptor syscalls: open, close, dup, fcntl, read/write, pipes, poll.

use super::arch::*;
use super::errno::check;
use super::{Fd, SysResult};
use linux_raw_sys::general as g;

/// `openat(AT_FDCWD, path, flags, mode)`; `path` must end in NUL.
pub fn open(path: &[u8], flags: u32, mode: u32) -> SysResult<Fd> {
    open_at(g::AT_FDCWD, path, flags, mode)
}

/// `openat(dir, path, flags, mode)`: `path` (NUL-terminated) relative to the directory `dir`.
pub fn open_at(dir: Fd, path: &[u8], flags: u32, mode: u32) -> SysResult<Fd> {
    debug_assert!(path.last() == Some(&0));
    // SAFETY: path is NUL-terminated and outlives the call.
    let r = unsafe { syscall4(g::__NR_openat, dir as isize as usize, path.as_ptr() as usize, flags as usize, mode as usize) };
    check(r).map(|v| v as Fd)
}

/// `close(fd)`. EINTR still means the number is free again on Linux, so it counts as success.
pub fn close(fd: Fd) -> SysResult<()> {
    // SAFETY: close takes a plain integer.
    let r = unsafe { syscall1(g::__NR_close, fd as usize) };
    match check(r) {
        Err(e) if e == super::Errno::INTR => Ok(()),
        other => other.map(|_| ()),
    }
}

/// `close_range(first, last, 0)`: closes every open fd in `first..=last`.
pub fn close_range(first: u32, last: u32) -> SysResult<()> {
    // SAFETY: integer arguments only.
    check(unsafe { syscall3(g::__NR_close_range, first as usize, last as usize, 0) }).map(|_| ())
}

/// `dup3(old, new, flags)`: `new` is atomically replaced. Fails with EINVAL when old == new.
pub fn dup3(old: Fd, new: Fd, flags: u32) -> SysResult<Fd> {
    // SAFETY: integer arguments only.
    check(unsafe { syscall3(g::__NR_dup3, old as usize, new as usize, flags as usize) }).map(|v| v as Fd)
}

/// `fcntl(fd, cmd, arg)`.
pub fn fcntl(fd: Fd, cmd: u32, arg: usize) -> SysResult<usize> {
    // SAFETY: only integer commands (F_GETFD, F_SETFD, F_DUPFD*, F_GETFL) are used by callers.
    check(unsafe { syscall3(g::__NR_fcntl, fd as usize, cmd as usize, arg) })
}

/// `fcntl(fd, F_SETFD, cloexec)`.
pub fn set_cloexec(fd: Fd, on: bool) -> SysResult<()> {
    fcntl(fd, g::F_SETFD, if on { g::FD_CLOEXEC as usize } else { 0 }).map(|_| ())
}

/// `lseek(fd, offset, SEEK_SET)`.
pub fn seek_to(fd: Fd, offset: u64) -> SysResult<u64> {
    // SAFETY: integer arguments only.
    check(unsafe { syscall3(g::__NR_lseek, fd as usize, offset as usize, g::SEEK_SET as usize) }).map(|v| v as u64)
}

/// `read(fd, buf)`.
pub fn read(fd: Fd, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: the kernel writes at most buf.len() bytes into buf.
    check(unsafe { syscall3(g::__NR_read, fd as usize, buf.as_mut_ptr() as usize, buf.len()) })
}

/// `write(fd, buf)`.
pub fn write(fd: Fd, buf: &[u8]) -> SysResult<usize> {
    // SAFETY: the kernel reads at most buf.len() bytes from buf.
    check(unsafe { syscall3(g::__NR_write, fd as usize, buf.as_ptr() as usize, buf.len()) })
}

/// Writes all of `buf`, retrying short writes and EINTR.
pub fn write_all(fd: Fd, mut buf: &[u8]) -> SysResult<()> {
    while !buf.is_empty() {
        match write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e == super::Errno::INTR => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `pipe2(flags)`: returns (read end, write end).
pub fn pipe2(flags: u32) -> SysResult<(Fd, Fd)> {
    let mut fds = [0i32; 2];
    // SAFETY: the kernel writes two ints into fds.
    check(unsafe { syscall2(g::__NR_pipe2, fds.as_mut_ptr() as usize, flags as usize) })?;
    Ok((fds[0], fds[1]))
}

/// `eventfd2(initval, flags)`.
pub fn eventfd(initval: u32, flags: u32) -> SysResult<Fd> {
    // SAFETY: integer arguments only.
    check(unsafe { syscall2(g::__NR_eventfd2, initval as usize, flags as usize) }).map(|v| v as Fd)
}

/// `ppoll(fds, timeout_ns, NULL)`: `None` waits forever.
pub fn poll(fds: &mut [g::pollfd], timeout_ns: Option<u64>) -> SysResult<usize> {
    let ts;
    let tsp = match timeout_ns {
        Some(ns) => {
            ts = g::__kernel_timespec { tv_sec: (ns / 1_000_000_000) as i64, tv_nsec: (ns % 1_000_000_000) as i64 };
            &ts as *const _ as usize
        }
        None => 0,
    };
    // SAFETY: fds and ts outlive the call; the sigmask pointer is NULL.
    check(unsafe { syscall5(g::__NR_ppoll, fds.as_mut_ptr() as usize, fds.len(), tsp, 0, 8) })
}

/// `fstat(fd)`: returns (st_mode, st_size).
pub fn fstat_mode_size(fd: Fd) -> SysResult<(u32, u64)> {
    // SAFETY: an all-zero stat is a valid value of this plain C struct.
    let mut st: g::stat = unsafe { core::mem::zeroed() };
    // SAFETY: the kernel fills st.
    check(unsafe { syscall2(g::__NR_fstat, fd as usize, &mut st as *mut _ as usize) })?;
    Ok((st.st_mode as u32, st.st_size as u64))
}

/// `memfd_create(name, flags)`; `name` must end in NUL.
pub fn memfd_create(name: &[u8], flags: usize) -> SysResult<Fd> {
    // SAFETY: name is NUL-terminated and outlives the call.
    check(unsafe { syscall2(g::__NR_memfd_create, name.as_ptr() as usize, flags) }).map(|v| v as Fd)
}

/// `ftruncate(fd, len)`.
pub fn ftruncate(fd: Fd, len: u64) -> SysResult<()> {
    // SAFETY: integer arguments only.
    check(unsafe { syscall2(g::__NR_ftruncate, fd as usize, len as usize) }).map(|_| ())
}

/// `sendfile(out, in, NULL, count)`: copies from `input`'s offset to `out`.
pub fn sendfile(out: Fd, input: Fd, count: u64) -> SysResult<usize> {
    // SAFETY: integer arguments; a NULL offset uses input's file offset.
    check(unsafe { syscall4(g::__NR_sendfile, out as usize, input as usize, 0, count.min(1 << 30) as usize) })
}

/// `getdents64(fd, buf)`: fills `buf` with linux_dirent64 records; 0 at the end.
pub fn getdents64(fd: Fd, buf: &mut [u8]) -> SysResult<usize> {
    // SAFETY: the kernel writes at most buf.len() bytes.
    check(unsafe { syscall3(g::__NR_getdents64, fd as usize, buf.as_mut_ptr() as usize, buf.len()) })
}

/// Calls `each` with every entry of directory `dir` whose name is a decimal number (the fds of
/// /proc/PID/fd, the threads of /proc/PID/task), in the order getdents64 returns them.
pub fn each_numbered_entry(dir: Fd, mut each: impl FnMut(u64) -> SysResult<()>) -> SysResult<()> {
    let mut buf = [0u8; 2048];
    loop {
        let n = getdents64(dir, &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        let mut off = 0;
        // linux_dirent64: u64 ino, i64 off, u16 reclen, u8 type, then the NUL-terminated name.
        while off + 19 < n {
            let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
            if reclen < 20 || off + reclen > n {
                return Err(super::Errno::INVAL);
            }
            let name = &buf[off + 19..off + reclen];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if let Some(v) = crate::text::parse_radix(name, 10) {
                each(v)?;
            }
            off += reclen;
        }
    }
}

/// `lseek(fd, 0, SEEK_CUR)`: the description's offset.
pub fn offset(fd: Fd) -> SysResult<u64> {
    // SAFETY: integer arguments only.
    check(unsafe { syscall3(g::__NR_lseek, fd as usize, 0, g::SEEK_CUR as usize) }).map(|v| v as u64)
}
