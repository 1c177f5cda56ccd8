//! Memory syscalls: anonymous and file mappings, the only memory fdslot grows with a plan.

use super::arch::*;
use super::errno::check;
use super::{Fd, SysResult};
use linux_raw_sys::general as g;

/// `mmap(NULL, len, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)`, or MAP_SHARED when
/// `shared`: zero-filled memory.
pub fn map_anon(len: usize, shared: bool) -> SysResult<*mut u8> {
    let kind = if shared { g::MAP_SHARED } else { g::MAP_PRIVATE };
    // SAFETY: a fresh anonymous mapping aliases nothing.
    let r = unsafe {
        syscall6(g::__NR_mmap, 0, len, (g::PROT_READ | g::PROT_WRITE) as usize,
                 (kind | g::MAP_ANONYMOUS) as usize, usize::MAX, 0)
    };
    check(r).map(|p| p as *mut u8)
}

/// `mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0)`.
pub fn map_file(fd: Fd, len: usize) -> SysResult<*const u8> {
    // SAFETY: a fresh private read-only mapping aliases nothing writable.
    let r = unsafe { syscall6(g::__NR_mmap, 0, len, g::PROT_READ as usize, g::MAP_PRIVATE as usize, fd as usize, 0) };
    check(r).map(|p| p as *const u8)
}

/// `mremap(old, old_len, new_len, MREMAP_MAYMOVE)`.
///
/// # Safety
/// `old` must be a mapping of `old_len` bytes that no live reference points into.
pub unsafe fn remap(old: *mut u8, old_len: usize, new_len: usize) -> SysResult<*mut u8> {
    // SAFETY: the caller owns the mapping.
    check(unsafe { syscall4(g::__NR_mremap, old as usize, old_len, new_len, g::MREMAP_MAYMOVE as usize) }).map(|p| p as *mut u8)
}

/// `munmap(addr, len)`.
///
/// # Safety
/// No live reference may point into the range.
pub unsafe fn unmap(addr: *const u8, len: usize) -> SysResult<()> {
    // SAFETY: the caller guarantees nothing uses the range any more.
    check(unsafe { syscall2(g::__NR_munmap, addr as usize, len) }).map(|_| ())
}

/// `madvise(addr, len, advice)`.
///
/// # Safety
/// The range must be a mapping of ours; the advice must not change what its bytes read as.
pub unsafe fn advise(addr: *mut u8, len: usize, advice: u32) -> SysResult<()> {
    // SAFETY: the caller guarantees the advice keeps the contents.
    check(unsafe { syscall3(g::__NR_madvise, addr as usize, len, advice as usize) }).map(|_| ())
}
