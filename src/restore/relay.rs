//! Relays: under `run`, when a plan's sharing is scattered over many tasks, so that the batched
//! form's batches would carry one or two files each (a receiving socket's whole life, about
//! four opens, per file), `run` adds relay processes after the plan's tasks and makes them the
//! openers of the objects that two or more tables hold. Each task then receives its shared
//! files in a few full batches, one run per relay, instead of one batch per (task, opener).
//!
//! A relay is a fork of `run`, as every task is before it restores: the same credentials,
//! namespaces, working directory and inherited table, so it opens each path as the task
//! would. It is a task with no slot of its own: it opens what it sends, holds it in its
//! service range, sends it like any opener, and exits. Objects whose opener the plan names
//! (`opener=`), inherited fds, reopened pipes and objects one table holds keep their opener.
//!
//! Everything is decided here from the plan alone, before any fork, like the rest of the roles.

use super::roles::Roles;
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
const SMALL_BATCHES: usize = 16;

/// Which relay (number + 1) opens each object, 0 for its own opener; how many relays.
pub struct Assignment<'a> {
    pub relay_of: &'a [u8],
    pub count: usize,
    arena: Arena,
}

/// A plan with relays, and the mapping its copies live in.
pub struct Relayed<'p> {
    pub plan: Plan<'p>,
    arena: Arena,
}

impl Relayed<'_> {
    /// Gives the copies back (relays computed, then not chosen).
    ///
    /// # Safety
    /// Nothing of `plan` but the original's own parts (text, targets) may be used afterwards.
    pub unsafe fn release(self) {
        // SAFETY: as the caller guarantees.
        unsafe { self.arena.unmap() }
    }
}

/// Whether `direct` (the plan's own roles) is worth relaying at all: many batches, few files
/// each. Only then does `run` compute the relays' roles to compare.
pub fn worth_a_look(direct: &Roles<'_>) -> bool {
    let (b, f) = (direct.batches.len(), direct.recv.len());
    b >= 64 && f < SMALL_BATCHES * b
}

/// Whether `relayed`'s roles cost less than three quarters of `direct`'s, by the costs above.
pub fn pays(direct: &Roles<'_>, relayed: &Roles<'_>) -> bool {
    let cost = |r: &Roles<'_>| r.batches.len() as u64 * SOCKET_COST + r.recv.len() as u64;
    4 * cost(relayed) < 3 * cost(direct)
}

/// Assigns the objects two or more tables hold to relays, in object order (so that a run of
/// files in one directory stays with one relay), in near-equal parts of at most `room` files
/// each: `Count(n)` relays, or more if they would not fit; `Auto`: as few as fit, at least
/// two (two relays open at once on two cores). None when nothing would be relayed or more
/// than `MAX_RELAYS` would be needed, or the plan leaves no task index or id for one.
pub fn assign(plan: &Plan<'_>, direct: &Roles<'_>, choice: Choice, room: usize) -> Result<Option<Assignment<'static>>, Errno> {
    let no = plan.objects.len();
    let mut arena = Arena::map(bytes_for::<u8>(no))?;
    let relay_of = arena.take::<u8>(no);
    // A reopened pipe stays with its opener, and so does its reopen: the reopen goes through
    // the pipe's opener's /proc/self/fd.
    for o in plan.objects {
        if o.kind == KIND_REOPEN {
            relay_of[o.value as usize] = u8::MAX;
        }
    }
    let held = |f: usize| direct.sent[f] != 0 || direct.opener_rep[f] != 0;
    let mut total = 0usize;
    for (i, o) in plan.objects.iter().enumerate() {
        let shared = direct.sent[file_of(i as u32, 0)] & 1 != 0 || direct.sent[file_of(i as u32, 1)] & 1 != 0;
        if relay_of[i] == u8::MAX || !shared || o.explicit_opener != 0 || o.kind == KIND_INHERIT || o.kind == KIND_REOPEN {
            relay_of[i] = 0;
            continue;
        }
        relay_of[i] = 1;
        total += held(file_of(i as u32, 0)) as usize + (two_ended(o.kind) && held(file_of(i as u32, 1))) as usize;
    }
    let room = room.saturating_sub(2).max(1);
    let least = total.div_ceil(room);
    // No relay without a file to open.
    let count = match choice {
        Choice::Auto => least.max(2),
        Choice::Count(n) => least.max(n),
    }
    .min(total);
    let free_ids = (1..=u16::MAX).rev().filter(|&id| plan.task_by_id(id).is_none()).take(count).count();
    if total == 0 || count > MAX_RELAYS || plan.tasks.len() + count > u16::MAX as usize || free_ids < count {
        // SAFETY: nothing carved from the arena outlives this function on this path.
        unsafe { arena.unmap() };
        return Ok(None);
    }
    // Near-equal contiguous parts: relay k takes the objects whose files start in
    // [k * part, (k + 1) * part).
    let part = total.div_ceil(count);
    let mut before = 0usize;
    for (i, o) in plan.objects.iter().enumerate() {
        if relay_of[i] == 0 {
            continue;
        }
        relay_of[i] = (before / part) as u8 + 1;
        before += held(file_of(i as u32, 0)) as usize + (two_ended(o.kind) && held(file_of(i as u32, 1))) as usize;
    }
    Ok(Some(Assignment { relay_of, count, arena }))
}

/// The plan with `a.count` relays after its tasks, each the opener of the objects assigned
/// to it. The text and targets are the plan's own; tasks, their index and objects are copies.
/// Relays take the highest ids the plan leaves free (names and messages need one; errors
/// call them `relay N`).
pub fn with_relays<'p>(plan: &Plan<'p>, a: Assignment<'_>) -> Result<Relayed<'p>, Errno> {
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
            o.opener = (nt + k as usize - 1) as u16;
        }
    }
    // SAFETY: the assignment is consumed here; nothing else refers to its arena.
    unsafe { a.arena.unmap() };
    Ok(Relayed { plan: Plan { text: plan.text, tasks, objects, targets: plan.targets, task_first, task_index }, arena })
}

/// The plan's own tasks: those before the relays.
pub fn plan_tasks(plan: &Plan<'_>) -> usize {
    plan.tasks.iter().take_while(|t| t.relay == 0).count()
}
