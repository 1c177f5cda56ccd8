//! A task's fd space: planned slots, free numbers, and the service range where the restorer
//! keeps its own fds (error channel, sync fd, sockets, held files).
//!
//! Invariant: a planned slot is, at any moment, empty, holding its receiving socket, or holding
//! its final file. Every fd the restorer creates is placed, moved to the service range, or closed
//! before the next call that could return that number again.

use crate::plan::Target;
use crate::sys::{fd, Errno, Fd};
use linux_raw_sys::general as g;

/// Hands out service numbers: above the highest planned or kept fd while the limit allows, then
/// unplanned gaps from the top down. One number, `scratch`, is reserved and kept free: it is the
/// room a received batch or a fresh pipe may need while its slots are still being vacated.
pub struct Slots<'p> {
    planned: &'p [Target],
    keep: &'p [u32],
    limit: u32,
    next_high: u32,
    next_low: u32,
    /// Numbers that hold fds still to be adopted; never handed out.
    avoid: [i32; 2],
    /// Inherited fds' numbers (sorted): never handed out either.
    inherited: &'p [u32],
    /// A live process's own fds (sorted; see `preserve`): never handed out.
    existing: &'p [u32],
    /// Placeholders in the unplanned holes below the highest planned slot (see `fill_holes`).
    fillers: heapless::Vec<u32, MAX_FILLERS>,
}

/// The most holes `fill_holes` fills; a plan with more leaves them (correct, just more moves).
pub const MAX_FILLERS: usize = 64;

impl<'p> Slots<'p> {
    /// `planned` sorted by fd, `keep` sorted; `limit` is RLIMIT_NOFILE's soft value.
    pub fn new(planned: &'p [Target], keep: &'p [u32], limit: u32, avoid: [i32; 2], inherited: &'p [u32], existing: &'p [u32]) -> Slots<'p> {
        let top_planned = planned.last().map_or(0, |t| t.fd + 1);
        let top_keep = keep.last().map_or(0, |k| k + 1);
        let start = top_planned.max(top_keep).max(3);
        let start = start.max(inherited.last().map_or(0, |f| f + 1));
        Slots { planned, keep, limit, next_high: start, next_low: start.min(limit), avoid, inherited, existing, fillers: heapless::Vec::new() }
    }

    pub fn is_planned(&self, n: u32) -> bool {
        self.planned.binary_search_by_key(&n, |t| t.fd).is_ok()
    }

    fn usable(&self, n: u32) -> bool {
        !self.keep.contains(&n)
            && !self.avoid.contains(&(n as i32))
            && self.inherited.binary_search(&n).is_err()
            && self.existing.binary_search(&n).is_err()
            && !self.fillers.contains(&n)
    }

    /// The next service number, or None when none is left below the limit.
    pub fn take(&mut self) -> Option<Fd> {
        while self.next_high < self.limit {
            let n = self.next_high;
            self.next_high += 1;
            if self.usable(n) {
                return Some(n as Fd);
            }
        }
        while self.next_low > 0 {
            self.next_low -= 1;
            let n = self.next_low;
            if !self.is_planned(n) && self.usable(n) {
                return Some(n as Fd);
            }
        }
        None
    }

    /// Puts a copy of `base` in every free unplanned number below the highest planned slot, so
    /// that the kernel's lowest-free-number rule lands each new fd (a socket, an open, a
    /// received file) in the lowest empty planned slot, which in ascending restores is its own:
    /// no move needed. Skipped when there are more than MAX_FILLERS such numbers, or more than
    /// `budget` (the numbers the restore can spare under its limit).
    pub fn fill_holes(&mut self, base: Fd, budget: usize) {
        let top = self.planned.last().map_or(0, |t| t.fd + 1);
        let holes = (top as usize).saturating_sub(self.planned.len());
        if base < 0 || holes > MAX_FILLERS || holes > budget {
            return;
        }
        let mut next_planned = 0;
        for n in 0..top {
            while next_planned < self.planned.len() && self.planned[next_planned].fd < n {
                next_planned += 1;
            }
            if next_planned < self.planned.len() && self.planned[next_planned].fd == n {
                continue;
            }
            // The lowest free number from n: n itself when it is a hole.
            match fd::fcntl(base, g::F_DUPFD_CLOEXEC, n as usize) {
                Ok(got) if got == n as usize => {
                    let _ = self.fillers.push(n);
                }
                Ok(got) => {
                    let _ = fd::close(got as Fd);
                }
                Err(_) => return,
            }
        }
    }

    /// Closes the placeholders of `fill_holes`.
    pub fn drop_fillers(&mut self) {
        for &f in self.fillers.iter() {
            let _ = fd::close(f as Fd);
        }
        self.fillers.clear();
    }

    /// Stops avoiding a number once its fd has been adopted.
    pub fn adopted(&mut self, original: Fd) {
        for a in self.avoid.iter_mut() {
            if *a == original {
                *a = -1;
            }
        }
    }
}

/// Moves `fd` to `to` with FD_CLOEXEC, closing the old number (unless it already is `to`).
pub fn move_to(fd: Fd, to: Fd) -> Result<Fd, Errno> {
    if fd != to {
        fd::dup3(fd, to, g::O_CLOEXEC)?;
        fd::close(fd)?;
    } else {
        fd::set_cloexec(fd, true)?;
    }
    Ok(to)
}

/// One fd to place: from `src` to `dst`, with FD_CLOEXEC as `cloexec`.
#[derive(Clone, Copy, Default)]
pub struct Move {
    pub src: Fd,
    pub dst: Fd,
    pub cloexec: bool,
    /// Whether `src` already has FD_CLOEXEC (so an in-place fd needs no fcntl when it matches).
    pub src_cloexec: bool,
    pub done: bool,
    on_path: bool,
}

impl Move {
    pub fn new(src: Fd, dst: Fd, cloexec: bool, src_cloexec: bool) -> Move {
        Move { src, dst, cloexec, src_cloexec, done: false, on_path: false }
    }
}

/// At most this many moves at once: one received batch.
pub const MAX_MOVES: usize = 253;

/// Places every move's fd in its slot, as if all happened at once: a source may sit in another
/// move's destination (a chain: vacate it first) or moves may form a cycle (park one source on
/// the lowest free number, which cannot be a destination that is still occupied).
///
/// The first move's destination must be free or hold something that may be replaced (the
/// batch's own socket): placing it first frees a number for any cycle later.
/// On failure returns the index of the move that failed.
pub fn parallel_move(moves: &mut [Move]) -> Result<(), (usize, Errno)> {
    // One move (every fd of the seed's form) has no chain or cycle: skip the tables below.
    if let [m] = moves {
        return place(m, true).map_err(|e| (0, e));
    }
    // A batch taken in slot order lands in its slots: only the first move (the last fd, over
    // the socket) goes anywhere, and no other move's source can sit in its way. No tables.
    if moves.get(1..).is_some_and(|rest| rest.iter().all(|m| m.src == m.dst)) {
        for (i, m) in moves.iter_mut().enumerate() {
            place(m, true).map_err(|e| (i, e))?;
        }
        return Ok(());
    }
    let k = moves.len();
    debug_assert!(k <= MAX_MOVES);
    // Tables of the moves' own size only (a batch of two must not clear room for 253).
    let mut by_src: heapless::Vec<(i32, u16), MAX_MOVES> = moves.iter().enumerate().map(|(i, m)| (m.src, i as u16)).collect();
    crate::sort::sort_by_key(&mut by_src, |p| p.0);
    // Sources parked during cycle breaks; looked up before by_src.
    let mut parked: heapless::Vec<(i32, u16), MAX_MOVES> = heapless::Vec::new();
    let mut path: heapless::Vec<u16, MAX_MOVES> = heapless::Vec::new();
    for start in 0..k {
        if moves[start].done {
            continue;
        }
        // Pushes cannot overflow: each move joins a path (or is parked) at most once.
        let _ = path.push(start as u16);
        moves[start].on_path = true;
        loop {
            let cur = path[path.len() - 1] as usize;
            let dst = moves[cur].dst;
            let occupant = parked
                .iter()
                .chain(by_src.binary_search_by_key(&dst, |p| p.0).ok().map(|i| &by_src[i]))
                .map(|p| p.1 as usize)
                .find(|&j| j != cur && !moves[j].done && moves[j].src == dst);
            match occupant {
                None => break,
                Some(j) if moves[j].on_path => {
                    let parked_at = fd::fcntl(moves[j].src, g::F_DUPFD_CLOEXEC, 0).map_err(|e| (j, e))? as Fd;
                    fd::close(moves[j].src).map_err(|e| (j, e))?;
                    moves[j].src = parked_at;
                    moves[j].src_cloexec = true;
                    let _ = parked.push((parked_at, j as u16));
                    break;
                }
                Some(j) => {
                    moves[j].on_path = true;
                    let _ = path.push(j as u16);
                }
            }
        }
        // From the chain's free end back: each move's source is the destination of the move
        // placed right after it, whose dup3 replaces it, so only the chain's first source (and
        // a parked one) needs a close: a close saved per link (received batches land on the
        // lowest free numbers, which are other slots of theirs: chains of dozens).
        while let Some(i) = path.pop() {
            let i = i as usize;
            let replaced = path.last().is_some_and(|&next| moves[next as usize].dst == moves[i].src);
            place(&mut moves[i], !replaced).map_err(|e| (i, e))?;
        }
    }
    Ok(())
}

/// Carries out one move whose destination is free (or its own source, or replaceable); the
/// source is closed unless `close_src` is false (the next move's dup3 replaces it).
fn place(m: &mut Move, close_src: bool) -> Result<(), Errno> {
    if m.src == m.dst {
        if m.cloexec != m.src_cloexec {
            fd::set_cloexec(m.dst, m.cloexec)?;
        }
    } else {
        fd::dup3(m.src, m.dst, if m.cloexec { g::O_CLOEXEC } else { 0 })?;
        if close_src {
            fd::close(m.src)?;
        }
        m.src = m.dst;
    }
    m.done = true;
    m.on_path = false;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_null() -> Fd {
        fd::open(b"/dev/null\0", 0, 0).unwrap()
    }

    /// Builds real fds, runs the move, and asks the kernel (F_GETFD, kcmp by dev/ino via fstat
    /// is not enough: use a pipe per move so each source is distinguishable by its inode).
    #[test]
    fn swaps_chains_and_cycles() {
        // Sources: pipes' read ends, so identity is checkable through fstat's inode.
        let base = 600;
        let mut moves = Vec::new();
        let mut inos = Vec::new();
        // Cycle 600<->601, chain 602->603->604 (604 free), in place 605.
        let layout = [(600, 601), (601, 600), (602, 603), (603, 604), (605, 605)];
        for &(src, _) in &layout {
            let (r, w) = fd::pipe2(g::O_CLOEXEC).unwrap();
            fd::close(w).unwrap();
            fd::dup3(r, src, g::O_CLOEXEC).unwrap();
            fd::close(r).unwrap();
            inos.push(ino(src));
        }
        for &(src, dst) in &layout {
            moves.push(Move::new(src, dst, dst % 2 == 0, true));
        }
        let _ = base;
        parallel_move(&mut moves).unwrap();
        for (i, &(_, dst)) in layout.iter().enumerate() {
            assert_eq!(ino(dst), inos[i], "move {i} landed wrong");
            let flags = fd::fcntl(dst, g::F_GETFD, 0).unwrap();
            assert_eq!(flags & 1 == 1, dst % 2 == 0, "cloexec of {dst}");
        }
        assert!(fd::fcntl(602, g::F_GETFD, 0).is_err(), "602 must be vacated");
        for &(_, dst) in &layout {
            fd::close(dst).unwrap();
        }
        let _ = open_null;
    }

    /// A batch taken in slot order: every fd in its slot but the last, which goes over the
    /// socket (replaced) and is closed where it landed; in-place fds get their FD_CLOEXEC.
    #[test]
    fn a_batch_in_place_moves_only_its_last_fd() {
        let mut inos = Vec::new();
        for f in 800..806 {
            let (r, w) = fd::pipe2(g::O_CLOEXEC).unwrap();
            fd::close(w).unwrap();
            fd::dup3(r, f, g::O_CLOEXEC).unwrap();
            fd::close(r).unwrap();
            inos.push(ino(f));
        }
        // 800 plays the socket; the message's fds are 801..=805, the last for 800.
        let mut moves = vec![Move::new(805, 800, false, true)];
        moves.extend((801..805).map(|f| Move::new(f, f, f % 2 == 0, true)));
        parallel_move(&mut moves).unwrap();
        assert_eq!(ino(800), inos[5], "the last fd goes over the socket");
        assert!(fd::fcntl(805, g::F_GETFD, 0).is_err(), "and is closed where it landed");
        for f in 800..805 {
            assert_eq!(ino(f) == inos[(f - 800) as usize], f != 800);
            let flags = fd::fcntl(f, g::F_GETFD, 0).unwrap();
            assert_eq!(flags & 1 == 1, f != 800 && f % 2 == 0, "cloexec of {f}");
            fd::close(f).unwrap();
        }
    }

    /// A received batch's shape: sources on the lowest numbers, destinations scattered over
    /// them and above (long chains, cycles, fds in place). Every destination holds its source's
    /// file, and every source that is no destination is closed: a close skipped in a chain
    /// must be one that the next move's dup3 replaced.
    #[test]
    fn chains_leave_nothing_behind() {
        let mut x: u64 = 77;
        for round in 0..20 {
            let n = 1 + (round * 7) % 60;
            let srcs: Vec<Fd> = (0..n as Fd).map(|i| 700 + i).collect();
            let mut dsts: Vec<Fd> = (0..(n + n / 2) as Fd).map(|i| 700 + i).collect();
            for i in (1..dsts.len()).rev() {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                dsts.swap(i, (x >> 33) as usize % (i + 1));
            }
            dsts.truncate(n);
            let mut inos = Vec::new();
            for &src in &srcs {
                let (r, w) = fd::pipe2(g::O_CLOEXEC).unwrap();
                fd::close(w).unwrap();
                fd::dup3(r, src, g::O_CLOEXEC).unwrap();
                fd::close(r).unwrap();
                inos.push(ino(src));
            }
            // The first destination must be free or replaceable: put a free one first.
            let mut moves: Vec<Move> = srcs.iter().zip(&dsts).map(|(&s, &d)| Move::new(s, d, d % 3 == 0, true)).collect();
            if let Some(i) = moves.iter().position(|m| !srcs.contains(&m.dst) || m.src == m.dst) {
                moves.swap(0, i);
                inos.swap(0, i);
            }
            if srcs.contains(&moves[0].dst) && moves[0].src != moves[0].dst {
                continue;
            }
            parallel_move(&mut moves).unwrap();
            for (i, m) in moves.iter().enumerate() {
                assert_eq!(ino(m.dst), inos[i], "round {round}: move {i} to {} landed wrong", m.dst);
                assert_eq!(fd::fcntl(m.dst, g::F_GETFD, 0).unwrap() & 1 == 1, m.dst % 3 == 0, "round {round}: FD_CLOEXEC of {}", m.dst);
            }
            for &src in srcs.iter().filter(|s| !dsts.contains(s)) {
                assert!(fd::fcntl(src, g::F_GETFD, 0).is_err(), "round {round}: {src} left open");
            }
            for &d in &dsts {
                fd::close(d).unwrap();
            }
        }
    }

    fn ino(f: Fd) -> u64 {
        // SAFETY: an all-zero stat is valid; the kernel fills it.
        let mut st: g::stat = unsafe { core::mem::zeroed() };
        // SAFETY: as above.
        let r = unsafe { crate::sys::arch::syscall2(g::__NR_fstat, f as usize, &mut st as *mut _ as usize) };
        assert!(r >= 0);
        st.st_ino as u64
    }
}
