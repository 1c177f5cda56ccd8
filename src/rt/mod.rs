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

/// The blob's entry stack pointer while it runs, else 0: a panic inside the blob returns from
/// the entry (with -EFAULT) instead of ending the host process.
#[no_mangle]
pub static FDSLOT_BLOB_SP: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

// The blob's header (at offset 0 of the flat image, see linker/blob.ld), its entry, and the
// way back out of it on a panic. The entry keeps the callee-saved registers on its own frame,
// so a panic can unwind to it by resetting the stack pointer.
core::arch::global_asm!(
    ".section .text.blob_header,\"ax\",@progbits",
    ".globl fdslot_blob_header",
    "fdslot_blob_header:",
    "    .ascii \"FDSLOTB\\0\"",                       // magic
    "    .long 2",                                      // version
    "    .long fdslot_blob_entry - fdslot_blob_header", // entry offset
    "    .quad __blob_image_end - fdslot_blob_header",  // bytes in the file image
    "    .quad __blob_end - fdslot_blob_header",        // bytes of memory: the image, then zeroes
    "    .quad 40960",                                  // stack need: 29 KiB measured (tests/blob.rs), plus margin
    "    .quad __blob_exec_end - fdslot_blob_header",   // bytes from the start to make read+exec
    ".section .text.blob_entry,\"ax\",@progbits",
    ".globl fdslot_blob_entry",
    ".type fdslot_blob_entry,@function",
    "fdslot_blob_entry:",
    "    push rbp",
    "    push rbx",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    sub rsp, 8",
    "    mov [rip + FDSLOT_BLOB_SP], rsp",
    "    call {body}",
    "2:",
    "    mov qword ptr [rip + FDSLOT_BLOB_SP], 0",
    "    add rsp, 8",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop rbx",
    "    pop rbp",
    "    ret",
    ".globl fdslot_blob_unwind",
    "fdslot_blob_unwind:",
    "    mov rsp, [rip + FDSLOT_BLOB_SP]",
    "    mov rax, -14",
    "    jmp 2b",
    body = sym blob_body,
);

extern "C" {
    fn fdslot_blob_unwind() -> !;
}

/// The blob's body: relocate, then restore.
///
/// # Safety
/// Called only by `fdslot_blob_entry`, with the caller's `struct fdslot_args *`.
unsafe extern "C" fn blob_body(args: *const crate::blob::BlobArgs) -> i64 {
    // SAFETY: the image is writable (the loader maps it so), and nothing has read a relocated
    // static yet in this call.
    unsafe { reloc::relocate_blob() };
    if args.is_null() {
        return -(crate::report::EXIT_USAGE as i64);
    }
    // SAFETY: the caller vouches for the argument block.
    unsafe { crate::blob::blob_restore(&*args) }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    if FDSLOT_BLOB_SP.load(Ordering::Relaxed) != 0 {
        // SAFETY: we are inside the blob's entry, whose frame FDSLOT_BLOB_SP points at.
        unsafe { fdslot_blob_unwind() }
    }
    let fd = PANIC_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let _ = crate::sys::fd::write(fd, b"fdslot: internal error (panic)\n");
    }
    if crate::front::init::must_power_off() {
        // pid 1 must never exit: the kernel would panic.
        crate::front::init::power_off()
    }
    crate::sys::proc::exit(1)
}

/// Unwinding never happens (panic = "abort"), but core's objects still name this symbol.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
