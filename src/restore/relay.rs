//! Relays: under `run`, when a plan's sharing is scattered over many tasks, so that the batched
//! form's batches would carry one or two files each (a receiving socket's whole life per file:
//! four opens' worth of syscalls, and among hundreds of processes the wakeups between them),
//! `run` adds relay processes after the plan's tasks and makes them the openers of the objects
//! that two or more tables hold. Each task then receives its shared
//! files in a few full batches, one run per relay, instead of one batch per (task, opener).
//!
//! A relay is a fork of `run`, as every task is before it restores: the same credentials,
//! namespaces, working directory and inherited table, so it opens each path as the task
//! would. It is a task with no slot of its own: it opens what it sends, holds it in its
//! service range, sends it like any opener, and exits. Objects whose opener the plan names
//! (`opener=`), inherited fds, reopened pipes and objects one table holds keep their opener.
//!
//! Everything is decided here from the plan alone, before any fork, like the rest of the roles.

use crate::arena::{bytes_for, Arena};
use crate::plan::{file_of, two_ended, Plan, Task, KIND_INHERIT, KIND_REOPEN};
use crate::sys::Errno;

/// The most relays `run` adds.
pub const MAX_RELAYS: usize = 64;

/// Numbers a relay needs besides the files it holds: its barrier fd, home, waker, spare,
/// directory, what an open holds for a moment, and `--keep`'s (counted by the caller).
pub const RELAY_OVERHEAD: usize = 16;

/// `run --relays`: `auto` (the default), `0` (never), or a count.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Choice {
    Auto,
    Count(usize),
}

/// In received fds' worth: what a receiving socket's life costs beyond the files it carries
/// (socket, connect, bind, the poll, the send, the release, and among many tasks the wakeups
/// between them). Measured as the CPU of whole restores with and without relays: 55 to 68 us
/// a socket, against about 1.5 us a received fd, with 100 and 1,000 tasks.
const SOCKET_COST: u64 = 32;

/// Below this many files a batch (on average) relays are considered at all.
const SMALL_BATCHES: u64 = 16;

/// Fewer batches than this are too few for relays to save anything worth a look.
const FEW_BATCHES: u64 = 64;

/// Fewer tasks than this have too few openers per receiver for relays to cut the batches by
/// much: they are not even counted.
const FEW_TASKS: usize = 8;

/// Which relay (number + 1) opens each object, 0 for its own opener; how many relays.
pub struct Assignment<'a> {
    pub relay_of: &'a [u8],
    pub count: usize,
    arena: Arena,
}

/// Batches and received files, as `Roles::compute` would make them.
#[derive(Clone, Copy)]
pub(super) struct Count {
    batches: u64,
    files: u64,
    /// The most batches one task receives from two or more openers.
    pub most_from_many: u64,
}

impl Count {
    /// In received files' worth (see `SOCKET_COST`).
    fn cost(&self) -> u64 {
        self.batches * SOCKET_COST + self.files
    }
}

/// Counts what `Roles::compute` would make of `plan` if `opener_of(object)` (a task index,
/// relays from `plan.tasks.len()`) opened each object, in one pass over the targets (sorted by
/// task and fd, so a task's first target of a file is its rep): no roles are built. `last`
/// (one per file), `per_opener` and `touched` (one per task and relay) are scratch.
pub(super) fn count_roles(plan: &Plan<'_>, batch: u16, opener_of: impl Fn(usize) -> usize, last: &mut [u32], per_opener: &mut [u32], touched: &mut [u32]) -> Count {
    last.fill(0);
    let mut c = Count { batches: 0, files: 0, most_from_many: 0 };
    for t in 0..plan.tasks.len() {
        let mut n = 0;
        for x in plan.task_targets(t) {
            let f = file_of(x.object, x.end);
            let opener = opener_of(x.object as usize);
            if last[f] == t as u32 + 1 || opener == t {
                continue;
            }
            last[f] = t as u32 + 1;
            if per_opener[opener] == 0 {
                touched[n] = opener as u32;
                n += 1;
            }
            per_opener[opener] += 1;
            c.files += 1;
        }
        let mut mine = 0;
        for &o in &touched[..n] {
            mine += per_opener[o as usize].div_ceil(batch as u32) as u64;
            per_opener[o as usize] = 0;
        }
        c.batches += mine;
        if n >= 2 {
            c.most_from_many = c.most_from_many.max(mine);
        }
    }
    c
}

/// The task index of relay number `k` (from 1) in a plan of `nt` tasks: after them.
fn relay_task(nt: usize, k: u8) -> usize {
    nt + k as usize - 1
}

/// Decides `run`'s relays for `plan` in batches of `batch`, before any roles are computed:
/// `Count(0)` none; `Count(n)` n or more; `Auto` relays where their batches cost less than
/// three quarters of the plan's own (by `SOCKET_COST`), and only for plans whose batches
/// carry fewer than `SMALL_BATCHES` files on average. The objects two or more tables hold go
/// to relays in object order (so that a run of files in one directory stays with one relay),
/// in near-equal parts of at most `room` files each: as few parts as fit. One relay where its
/// files fit: each more relay gives every task one more batch, whose slots interleave with the
/// others' (the first batch a task takes lands on the lowest free numbers, some of them the
/// later batches' slots, and moves; the last lands in place). Against two relays, one took 5
/// to 14% less time and 14 to 15% less CPU (300 x 50, 100 x 200 and 1,000 x 30 fds, random
/// sharing), though two open on both cores at once. None when nothing would be relayed, more than
/// `MAX_RELAYS` would be needed, or the plan leaves no task index or id for one.
pub fn assign(plan: &Plan<'_>, batch: u16, choice: Choice, room: usize) -> Result<Option<Assignment<'static>>, Errno> {
    if choice == Choice::Count(0) || (choice == Choice::Auto && plan.tasks.len() < FEW_TASKS) {
        return Ok(None);
    }
    let (nt, no, nf) = (plan.tasks.len(), plan.objects.len(), plan.file_count());
    let ends = nt + MAX_RELAYS;
    let mut arena = Arena::map(bytes_for::<u8>(no) + bytes_for::<u8>(nf) + bytes_for::<u32>(nf) + bytes_for::<u32>(no) + bytes_for::<u32>(ends) * 2)?;
    let relay_of = arena.take::<u8>(no);
    let held = arena.take::<u8>(nf);
    let last = arena.take::<u32>(nf);
    let holder = arena.take::<u32>(no);
    let per_opener = arena.take::<u32>(ends);
    let touched = arena.take::<u32>(ends);
    let none = |arena: Arena| {
        // SAFETY: nothing carved from the arena outlives `assign` on this path.
        unsafe { arena.unmap() };
        Ok(None)
    };
    let direct = count_roles(plan, batch, |o| plan.objects[o].opener as usize, last, per_opener, touched);
    if choice == Choice::Auto && (direct.batches < FEW_BATCHES || direct.files >= SMALL_BATCHES * direct.batches) {
        return none(arena);
    }
    // Which ends anyone holds, and which objects two or more tables hold (holder: the first
    // table seen + 1, or u32::MAX once a second one is).
    for t in 0..nt {
        for x in plan.task_targets(t) {
            held[file_of(x.object, x.end)] = 1;
            let h = &mut holder[x.object as usize];
            if *h == 0 {
                *h = t as u32 + 1;
            } else if *h != t as u32 + 1 {
                *h = u32::MAX;
            }
        }
    }
    // A reopened pipe stays with its opener, and so does its reopen: the reopen goes through
    // the pipe's opener's /proc/self/fd.
    for o in plan.objects {
        if o.kind == KIND_REOPEN {
            relay_of[o.value as usize] = u8::MAX;
        }
    }
    let files_of = |i: usize, kind: u8| held[file_of(i as u32, 0)] as usize + (two_ended(kind) && held[file_of(i as u32, 1)] != 0) as usize;
    let mut total = 0usize;
    for (i, o) in plan.objects.iter().enumerate() {
        let relayed = relay_of[i] != u8::MAX && holder[i] == u32::MAX && o.explicit_opener == 0 && o.kind != KIND_INHERIT && o.kind != KIND_REOPEN;
        relay_of[i] = relayed as u8;
        if relayed {
            total += files_of(i, o.kind);
        }
    }
    // A part may run over by its last object's files (a pipe's two ends).
    let room = room.saturating_sub(2).max(1);
    let least = total.div_ceil(room);
    // No relay without a file to open.
    let count = match choice {
        Choice::Auto => least.max(1),
        Choice::Count(n) => least.max(n),
    }
    .min(total);
    let free_ids = (1..=u16::MAX).rev().filter(|&id| plan.task_by_id(id).is_none()).take(count).count();
    if total == 0 || count > MAX_RELAYS || nt + count > u16::MAX as usize || free_ids < count {
        return none(arena);
    }
    // Near-equal contiguous parts: relay k takes the objects whose files start in
    // [k * part, (k + 1) * part).
    let part = total.div_ceil(count);
    let mut before = 0usize;
    for (i, o) in plan.objects.iter().enumerate() {
        if relay_of[i] != 0 {
            relay_of[i] = (before / part) as u8 + 1;
            before += files_of(i, o.kind);
        }
    }
    if choice == Choice::Auto {
        let relayed = count_roles(plan, batch, |o| match relay_of[o] {
            0 => plan.objects[o].opener as usize,
            k => relay_task(nt, k),
        }, last, per_opener, touched);
        if 4 * relayed.cost() >= 3 * direct.cost() {
            return none(arena);
        }
    }
    Ok(Some(Assignment { relay_of, count, arena }))
}

/// The plan with `a.count` relays after its tasks, each the opener of the objects assigned
/// to it. The text and targets are the plan's own; tasks, their index and objects are copies.
/// Relays take the highest ids the plan leaves free (names and messages need one; errors
/// call them `relay N`).
pub fn with_relays<'p>(plan: &Plan<'p>, a: Assignment<'_>) -> Result<Plan<'p>, Errno> {
    let (nt, no) = (plan.tasks.len(), plan.objects.len());
    let r = a.count;
    let mut arena = Arena::map_for_forks(
        bytes_for::<Task>(nt + r) + bytes_for::<u32>(nt + r + 1) + bytes_for::<u16>(plan.task_index.len()) + bytes_for::<crate::plan::Object>(no),
    )?;
    let tasks = arena.take::<Task>(nt + r);
    let task_first = arena.take::<u32>(nt + r + 1);
    let task_index = arena.take::<u16>(plan.task_index.len());
    let objects = arena.take::<crate::plan::Object>(no);
    tasks[..nt].copy_from_slice(plan.tasks);
    task_first[..nt + 1].copy_from_slice(plan.task_first);
    task_index.copy_from_slice(plan.task_index);
    objects.copy_from_slice(plan.objects);
    let mut ids = (1..=u16::MAX).rev().filter(|&id| plan.task_by_id(id).is_none());
    for k in 0..r {
        let t = nt + k;
        // `assign` checked that enough ids are free.
        let id = ids.next().unwrap_or(0);
        tasks[t] = Task { id, owner: t as u16, relay: k as u16 + 1, ..Task::default() };
        task_first[t + 1] = plan.targets.len() as u32;
        task_index[id as usize] = t as u16 + 1;
    }
    for (o, &k) in objects.iter_mut().zip(a.relay_of) {
        if k != 0 {
            o.opener = relay_task(nt, k) as u16;
        }
    }
    // SAFETY: the assignment is consumed here; nothing else refers to its arena.
    unsafe { a.arena.unmap() };
    // The copies' mapping lives as long as the process, like the plan's.
    Ok(Plan { text: plan.text, tasks, objects, targets: plan.targets, task_first, task_index })
}
