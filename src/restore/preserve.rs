//! A live process's own fds while its table is rebuilt in place (the blob under `inject`).
//!
//! Before anything changes, the fds already open are listed. Those in planned slots are
//! parked on service numbers (same description, their FD_CLOEXEC remembered); the others stay
//! where they are and are avoided. Then either:
//! - rollback (this task or any other failed): every fd the restore made is closed and the
//!   parked ones go back to their numbers, so the table is what it was;
//! - commit (the whole group is done): the parked ones are closed, and so are the others
//!   unless the caller keeps them (`keep`, or every unplanned fd with `keep_others`).
//!
//! What cannot be undone: closing a parked fd's number drops the process's POSIX (fcntl)
//! record locks on that file, as any close does; files the plan creates or truncates stay so.

use super::slots::Slots;
use crate::arena::{bytes_for, Arena};
use crate::plan::Target;
use crate::sys::{fd, Errno, Fd};
use linux_raw_sys::general as g;

/// One fd moved out of a planned slot.
#[derive(Clone, Copy, Default)]
struct Parked {
    from: u32,
    to: u32,
    cloexec: bool,
}

// SAFETY: integers and a bool, all valid when zero; no drop glue.
unsafe impl crate::arena::Zeroable for Parked {}

/// The fds a process had before the restore, and where the displaced ones wait.
pub struct Preserved<'a> {
    /// Sorted; without the restorer's own fds.
    pub existing: &'a [u32],
    parked: &'a mut [Parked],
    nparked: usize,
    /// Room for the sorted list of fds a rollback spares.
    spare: &'a mut [u32],
}

/// Fds probed per poll(2) when /proc is not mounted.
const PROBE_CHUNK: usize = 128;

impl<'a> Preserved<'a> {
    /// Lists the open fds (without `own`), from /proc/self/fd, or where /proc is not mounted by
    /// probing every number below `limit` with poll(2) (POLLNVAL marks a closed one).
    pub fn scan(arena: &'a mut Arena, limit: u32, own: &[Fd], planned: &[Target]) -> Result<Preserved<'a>, Errno> {
        let cap = limit as usize + 1;
        let existing = arena.take::<u32>(cap);
        let mut n = 0usize;
        let mut push = |v: u64| {
            if own.contains(&(v as Fd)) {
                return Ok(());
            }
            if n == existing.len() {
                return Err(Errno::MFILE);
            }
            existing[n] = v as u32;
            n += 1;
            Ok(())
        };
        match fd::open(b"/proc/self/fd\0", g::O_RDONLY | g::O_DIRECTORY | g::O_CLOEXEC, 0) {
            Ok(dir) => {
                let r = fd::each_numbered_entry(dir, |v| if v == dir as u64 { Ok(()) } else { push(v) });
                let _ = fd::close(dir);
                r?;
            }
            Err(_) => {
                let mut probe = [g::pollfd { fd: 0, events: 0, revents: 0 }; PROBE_CHUNK];
                let mut base = 0u32;
                while base < limit {
                    let k = (limit - base).min(PROBE_CHUNK as u32) as usize;
                    for (i, p) in probe[..k].iter_mut().enumerate() {
                        *p = g::pollfd { fd: (base + i as u32) as Fd, events: 0, revents: 0 };
                    }
                    fd::poll(&mut probe[..k], Some(0))?;
                    for p in &probe[..k] {
                        if p.revents as u32 & g::POLLNVAL == 0 {
                            push(p.fd as u64)?;
                        }
                    }
                    base += k as u32;
                }
            }
        }
        let existing = &mut existing[..n];
        crate::sort::sort_by_key(existing, |&v| v);
        let displaced = existing.iter().filter(|&&e| planned.binary_search_by_key(&e, |x| x.fd).is_ok()).count();
        let parked = arena.take::<Parked>(displaced);
        let spare = arena.take::<u32>(n + 8);
        Ok(Preserved { existing, parked, nparked: 0, spare })
    }

    /// Arena bytes `scan` needs under `limit` for a task with `planned` slots.
    pub fn arena_bytes(limit: u32, planned: usize) -> usize {
        2 * bytes_for::<u32>(limit as usize + 9) + bytes_for::<Parked>(planned)
    }

    /// Moves every existing fd that sits in a planned slot to a service number.
    pub fn park(&mut self, slots: &mut Slots<'_>) -> Result<(), (u32, &'static str, Errno)> {
        for &e in self.existing.iter() {
            if !slots.is_planned(e) {
                continue;
            }
            let cloexec = fd::fcntl(e as Fd, g::F_GETFD, 0).map_err(|er| (e, "fcntl F_GETFD", er))? & g::FD_CLOEXEC as usize != 0;
            let to = slots.take().ok_or((e, "no fd number left to park a displaced fd", Errno::MFILE))?;
            fd::dup3(e as Fd, to, g::O_CLOEXEC).map_err(|er| (e, "dup3 (park)", er))?;
            self.parked[self.nparked] = Parked { from: e, to: to as u32, cloexec };
            self.nparked += 1;
            let _ = fd::close(e as Fd);
        }
        Ok(())
    }

    /// Puts the table back as it was: closes every fd but the untouched originals, the parked
    /// ones and `own` (the barrier's, still needed to report), then returns the parked ones.
    pub fn rollback(&mut self, own: &[Fd], planned: &[Target]) {
        let mut n = 0;
        for &e in self.existing.iter() {
            if planned.binary_search_by_key(&e, |x| x.fd).is_err() {
                self.spare[n] = e;
                n += 1;
            }
        }
        for p in &self.parked[..self.nparked] {
            self.spare[n] = p.to;
            n += 1;
        }
        for &o in own.iter().filter(|&&o| o >= 0) {
            self.spare[n] = o as u32;
            n += 1;
        }
        let spare = &mut self.spare[..n];
        crate::sort::sort_by_key(spare, |&v| v);
        let _ = close_all_but(spare);
        for p in &self.parked[..self.nparked] {
            let _ = fd::dup3(p.to as Fd, p.from as Fd, if p.cloexec { g::O_CLOEXEC } else { 0 });
            let _ = fd::close(p.to as Fd);
        }
        self.nparked = 0;
    }

    /// The group is done: drops the parked fds and, unless kept, the other originals.
    pub fn commit(&mut self, keep: &[u32], keep_others: bool, planned: &[Target]) {
        for p in &self.parked[..self.nparked] {
            let _ = fd::close(p.to as Fd);
        }
        self.nparked = 0;
        if keep_others {
            return;
        }
        for &e in self.existing.iter() {
            if planned.binary_search_by_key(&e, |x| x.fd).is_err() && keep.binary_search(&e).is_err() {
                let _ = fd::close(e as Fd);
            }
        }
    }
}

/// Closes every open fd whose number is not in `spare` (sorted).
pub fn close_all_but(spare: &[u32]) -> Result<(), Errno> {
    let mut from = 0u32;
    for &s in spare.iter().chain(core::iter::once(&u32::MAX)) {
        if s > from {
            let last = if s == u32::MAX { u32::MAX } else { s - 1 };
            match fd::close_range(from, last) {
                Ok(()) => {}
                // Before Linux 5.9: one by one, up to the highest number that can be open.
                Err(e) if e == Errno::NOSYS => {
                    let top = last.min(crate::plan::NR_OPEN);
                    for f in from..=top {
                        let _ = fd::close(f as Fd);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        from = s.saturating_add(1);
    }
    Ok(())
}
