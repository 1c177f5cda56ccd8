//! One anonymous mapping, sized from a validated plan's counts, carved into typed arrays.
//!
//! Everything the restorer keeps per task, object or target lives here: nothing else grows
//! with the plan. The element types are plain integer structs, valid when zero-filled.

use crate::sys::{mem, Errno};

/// Marks types whose all-zero bit pattern is a valid value (integers and structs of them).
///
/// # Safety
/// Implementors must be valid when zero-filled and have no drop glue.
pub unsafe trait Zeroable: Copy {}

// SAFETY: integers are valid when zero.
unsafe impl Zeroable for u8 {}
// SAFETY: as above.
unsafe impl Zeroable for u16 {}
// SAFETY: as above.
unsafe impl Zeroable for u32 {}
// SAFETY: as above.
unsafe impl Zeroable for i32 {}
// SAFETY: as above.
unsafe impl Zeroable for u64 {}
// SAFETY: as above.
unsafe impl Zeroable for usize {}

use core::sync::atomic::{AtomicUsize, Ordering};

/// The mappings made since the last `release_all`, so that an embedder (the blob) can give
/// every byte back before it returns to its host. Addresses stored at run time only: nothing
/// here needs relocating.
const MAX_MAPPINGS: usize = 16;
static MAPPINGS: [(AtomicUsize, AtomicUsize); MAX_MAPPINGS] = [const { (AtomicUsize::new(0), AtomicUsize::new(0)) }; MAX_MAPPINGS];

fn remember(base: *mut u8, size: usize) {
    for (b, s) in MAPPINGS.iter() {
        if b.compare_exchange(0, base as usize, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            s.store(size, Ordering::Release);
            return;
        }
    }
    // More live mappings than slots: the process keeps this one until it exits or execs.
}

/// Unmaps every arena mapped since the last call. Every slice carved from them dies here.
///
/// # Safety
/// No reference into any arena may be used afterwards.
pub unsafe fn release_all() {
    for (b, s) in MAPPINGS.iter() {
        let base = b.swap(0, Ordering::AcqRel);
        if base != 0 {
            // SAFETY: the caller guarantees nothing uses the arenas any more.
            let _ = unsafe { mem::unmap(base as *const u8, s.load(Ordering::Acquire)) };
        }
    }
}

/// The size from which `map_for_forks` maps in huge pages (one of them).
pub const HUGE_FROM: usize = 2 << 20;
const HUGE_PAGE: usize = 2 << 20;

/// A bump allocator over one zero-filled anonymous mapping.
pub struct Arena {
    base: *mut u8,
    size: usize,
    used: usize,
}

/// Bytes needed for `n` elements of `T`, aligned for the next array.
pub const fn bytes_for<T>(n: usize) -> usize {
    (n * core::mem::size_of::<T>() + 15) & !15
}

impl Arena {
    /// Maps `size` bytes (rounded up to a page), private to this process and its forks.
    pub fn map(size: usize) -> Result<Arena, Errno> {
        let size = (size.max(1) + 4095) & !4095;
        let base = mem::map_anon(size, false)?;
        remember(base, size);
        Ok(Arena { base, size, used: 0 })
    }

    /// Maps `size` bytes for what is written once before `run` forks and only read after (the
    /// plan, its text, its roles), so that the forks read it at the least cost:
    /// - below `HUGE_FROM`, MAP_SHARED: fork copies no page tables for it (a private mapping
    ///   costs every fork a walk of its pages), and each fork faults in what it reads;
    /// - from `HUGE_FROM`, private, rounded up to whole huge pages and aligned to them, in
    ///   transparent huge pages where the system allows them (MADV_HUGEPAGE; shared memory
    ///   gets none here): fork copies one entry per 2 MiB and the forks fault in nothing. A
    ///   fork that reads scattered objects of a 3 MiB array faulted 11 times in small shared
    ///   pages, each fault mapping 16 pages around it. Where huge pages are off, fork copies
    ///   small pages' entries instead, which costs about what the faults did (measured: the
    ///   same time).
    ///
    /// Nothing writes it after the forks, so its pages stay shared either way.
    pub fn map_for_forks(size: usize) -> Result<Arena, Errno> {
        let size = (size.max(1) + 4095) & !4095;
        if size < HUGE_FROM {
            let base = mem::map_anon(size, true)?;
            remember(base, size);
            return Ok(Arena { base, size, used: 0 });
        }
        // Whole huge pages at a huge-page boundary: map one more, give back the ends.
        let size = (size + HUGE_PAGE - 1) & !(HUGE_PAGE - 1);
        let raw = mem::map_anon(size + HUGE_PAGE, false)?;
        let base = ((raw as usize + HUGE_PAGE - 1) & !(HUGE_PAGE - 1)) as *mut u8;
        let (head, tail) = (base as usize - raw as usize, HUGE_PAGE - (base as usize - raw as usize));
        // SAFETY: the ends are ours, fresh and unused; nothing points into them.
        unsafe {
            if head > 0 {
                let _ = mem::unmap(raw, head);
            }
            if tail > 0 {
                let _ = mem::unmap(base.add(size), tail);
            }
        }
        // SAFETY: our fresh mapping; the advice changes the page size, not the contents. A
        // refusal (no THP in this kernel) leaves small pages, which work as well.
        let _ = unsafe { mem::advise(base, size, linux_raw_sys::general::MADV_HUGEPAGE) };
        remember(base, size);
        Ok(Arena { base, size, used: 0 })
    }

    /// Gives the mapping back (and forgets it, for `release_all`).
    ///
    /// # Safety
    /// Nothing carved from this arena may be used afterwards.
    pub unsafe fn unmap(self) {
        for (b, s) in MAPPINGS.iter() {
            if b.compare_exchange(self.base as usize, 0, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                s.store(0, Ordering::Release);
                break;
            }
        }
        // SAFETY: the caller guarantees nothing uses the arena any more.
        let _ = unsafe { mem::unmap(self.base, self.size) };
    }

    /// Carves a zeroed array of `n` elements. The caller sized the arena with `bytes_for`, so
    /// running out is a bug in that sizing; it panics rather than overrun.
    pub fn take<'a, T: Zeroable>(&mut self, n: usize) -> &'a mut [T] {
        let need = bytes_for::<T>(n);
        assert!(self.used + need <= self.size, "arena sized too small");
        // SAFETY: the range is inside our mapping, 16-aligned, zero-filled (valid for T), and never
        // handed out twice; the mapping lives until the process ends or execs.
        let s = unsafe { core::slice::from_raw_parts_mut(self.base.add(self.used) as *mut T, n) };
        self.used += need;
        s
    }
}
