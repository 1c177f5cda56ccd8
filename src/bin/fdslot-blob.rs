//! Links `fdslot.blob`: the library's restore path behind the blob entry (`fdslot_blob_entry`,
//! in `fdslot::rt`). `make blob` turns this ELF into the flat image.
#![no_std]
#![no_main]

use fdslot as _;

/// The executable's main, which the blob never calls: the runtime's `_start` names it.
#[no_mangle]
pub extern "C" fn fdslot_main(_argc: usize, _argv: *const *const u8, _envp: *const *const u8) -> i32 {
    1
}
