//! The raw `syscall` instruction on x86_64: the only inline asm of the syscall layer.
//!
//! Arguments go in rdi, rsi, rdx, r10, r8, r9; the kernel clobbers rcx and r11.
//! The return value is either a result or `-errno` in the range -4095..=-1.

use core::arch::asm;

/// # Safety
/// The caller must pass arguments that are valid for syscall `nr`.
#[inline]
pub unsafe fn syscall0(nr: u32) -> isize {
    let ret: isize;
    // SAFETY: the caller vouches for the syscall; the asm clobbers only what the ABI says.
    unsafe { asm!("syscall", inlateout("rax") nr as isize => ret, lateout("rcx") _, lateout("r11") _, options(nostack)) };
    ret
}

/// # Safety
/// The caller must pass arguments that are valid for syscall `nr`.
#[inline]
pub unsafe fn syscall1(nr: u32, a: usize) -> isize {
    let ret: isize;
    // SAFETY: as for syscall0.
    unsafe {
        asm!("syscall", inlateout("rax") nr as isize => ret, in("rdi") a,
             lateout("rcx") _, lateout("r11") _, options(nostack))
    };
    ret
}

/// # Safety
/// The caller must pass arguments that are valid for syscall `nr`.
#[inline]
pub unsafe fn syscall2(nr: u32, a: usize, b: usize) -> isize {
    let ret: isize;
    // SAFETY: as for syscall0.
    unsafe {
        asm!("syscall", inlateout("rax") nr as isize => ret, in("rdi") a, in("rsi") b,
             lateout("rcx") _, lateout("r11") _, options(nostack))
    };
    ret
}

/// # Safety
/// The caller must pass arguments that are valid for syscall `nr`.
#[inline]
pub unsafe fn syscall3(nr: u32, a: usize, b: usize, c: usize) -> isize {
    let ret: isize;
    // SAFETY: as for syscall0.
    unsafe {
        asm!("syscall", inlateout("rax") nr as isize => ret, in("rdi") a, in("rsi") b, in("rdx") c,
             lateout("rcx") _, lateout("r11") _, options(nostack))
    };
    ret
}

/// # Safety
/// The caller must pass arguments that are valid for syscall `nr`.
#[inline]
pub unsafe fn syscall4(nr: u32, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret: isize;
    // SAFETY: as for syscall0.
    unsafe {
        asm!("syscall", inlateout("rax") nr as isize => ret, in("rdi") a, in("rsi") b, in("rdx") c,
             in("r10") d, lateout("rcx") _, lateout("r11") _, options(nostack))
    };
    ret
}

/// # Safety
/// The caller must pass arguments that are valid for syscall `nr`.
#[inline]
pub unsafe fn syscall5(nr: u32, a: usize, b: usize, c: usize, d: usize, e: usize) -> isize {
    let ret: isize;
    // SAFETY: as for syscall0.
    unsafe {
        asm!("syscall", inlateout("rax") nr as isize => ret, in("rdi") a, in("rsi") b, in("rdx") c,
             in("r10") d, in("r8") e, lateout("rcx") _, lateout("r11") _, options(nostack))
    };
    ret
}

/// # Safety
/// The caller must pass arguments that are valid for syscall `nr`.
#[inline]
pub unsafe fn syscall6(nr: u32, a: usize, b: usize, c: usize, d: usize, e: usize, f: usize) -> isize {
    let ret: isize;
    // SAFETY: as for syscall0.
    unsafe {
        asm!("syscall", inlateout("rax") nr as isize => ret, in("rdi") a, in("rsi") b, in("rdx") c,
             in("r10") d, in("r8") e, in("r9") f, lateout("rcx") _, lateout("r11") _, options(nostack))
    };
    ret
}

/// `fork` by `clone(SIGCHLD)`: the child returns 0 on a copy of the caller's stack.
///
/// # Safety
/// The child shares nothing with the parent but copies; the caller must not hold locks.
#[inline]
pub unsafe fn fork_raw() -> isize {
    // SAFETY: clone without CLONE_VM duplicates the address space, so the child may keep using
    // the stack it returns on.
    unsafe {
        syscall5(linux_raw_sys::general::__NR_clone, linux_raw_sys::general::SIGCHLD as usize, 0, 0, 0, 0)
    }
}
