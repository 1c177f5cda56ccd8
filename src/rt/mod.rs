//! What libc would have given the executable: `_start`, self-relocation, `mem*`, the panic handler.
//!
//! Compiled only into the no-libc build (not into unit tests or `--features std`).

pub mod mem;
pub mod reloc;

use core::sync::atomic::{AtomicI32, Ordering};

/// Where a panic message goes: stderr until the restorer takes fd 2 away, then its error channel
/// (or nowhere, -1). An fd number, not an address, so it needs no relocation.
pub static PANIC_FD: AtomicI32 = AtomicI32::new(2);

core::arch::global_asm!(
    ".section .text._start,\"ax\",@progbits",
    ".globl _start",
    ".type _start,@function",
    "_start:",
    "    xor ebp, ebp",
    "    mov rdi, rsp",       // rdi = &argc, as the kernel laid out the stack
    "    and rsp, -16",
    "    call {entry}",
    "    ud2",
    entry = sym start_rust,
);

extern "C" {
    /// The front end's main, defined by the binary: returns the process's exit code.
    fn fdslot_main(argc: usize, argv: *const *const u8, envp: *const *const u8) -> i32;
}

/// Relocates the image, then runs the front end and exits with its code.
///
/// # Safety
/// Called once, from `_start`, with the initial stack pointer.
unsafe extern "C" fn start_rust(sp: *const usize) -> ! {
    // SAFETY: we are the first code to run; nothing has read a relocated static yet.
    unsafe { reloc::relocate_self() };
    // SAFETY: the kernel's initial stack is argc, argv[argc], NULL, envp..., NULL.
    let (argc, argv, envp) = unsafe {
        let argc = *sp;
        let argv = sp.add(1) as *const *const u8;
        (argc, argv, argv.add(argc + 1))
    };
    // SAFETY: argv and envp come from the kernel.
    let code = unsafe { fdslot_main(argc, argv, envp) };
    crate::sys::proc::exit(code)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    let fd = PANIC_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let _ = crate::sys::fd::write(fd, b"fdslot: internal error (panic)\n");
    }
    crate::sys::proc::exit(1)
}

/// Unwinding never happens (panic = "abort"), but core's objects still name this symbol.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
