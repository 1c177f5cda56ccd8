//! Self-relocation of a static PIE: applies R_X86_64_RELATIVE entries before anything reads a
//! static that holds an address.
//!
//! This code may not touch any such static itself (no `&str` statics, no function-pointer tables,
//! no slices of statics): it finds `_DYNAMIC` and the image base with rip-relative `lea`, which
//! needs no relocation, and uses only locals.

use core::arch::asm;

const DT_NULL: usize = 0;
const DT_RELA: usize = 7;
const DT_RELASZ: usize = 8;
const DT_RELAENT: usize = 9;
const R_X86_64_RELATIVE: u64 = 8;

/// Applies this image's own relative relocations.
///
/// # Safety
/// Must run once, first, while the image is writable where relocations point (norelro).
pub unsafe fn relocate_self() {
    let base: usize;
    let dynamic: *const usize;
    // SAFETY: rip-relative address computations; they read no memory.
    unsafe {
        asm!("lea {}, [rip + __ehdr_start]", out(reg) base, options(nostack, pure, nomem));
        asm!("lea {}, [rip + _DYNAMIC]", out(reg) dynamic, options(nostack, pure, nomem));
    }
    // SAFETY: base and _DYNAMIC describe this very image.
    unsafe { apply_relative(base, dynamic) };
}

/// Applies the blob's relative relocations: its base is its header, linked at address 0.
///
/// # Safety
/// As for `relocate_self`. Applying them twice is harmless: each writes base + addend.
pub unsafe fn relocate_blob() {
    let base: usize;
    let dynamic: *const usize;
    // SAFETY: rip-relative address computations; they read no memory.
    unsafe {
        asm!("lea {}, [rip + fdslot_blob_header]", out(reg) base, options(nostack, pure, nomem));
        asm!("lea {}, [rip + _DYNAMIC]", out(reg) dynamic, options(nostack, pure, nomem));
    }
    // SAFETY: base and _DYNAMIC describe this very image.
    unsafe { apply_relative(base, dynamic) };
}

/// Walks a `_DYNAMIC` array for DT_RELA/DT_RELASZ and applies every R_X86_64_RELATIVE entry
/// against `base`.
///
/// # Safety
/// `dynamic` must point to the dynamic section of the image loaded at `base`.
pub unsafe fn apply_relative(base: usize, dynamic: *const usize) {
    let (mut rela, mut size, mut entry) = (0usize, 0usize, 24usize);
    let mut d = dynamic;
    loop {
        // SAFETY: the dynamic array ends with DT_NULL.
        let (tag, val) = unsafe { (*d, *d.add(1)) };
        match tag {
            DT_NULL => break,
            DT_RELA => rela = val,
            DT_RELASZ => size = val,
            DT_RELAENT => entry = val,
            _ => {}
        }
        // SAFETY: still within the array.
        d = unsafe { d.add(2) };
    }
    if rela == 0 || entry == 0 {
        return;
    }
    let mut off = 0;
    while off < size {
        // SAFETY: each entry is (r_offset, r_info, r_addend) inside the image.
        unsafe {
            let r = (base + rela + off) as *const u64;
            if *r.add(1) & 0xffff_ffff == R_X86_64_RELATIVE {
                let at = (base + *r as usize) as *mut usize;
                at.write_volatile(base.wrapping_add(*r.add(2) as usize));
            }
        }
        off += entry;
    }
}
