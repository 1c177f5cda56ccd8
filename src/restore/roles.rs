//! Who opens, who receives, and in which batches: decided from the plan alone, so every task
//! computes the same answer without asking anyone (in `run` it is computed once, before fork).
//!
//! Vocabulary: a *file* is one description, `object * 2 + end`. In each task, the lowest fd of a
//! file is its *rep*; the task's other fds of that file are dups of the rep. A task receives the
//! reps of files opened elsewhere, grouped by opener and cut into *batches* of at most
//! `batch_size`; each batch has one receiving socket, parked in the rep slot of its first file.

use crate::arena::{bytes_for, Arena};
use crate::plan::{file_of, Plan};
use crate::sys::Errno;

/// At most this many fds ride in one SCM_RIGHTS message (the kernel's SCM_MAX_FD).
pub const MAX_BATCH: u16 = 253;

/// One receiving socket's worth of files: `count` entries of `Roles::recv` from `first`.
#[derive(Clone, Copy, Default, Debug)]
#[repr(C)]
pub struct Batch {
    pub receiver: u16,
    pub opener: u16,
    pub count: u16,
    pub _pad: u16,
    /// The batch's number among those from `opener` to `receiver`.
    pub index: u32,
    pub first: u32,
    /// The fd in `receiver` where its socket waits: the rep slot of its first file.
    pub slot: u32,
}

// SAFETY: a plain integer struct.
unsafe impl crate::arena::Zeroable for Batch {}

/// Index + 1 in the arrays below; 0 means none.
pub type Link = u32;

pub struct Roles<'a> {
    pub batch_size: u16,
    /// Per target: the next target of the same file in the same task (its next dup).
    pub next_dup: &'a [Link],
    /// Per file: the opener's rep target of it, if the opener holds the file itself.
    pub opener_rep: &'a [Link],
    /// Rep targets received from another task, by (receiver, opener, fd).
    pub recv: &'a [u32],
    /// Batches by (receiver, opener, index).
    pub batches: &'a [Batch],
    /// `batches[task_batches[t]..task_batches[t + 1]]` are what task t receives.
    pub task_batches: &'a [u32],
    /// Batch indices by opener; `send_order[task_sends[t]..task_sends[t + 1]]` are what t sends.
    pub send_order: &'a [u32],
    pub task_sends: &'a [u32],
    /// Object indices by opener; `opened[task_opened[t]..task_opened[t + 1]]` are what t opens.
    pub opened: &'a [u32],
    pub task_opened: &'a [u32],
    /// Per file: 1 when some task other than its opener receives it.
    pub sent: &'a [u8],
    /// Per task: files it opens and sends without holding a slot of its own (kept meanwhile).
    pub held: &'a [u32],
    /// The most batches any task receives (sizes the poll array).
    pub max_batches: u32,
    /// Per file: where the opener keeps a held file while sending (runtime, per process).
    pub held_fd: &'a mut [i32],
    /// Scratch for polling receiving sockets (runtime, per process).
    pub pollfds: &'a mut [linux_raw_sys::general::pollfd],
    /// Scratch: pending batch indices while receiving (runtime, per process).
    pub pending: &'a mut [u32],
}

// SAFETY: pollfd is a plain C struct of integers.
unsafe impl crate::arena::Zeroable for linux_raw_sys::general::pollfd {}

/// Fills a counting-sort index: `first[k]..first[k+1]` for keys 0..n, from per-key counts.
fn prefix(first: &mut [u32]) {
    let mut sum = 0;
    for f in first.iter_mut() {
        let c = *f;
        *f = sum;
        sum += c;
    }
}

impl<'a> Roles<'a> {
    /// Computes every role of the plan for batches of `batch_size` (1..=253).
    pub fn compute(plan: &Plan<'_>, batch_size: u16) -> Result<Roles<'a>, Errno> {
        let (nt, nx, nf, no) = (plan.tasks.len(), plan.targets.len(), plan.file_count(), plan.objects.len());
        let size = bytes_for::<Link>(nx) * 2
            + bytes_for::<Link>(nf) * 2
            + bytes_for::<u16>(nf)
            + bytes_for::<u32>(nx) * 2
            + bytes_for::<Batch>(nx)
            + bytes_for::<u32>(nt + 1) * 4
            + bytes_for::<u32>(nt)
            + bytes_for::<u32>(nx)
            + bytes_for::<u32>(no)
            + bytes_for::<u8>(nf)
            + 64;
        // Read-only once computed (what a task writes is in `own` below), and shared with
        // `run`'s forks.
        let mut arena = Arena::map_for_forks(size)?;
        let next_dup = arena.take::<Link>(nx);
        let opener_rep = arena.take::<Link>(nf);
        let last_target = arena.take::<Link>(nf);
        let last_task = arena.take::<u16>(nf);
        let recv_all = arena.take::<u32>(nx);
        let recv_scratch = arena.take::<u32>(nx);
        let sent = arena.take::<u8>(nf);

        // Reps and dups, in one pass over targets sorted by (task, fd).
        let mut nrecv = 0;
        for (i, t) in plan.targets.iter().enumerate() {
            let f = file_of(t.object, t.end);
            if last_task[f] == t.task + 1 {
                next_dup[last_target[f] as usize - 1] = i as Link + 1;
            } else {
                last_task[f] = t.task + 1;
                let opener = plan.objects[t.object as usize].opener;
                if opener == t.task {
                    opener_rep[f] = i as Link + 1;
                } else {
                    recv_all[nrecv] = i as u32;
                    nrecv += 1;
                    sent[f] = 1;
                }
            }
            last_target[f] = i as Link + 1;
        }
        // A reopened pipe end must stay open in its opener until the reopen is done.
        for o in plan.objects {
            if o.kind == crate::plan::KIND_REOPEN {
                sent[file_of(o.value as u32, o.extra as u8)] |= 2;
            }
        }
        let recv = &mut recv_all[..nrecv];
        // Targets come sorted by (task, fd): a stable sort by (task, opener) leaves each
        // (receiver, opener) run in fd order.
        let key = |i: &u32| {
            let t = &plan.targets[*i as usize];
            ((t.task as u64) << 16) | plan.objects[t.object as usize].opener as u64
        };
        crate::sort::radix_sort_by_key(recv, recv_scratch, 32, key);

        // Batches: consecutive runs of one (receiver, opener), cut every batch_size.
        let batches_all = arena.take::<Batch>(nrecv);
        let task_batches = arena.take::<u32>(nt + 1);
        let mut nb = 0usize;
        let mut i = 0usize;
        let mut max_batches = 0u32;
        while i < nrecv {
            let t = &plan.targets[recv[i] as usize];
            let (receiver, opener) = (t.task, plan.objects[t.object as usize].opener);
            let mut index = 0;
            while i < nrecv {
                let u = &plan.targets[recv[i] as usize];
                if u.task != receiver || plan.objects[u.object as usize].opener != opener {
                    break;
                }
                let mut count = 0usize;
                while count < batch_size as usize && i + count < nrecv {
                    let v = &plan.targets[recv[i + count] as usize];
                    if v.task != receiver || plan.objects[v.object as usize].opener != opener {
                        break;
                    }
                    count += 1;
                }
                batches_all[nb] = Batch { receiver, opener, count: count as u16, _pad: 0, index, first: i as u32, slot: u.fd };
                task_batches[receiver as usize] += 1;
                nb += 1;
                index += 1;
                i += count;
            }
        }
        for c in task_batches[..nt].iter() {
            max_batches = max_batches.max(*c);
        }
        prefix(task_batches);
        let batches = &batches_all[..nb];

        // What each opener sends, and what it opens.
        let task_sends = arena.take::<u32>(nt + 1);
        for b in batches {
            task_sends[b.opener as usize] += 1;
        }
        prefix(task_sends);
        let send_order = arena.take::<u32>(nb.max(1));
        let fill = arena.take::<u32>(nt + 1);
        fill.copy_from_slice(task_sends);
        for (k, b) in batches.iter().enumerate() {
            let o = b.opener as usize;
            send_order[fill[o] as usize] = k as u32;
            fill[o] += 1;
        }
        // Each opener goes round its receivers (every receiver's first batch, then every
        // second, ...), so that all of them work at once and their windows slide together.
        // Each receiver still gets its own batches in index order, as it expects.
        // (The received targets are sorted by now: their scratch is free.)
        for o in 0..nt {
            let seg = &mut send_order[task_sends[o] as usize..task_sends[o + 1] as usize];
            let key = |&k: &u32| ((batches[k as usize].index as u64) << 16) | batches[k as usize].receiver as u64;
            crate::sort::radix_sort_by_key(seg, recv_scratch, 48, key);
        }
        let task_opened = arena.take::<u32>(nt + 1);
        for o in plan.objects {
            task_opened[o.opener as usize] += 1;
        }
        prefix(task_opened);
        let opened = arena.take::<u32>(no);
        fill.copy_from_slice(task_opened);
        for (k, o) in plan.objects.iter().enumerate() {
            let t = o.opener as usize;
            opened[fill[t] as usize] = k as u32;
            fill[t] += 1;
        }
        let held = arena.take::<u32>(nt);
        for f in 0..nf {
            if sent[f] != 0 && opener_rep[f] == 0 {
                held[plan.objects[f / 2].opener as usize] += 1;
            }
        }
        // Per run (at most one per batch): its head; then tx, home, abort.
        let npoll = max_batches as usize + 3;
        // What each task writes while it restores: private, and untouched until a fork has
        // its own copy (so no fork copies a page of it).
        let mut own = Arena::map(bytes_for::<i32>(nf) + bytes_for::<linux_raw_sys::general::pollfd>(npoll) + bytes_for::<u32>(npoll))?;
        let held_fd = own.take::<i32>(nf);
        let pollfds = own.take(npoll);
        let pending = own.take::<u32>(npoll);
        Ok(Roles {
            batch_size,
            next_dup,
            opener_rep,
            recv,
            batches,
            task_batches,
            send_order: &send_order[..nb],
            task_sends,
            opened,
            task_opened,
            held,
            sent,
            max_batches,
            held_fd,
            pollfds,
            pending,
        })
    }

    pub fn receives(&self, t: usize) -> &[Batch] {
        &self.batches[self.task_batches[t] as usize..self.task_batches[t + 1] as usize]
    }

    pub fn sends(&self, t: usize) -> &[u32] {
        &self.send_order[self.task_sends[t] as usize..self.task_sends[t + 1] as usize]
    }

    pub fn opens(&self, t: usize) -> &[u32] {
        &self.opened[self.task_opened[t] as usize..self.task_opened[t + 1] as usize]
    }

    /// The rep targets (indices into `plan.targets`) that batch `b` carries, by fd.
    pub fn entries(&self, b: &Batch) -> &[u32] {
        &self.recv[b.first as usize..b.first as usize + b.count as usize]
    }

    /// Entry `i` of batch `b` in message order: the socket's own slot (the first entry) goes
    /// last. The kernel installs received fds at the lowest free numbers, which then are the
    /// batch's other slots, in order; only the last fd needs a move, over the socket.
    pub fn message_entry(&self, b: &Batch, i: usize) -> u32 {
        let e = self.entries(b);
        e[(i + 1) % e.len()]
    }
}
