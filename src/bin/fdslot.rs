//! The `fdslot` executable: a static PIE with no libc. `_start` and the runtime live in
//! `fdslot::rt`; this file only hands argv to the front end.
#![no_std]
#![no_main]

// Link the library's runtime (`_start`, mem*, panic handler).
use fdslot as _;

/// Called by `_start` after self-relocation.
///
/// # Safety
/// `argv` and `envp` are the kernel's arrays.
#[no_mangle]
pub unsafe extern "C" fn fdslot_main(argc: usize, argv: *const *const u8, envp: *const *const u8) -> i32 {
    // SAFETY: forwarded from _start.
    unsafe { fdslot::front::main(argc, argv, envp) }
}
