//! Syscalls for looking at other processes: paths relative to a /proc directory fd, fstatat,
//! kcmp, pidfd_getfd and getsockopt. Used by `capture` and `verify`; never by the restore path.

use super::arch::*;
use super::errno::check;
use super::{Fd, SysResult};
use linux_raw_sys::general as g;

/// kcmp types (include/uapi/linux/kcmp.h; linux-raw-sys does not carry them).
pub const KCMP_FILE: u32 = 0;
pub const KCMP_FILES: u32 = 2;
/// FIONREAD (asm-generic/ioctls.h; not in the features fdslot enables).
pub const FIONREAD: u32 = 0x541b;

/// `openat(dir, path, flags)`; `path` must end in NUL.
pub fn openat(dir: Fd, path: &[u8], flags: u32) -> SysResult<Fd> {
    debug_assert!(path.last() == Some(&0));
    // SAFETY: path is NUL-terminated and outlives the call.
    check(unsafe { syscall4(g::__NR_openat, dir as isize as usize, path.as_ptr() as usize, flags as usize, 0) }).map(|v| v as Fd)
}

/// `readlinkat(dir, path, buf)`: the link's target, not NUL-terminated; `path` must end in NUL.
pub fn readlinkat(dir: Fd, path: &[u8], buf: &mut [u8]) -> SysResult<usize> {
    debug_assert!(path.last() == Some(&0));
    // SAFETY: path is NUL-terminated; the kernel writes at most buf.len() bytes.
    check(unsafe { syscall4(g::__NR_readlinkat, dir as isize as usize, path.as_ptr() as usize, buf.as_mut_ptr() as usize, buf.len()) })
}

/// What fstatat reports about one file, in the fields capture and verify compare.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct FileStat {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub nlink: u32,
    pub rdev: u64,
    pub size: u64,
}

/// `newfstatat(dir, path, flags)`; `path` must end in NUL. A /proc/PID/fd/N path follows the
/// magic link to the open file itself.
pub fn fstatat(dir: Fd, path: &[u8], flags: u32) -> SysResult<FileStat> {
    debug_assert!(path.last() == Some(&0));
    // SAFETY: an all-zero stat is a valid value of this plain C struct.
    let mut st: g::stat = unsafe { core::mem::zeroed() };
    // SAFETY: path is NUL-terminated; the kernel fills st.
    check(unsafe { syscall4(g::__NR_newfstatat, dir as isize as usize, path.as_ptr() as usize, &mut st as *mut _ as usize, flags as usize) })?;
    Ok(FileStat {
        dev: st.st_dev as u64,
        ino: st.st_ino as u64,
        mode: st.st_mode as u32,
        nlink: st.st_nlink as u32,
        rdev: st.st_rdev as u64,
        size: st.st_size as u64,
    })
}

/// `kcmp(pid1, pid2, type, idx1, idx2)`: 0 the same kernel object, 1 or 2 an order (less,
/// greater) that is stable until reboot, so it can sort.
pub fn kcmp(pid1: i32, pid2: i32, kind: u32, idx1: u32, idx2: u32) -> SysResult<u32> {
    // SAFETY: integer arguments only.
    check(unsafe { syscall5(g::__NR_kcmp, pid1 as usize, pid2 as usize, kind as usize, idx1 as usize, idx2 as usize) }).map(|v| v as u32)
}

/// `pidfd_getfd(pidfd, fd, 0)`: a new fd, in this process, for the same open file description.
pub fn pidfd_getfd(pidfd: Fd, fd: u32) -> SysResult<Fd> {
    // SAFETY: integer arguments only.
    check(unsafe { syscall3(g::__NR_pidfd_getfd, pidfd as usize, fd as usize, 0) }).map(|v| v as Fd)
}

/// `getsockopt(fd, SOL_SOCKET, opt)` for an int option.
pub fn socket_int(fd: Fd, opt: u32) -> SysResult<i32> {
    let mut v = 0i32;
    let mut len = 4u32;
    // SAFETY: v and len outlive the call; the kernel writes at most len bytes.
    check(unsafe {
        syscall5(g::__NR_getsockopt, fd as usize, linux_raw_sys::net::SOL_SOCKET as usize, opt as usize, &mut v as *mut i32 as usize, &mut len as *mut u32 as usize)
    })?;
    Ok(v)
}

/// `pread64(fd, buf, offset)`: reads without moving the file offset.
pub fn pread(fd: Fd, buf: &mut [u8], offset: u64) -> SysResult<usize> {
    // SAFETY: the kernel writes at most buf.len() bytes.
    check(unsafe { syscall4(g::__NR_pread64, fd as usize, buf.as_mut_ptr() as usize, buf.len(), offset as usize) })
}

/// `ioctl(fd, request, &int)` for requests that report one int (FIONREAD).
pub fn ioctl_int(fd: Fd, request: u32) -> SysResult<i32> {
    let mut v = 0i32;
    // SAFETY: the kernel writes one int into v.
    check(unsafe { syscall3(g::__NR_ioctl, fd as usize, request as usize, &mut v as *mut i32 as usize) })?;
    Ok(v)
}

/// `pidfd_open(pid)` then `pidfd_getfd(fd)`: this process's own fd for another's description.
pub fn steal_fd(pid: i32, fd: u32) -> SysResult<Fd> {
    let pidfd = super::proc::pidfd_open(pid)?;
    let r = pidfd_getfd(pidfd, fd);
    let _ = super::fd::close(pidfd);
    r
}
