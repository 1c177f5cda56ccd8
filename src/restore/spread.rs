//! Spread openers: under `run`, where relays are not used, a long run of objects that the same
//! tables all hold (the files a parent shares with its children, the usual case for restores
//! and live upgrades) is cut into slot-contiguous chunks, one per holder, and each holder opens
//! its chunk and sends it to the others. The opens, the costliest part of sharing, then run on
//! every core instead of in one opener.
//!
//! Like a relay, every task is a fork of `run` with the same credentials, namespaces, working
//! directory and inherited table, so whichever holder opens an object opens what the plan's
//! rule would. Objects whose opener the plan names (`opener=`), inherited fds, reopened pipes
//! and their reopens keep their opener, and so does what only one table holds.
//!
//! A chunk's files land at the lowest free numbers of its opener, which are the slots of the
//! chunks below: the lowest chunk's opener opens in place, the others pay one `dup3` per file.
//! Receivers take their batches lowest slot first (`Session::slot_order`), so that each batch
//! lands in its own slots with no move at all (in arrival order, most would move).
//!
//! Decided here from the plan alone, before any fork, like the rest of the roles.

use super::roles::MAX_BATCH;
use crate::arena::{bytes_for, Arena};
use crate::plan::{Plan, KIND_INHERIT, KIND_REOPEN};
use crate::sys::Errno;

/// In full batches, no chunk smaller than this: each one more gives every other holder one
/// more batch (a receiving socket's life), and below about half a full batch the opens it
/// moves off one core save less than that costs. With 32, 300 files x 5 tasks (chunks of 60)
/// took 2.0 ms and 17% more CPU, against 1.7 ms unspread; 100 x 2 (chunks of 50) gained
/// nothing.
pub const MIN_CHUNK: usize = 128;

/// The least chunk in any form. In the seed's form a chunk adds no socket (each received file
/// has its own whoever sends it), so smaller chunks still pay: 100 files x 2 tasks took 9%
/// less time in chunks of 50, 200 x 2 13% less (series of 21).
const SMALLEST_CHUNK: usize = 16;

/// The least chunk for batches of `batch`: half a batch, as above (MIN_CHUNK for full batches
/// of 253), and never under SMALLEST_CHUNK.
pub fn min_chunk(batch: u16) -> usize {
    (MIN_CHUNK * batch as usize).div_ceil(MAX_BATCH as usize).max(SMALLEST_CHUNK)
}

/// A holder set's fingerprint term for task index `t`: the sum over a set's tasks tells sets
/// apart. Two different sets with one sum would only share a chunking (each chunk's opener is
/// still a holder of every object it opens), never break the restore.
fn mix(t: usize) -> u64 {
    let x = (t as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^ (x >> 29)
}

/// The plan with spread openers for batches of `batch`, or None when no run of objects is long
/// enough to spread, the plan has fewer than two tables, or some task would receive from two
/// or more openers more batches than the `window` of sockets it binds before the barrier.
/// (Openers open as their sends need them, and a receiver binds its window in the order of its
/// openers: the higher chunks' openers would wait for credits that come only as the lower
/// chunks arrive, their opens no longer at the same time as the others'. At 10,000 files x 5
/// tasks in batches of 64, spreading was no faster; in batches of 16 or 1, 10 to 13% slower.
/// With one opener per receiver, as with two tasks, nothing waits so: 10,000 x 2 in the seed's
/// form took 8.5% less time.) Tasks, targets and the text are the plan's own; the objects are
/// a copy in memory the forks share.
pub fn spread<'p>(plan: &Plan<'p>, batch: u16, window: u32) -> Result<Option<Plan<'p>>, Errno> {
    let (nt, no, nf) = (plan.tasks.len(), plan.objects.len(), plan.file_count());
    let min = min_chunk(batch);
    if nt < 2 || no < 2 * min {
        return Ok(None);
    }
    let mut scratch = Arena::map(bytes_for::<u16>(no) * 3 + bytes_for::<u64>(no) + bytes_for::<u32>(nf) + bytes_for::<u32>(nt) * 2)?;
    let last = scratch.take::<u16>(no);
    let holders = scratch.take::<u16>(no);
    let rank = scratch.take::<u16>(no);
    let set = scratch.take::<u64>(no);
    let last_file = scratch.take::<u32>(nf);
    let per_opener = scratch.take::<u32>(nt);
    let touched = scratch.take::<u32>(nt);
    // Each object's holders: how many tables, and which (their fingerprint).
    for t in 0..nt {
        for x in plan.task_targets(t) {
            let o = x.object as usize;
            if last[o] != t as u16 + 1 {
                last[o] = t as u16 + 1;
                holders[o] += 1;
                set[o] = set[o].wrapping_add(mix(t));
            }
        }
    }
    // A reopened pipe stays with its opener: the reopen goes through its /proc/self/fd.
    for o in plan.objects {
        if o.kind == KIND_REOPEN {
            holders[o.value as usize] = 0;
        }
    }
    let movable = |i: usize| {
        let o = &plan.objects[i];
        holders[i] >= 2 && o.explicit_opener == 0 && o.kind != KIND_INHERIT && o.kind != KIND_REOPEN
    };
    // Runs of consecutive movable objects with one holder set; chunk c of a run goes to the
    // run's c-th holder in task order (rank c).
    rank.fill(u16::MAX);
    let mut spreads = false;
    let mut a = 0;
    while a < no {
        if !movable(a) {
            a += 1;
            continue;
        }
        let mut b = a + 1;
        while b < no && movable(b) && holders[b] == holders[a] && set[b] == set[a] {
            b += 1;
        }
        let n = b - a;
        let chunks = (holders[a] as usize).min(n / min);
        if chunks >= 2 {
            spreads = true;
            for p in 0..n {
                rank[a + p] = (p * chunks / n) as u16;
            }
        }
        a = b;
    }
    let done = |scratch: Arena| {
        // SAFETY: nothing carved from the scratch arena outlives `spread`.
        unsafe { scratch.unmap() };
    };
    if !spreads {
        done(scratch);
        return Ok(None);
    }
    let mut arena = match Arena::map_for_forks(bytes_for::<crate::plan::Object>(no)) {
        Ok(a) => a,
        Err(e) => {
            done(scratch);
            return Err(e);
        }
    };
    let objects = arena.take::<crate::plan::Object>(no);
    objects.copy_from_slice(plan.objects);
    // The holder of each rank, in the same task order as above.
    last.fill(0);
    holders.fill(0);
    for t in 0..nt {
        for x in plan.task_targets(t) {
            let o = x.object as usize;
            if last[o] != t as u16 + 1 {
                last[o] = t as u16 + 1;
                if holders[o] == rank[o] {
                    objects[o].opener = t as u16;
                }
                holders[o] += 1;
            }
        }
    }
    let most = super::relay::count_roles(plan, batch, |o| objects[o].opener as usize, last_file, per_opener, touched).most_from_many;
    done(scratch);
    if most > window as u64 {
        // SAFETY: nothing carved from the copy's arena outlives this path.
        unsafe { arena.unmap() };
        return Ok(None);
    }
    // The copy's mapping lives as long as the process, like the plan's.
    Ok(Some(Plan { text: plan.text, tasks: plan.tasks, objects, targets: plan.targets, task_first: plan.task_first, task_index: plan.task_index }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::parse::load;
    use std::fmt::Write;

    /// Tasks 1..=`tasks`; then, per (count, holders) group, `count` regular files held by
    /// those tasks at the next fds (the same fd in every holder).
    fn text(tasks: u16, groups: &[(u32, &[u16])], extra: &str) -> String {
        let mut s = String::from("fdslot 1\n");
        for t in 1..=tasks {
            let _ = writeln!(s, "task {t}");
        }
        let (mut id, mut fd) = (0u32, 3u32);
        for &(count, holders) in groups {
            for _ in 0..count {
                id += 1;
                let _ = writeln!(s, "reg {id} /etc/hostname");
                for &h in holders {
                    let _ = writeln!(s, "  at {h}:{fd}");
                }
                fd += 1;
            }
        }
        s + extra
    }

    fn openers(text: &str, batch: u16) -> Option<Vec<u16>> {
        let plan = load(text.as_bytes()).unwrap_or_else(|e| panic!("line {}: {}", e.line, core::str::from_utf8(e.msg.peek()).unwrap()));
        let spread = spread(&plan, batch, 64).unwrap()?;
        // Openers as task ids.
        Some(spread.objects.iter().map(|o| spread.tasks[o.opener as usize].id).collect())
    }

    #[test]
    fn a_run_held_by_every_task_goes_to_each_in_order() {
        let got = openers(&text(5, &[(1000, &[1, 2, 3, 4, 5])], ""), 253).expect("spread");
        for (i, &o) in got.iter().enumerate() {
            assert_eq!(o, 1 + (i / 200) as u16, "object {}", i + 1);
        }
    }

    /// Each run of one holder set is cut on its own, by its own holders; a run shorter than
    /// two chunks keeps the plan's opener (the lowest task id), and so does what one task holds.
    #[test]
    fn runs_of_holder_sets_are_cut_apart() {
        let got = openers(&text(4, &[(300, &[1, 2, 3]), (600, &[2, 4]), (200, &[1, 2, 3, 4]), (300, &[3])], ""), 253).expect("spread");
        // 300 / 128: two chunks, to tasks 1 and 2.
        assert!(got[..150].iter().all(|&o| o == 1) && got[150..300].iter().all(|&o| o == 2), "{:?}", &got[..300]);
        assert!(got[300..600].iter().all(|&o| o == 2) && got[600..900].iter().all(|&o| o == 4));
        assert!(got[900..1100].iter().all(|&o| o == 1), "too short to spread: the lowest id opens");
        assert!(got[1100..].iter().all(|&o| o == 3));
    }

    /// `opener=` keeps its task and ends the run: what follows is a run of its own.
    #[test]
    fn a_named_opener_is_kept_and_cuts_the_run() {
        let mut t = text(2, &[(256, &[1, 2])], "");
        t += "reg 257 /etc/hostname opener=2\n  at 1:5000\n  at 2:5000\n";
        let got = openers(&t, 253).expect("spread");
        assert!(got[..128].iter().all(|&o| o == 1) && got[128..256].iter().all(|&o| o == 2), "{got:?}");
        assert_eq!(got[256], 2);
        let mut t = text(2, &[(255, &[1, 2])], "");
        t += "reg 256 /etc/hostname opener=2\n  at 1:5000\n  at 2:5000\n";
        t += "reg 257 /etc/hostname\n  at 1:5001\n  at 2:5001\n";
        assert_eq!(openers(&t, 253), None, "255 + 1: no run of 256");
    }

    /// Where a receiver would have more batches from two or more openers than its window binds
    /// before the barrier (the seed's form, small batches), or the plan is too small, nothing
    /// is spread.
    #[test]
    fn nothing_spread_beyond_the_window_or_below_two_chunks() {
        let t = text(5, &[(1000, &[1, 2, 3, 4, 5])], "");
        assert_eq!(openers(&t, 1), None);
        assert_eq!(openers(&t, 8), None, "4 chunks of 200 in batches of 8: 100 batches a task");
        assert!(openers(&t, 16).is_some(), "4 x 13 batches fit in 64");
        assert_eq!(openers(&text(3, &[(255, &[1, 2, 3])], ""), 253), None);
        assert_eq!(openers(&text(1, &[(1000, &[1])], ""), 253), None);
        // Two tasks: each receives from one opener only, whatever the batch.
        assert!(openers(&text(2, &[(1000, &[1, 2])], ""), 1).is_some());
    }

    /// A chunk is at least half a batch, and at least SMALLEST_CHUNK: full batches keep 128,
    /// the seed's form cuts runs of 32 and more.
    #[test]
    fn the_least_chunk_follows_the_batch() {
        assert_eq!((min_chunk(253), min_chunk(64), min_chunk(8), min_chunk(1)), (128, 33, 16, 16));
        let got = openers(&text(2, &[(100, &[1, 2])], ""), 1).expect("seed's form: 100 files in two chunks");
        assert!(got[..50].iter().all(|&o| o == 1) && got[50..].iter().all(|&o| o == 2), "{got:?}");
        assert_eq!(openers(&text(2, &[(100, &[1, 2])], ""), 253), None, "full batches: under two chunks of 128");
        assert_eq!(openers(&text(2, &[(31, &[1, 2])], ""), 1), None, "under two chunks of 16");
    }
}
