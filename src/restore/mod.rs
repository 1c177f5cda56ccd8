//! The restore algorithm for one task, in the order data flows through it:
//! limits -> service range -> sockets in slots -> barrier -> open and place -> send -> receive.
//!
//! Nothing here knows whether it runs under `run`, `restore`, or as pid 1.

pub mod barrier;
pub mod open;
pub mod preserve;
pub mod relay;
pub mod roles;
pub mod slots;
pub mod spread;
pub mod transport;

use crate::plan::{file_of, Object, Plan, Span, Target, KIND_INHERIT, KIND_REG, KIND_REOPEN};
use crate::report::{Failure, EXIT_PEER, EXIT_RESTORE, EXIT_USAGE};
use crate::sys::socket::{self as sock};
use crate::sys::{fd, proc, Errno, Fd};
use barrier::Barrier;
use linux_raw_sys::general as g;
use linux_raw_sys::net as n;
use roles::{Batch, Roles, MAX_BATCH};
use slots::{move_to, parallel_move, Move, Slots};
use transport::{Header, Names, Received};

/// Where a task restores: the session's names, the fds to keep, and the one deadline.
pub struct Session<'a> {
    pub names: Names,
    /// Sorted, deduplicated.
    pub keep: &'a [u32],
    /// CLOCK_MONOTONIC nanoseconds.
    pub deadline: u64,
    /// Rebuild a live process's table in place: park what the plan displaces, put it back on
    /// failure, and drop it only once the group commits (see `preserve`).
    pub preserve: bool,
    /// With `preserve`: leave every fd the plan does not name open and untouched.
    pub keep_others: bool,
    /// Receivers take their batches lowest slot first (under `run`, with spread openers).
    pub slot_order: bool,
}

/// The most `--keep` fds.
pub const MAX_KEEP: usize = 64;

/// Receiving sockets bound at once per receiver under `run` (across all its openers), at
/// most: more are bound as files arrive, and each opener is told with a credit. Few names are
/// bound at any moment, so the kernel's 256 abstract-name buckets stay short however many fds
/// the plan has (the seed's form binds one socket per fd). 64 rather than more: at 10,000 x 5
/// in the seed's form, 256 cost 10% more CPU (longer chains walked by every bind and send);
/// 16 cost more again (a credit round trip every four files).
pub const WINDOW: u32 = 64;
/// The names all receivers of a plan keep bound at once, at most (bar MIN_WINDOW each):
/// chains of about 16 in the kernel's buckets. A plan with more tasks gets smaller windows.
pub const NAME_BUDGET: u32 = 4096;
/// The smallest window, however many tasks.
pub const MIN_WINDOW: u32 = 8;

/// The window of every receiver of `plan` under `run`: the same in every task, as each
/// opener must know which of its batches the receiver bound before the barrier.
pub fn window_for(tasks: usize) -> u32 {
    (NAME_BUDGET / tasks.max(1) as u32).clamp(MIN_WINDOW, WINDOW)
}

/// How often a receiver that waits for its lowest batch looks whether an opener is stalled (a
/// look at the shared page; a stall, rare, then waits at most this long for its room).
const STALL_CHECK_NS: u64 = 5_000_000;

/// What this task receives from one opener: batches up to `end` (in the order the opener sends
/// them); `next` is the next to arrive, `bound` the first whose socket is not bound yet.
/// Sockets are bound in the order of the task's batches (run after run), so what is bound of a
/// run is always a prefix of it.
#[derive(Clone, Copy, Default)]
struct Run {
    end: u32,
    next: u32,
    bound: u32,
}

// SAFETY: plain integers, valid when zero.
unsafe impl crate::arena::Zeroable for Run {}

/// What an opener sends one receiver: batches `first..first + len`, in index order; the first
/// `pre` were bound before the barrier (the rest wait for credits).
#[derive(Clone, Copy)]
struct Lane {
    first: u32,
    len: u32,
    sent: u32,
    pre: u32,
}

// SAFETY: plain integers, valid when zero.
unsafe impl crate::arena::Zeroable for Lane {}

struct Task<'a, 'p, 'r> {
    plan: &'a Plan<'p>,
    roles: &'a mut Roles<'r>,
    t: usize,
    id: u16,
    session: &'a Session<'a>,
    home: Fd,
    uid: u32,
    runs: &'a mut [Run],
    /// Batches still to receive.
    remaining: usize,
    /// Some receiver of ours slides its window: while this task waits for its credits, a wake
    /// may arrive at the home socket.
    wakes: bool,
    /// How many placeholders `Slots::fill_holes` may put down.
    filler_budget: usize,
    /// `window_for` under `run`, whose shared page carries the credits; elsewhere every
    /// receiving socket is bound before the barrier, so no credit is ever needed.
    window: u32,
    /// `Barrier::homes_vouched`: receiving sockets need no SO_PASSCRED, messages no credentials.
    vouched: bool,
    /// The first of this task's batches (in its order) whose socket is not bound yet.
    bind_next: u32,
    /// The run that `bind_next` belongs to.
    bind_run: usize,
    /// Sockets bound whose message has not been taken yet: at most `window`.
    outstanding: u32,
    /// Whether `batch_while_receiving` moved this task to SCHED_BATCH (until `unbatch`).
    batch: bool,
    /// The service number of the socket that wakes waiting openers (see `wake`), taken when
    /// this task slides its window at all (`may_wake`), or -1; `waker` is the socket once made.
    waker_slot: Fd,
    waker: Fd,
    /// The directory this opener's regular files are opened relative to (see `dir_for`).
    dir: open::DirCache,
    /// Per receiver this task sends to: its run of batches, and how many are sent.
    lanes: &'a mut [Lane],
    /// Scratch for the path of the object being opened.
    path: open::PathBuf,
    /// How many of this task's objects (`Roles::opens`, in object order) are open so far.
    opened: usize,
    /// The batch being sent, and the one being received: reused, never cleared.
    out: transport::Outgoing,
    rx: Received,
    /// Take batches lowest slot first (`Session::slot_order`).
    in_slot_order: bool,
    /// Numbers where own opens (or, in the seed's form, received fds) landed before their dup3
    /// to their slots, still open: `.0..=.1` (none while `.0 > .1`; see
    /// `place_keeping_landing`).
    temps: (Fd, Fd),
    /// Under `run`: a received fd's landing number may stay open in `temps`.
    defer_received: bool,
}

/// Fds an open (a FIFO's helper, a data= file, a pipe's two ends) or a received batch (one fd
/// past its own slots) may hold for a moment, beyond what `check_limits` counts.
const TRANSIENT_FDS: usize = 4;

/// Rebuilds task `t`'s fd table in the calling process. On success the table is exactly the
/// plan's (plus `keep`, plus the barrier's own fds, which the caller closes before exec).
pub fn restore_task(
    plan: &Plan<'_>,
    roles: &mut Roles<'_>,
    t: usize,
    session: &Session<'_>,
    barrier: &mut Barrier<'_>,
) -> Result<(), Failure> {
    let planned = plan.task_targets(t);
    let (limit, need) = check_limits(plan, roles, t, session, barrier)?;
    // Inherited descriptions are found at fixed numbers: collect them first, so that no
    // service number is handed out over one before it is adopted.
    let mut inherited: heapless::Vec<u32, { crate::plan::MAX_INHERIT_PER_TASK }> = heapless::Vec::new();
    for &oi in roles.opens(t) {
        let o = &plan.objects[oi as usize];
        if o.kind == KIND_INHERIT && inherited.push(o.value as u32).is_err() {
            return Err(Failure::new(EXIT_USAGE, t, "more inherit objects than one task may open").num(": at most ", crate::plan::MAX_INHERIT_PER_TASK as u64));
        }
    }
    crate::sort::sort_by_key(&mut inherited, |&f| f);
    let mut preserved = None;
    let mut extra_need = 0;
    let mut scan_arena;
    if session.preserve {
        scan_arena = crate::arena::Arena::map(preserve::Preserved::arena_bytes(limit, planned.len())).map_err(|e| Failure::sys(t, "mmap", e))?;
        let p = preserve::Preserved::scan(&mut scan_arena, limit, &barrier.fds(), planned).map_err(|e| match e {
            Errno::MFILE => Failure::new(EXIT_RESTORE, t, "more fds are open than RLIMIT_NOFILE").num(", which is ", limit as u64),
            e => Failure::sys(t, "listing the open fds", e),
        })?;
        check_room(plan, t, p.existing, service_need(plan, roles, t, barrier), limit)?;
        extra_need = p.existing.len();
        preserved = Some(p);
    }
    let existing = preserved.as_ref().map_or(&[][..], |p| p.existing);
    let mut slots = Slots::new(planned, session.keep, limit, barrier.fds(), &inherited, existing);
    let nt = plan.tasks.len();
    let mut run_arena = crate::arena::Arena::map(crate::arena::bytes_for::<Run>(nt) + crate::arena::bytes_for::<Lane>(nt))
        .map_err(|e| Failure::sys(t, "mmap", e))?;
    let runs = run_arena.take::<Run>(nt);
    let lanes = run_arena.take::<Lane>(nt);
    // Placeholders may take what the restore will never need, less room for the few fds an
    // open or a received batch holds for a moment.
    let filler_budget = (limit as usize).saturating_sub(need + extra_need + TRANSIENT_FDS);
    // Credits live in `run`'s shared page, which nobody outside the group can write.
    let window = if matches!(barrier.mode, barrier::Mode::Shared(_)) { window_for(nt) } else { u32::MAX };
    let mut task = Task {
        plan,
        roles,
        t,
        id: plan.tasks[t].id,
        session,
        home: -1,
        uid: proc::getuid(),
        runs,
        remaining: 0,
        wakes: false,
        filler_budget,
        window,
        vouched: barrier.homes_vouched(),
        opened: 0,
        bind_next: 0,
        bind_run: 0,
        outstanding: 0,
        batch: false,
        waker_slot: -1,
        waker: -1,
        dir: open::DirCache::none(),
        lanes,
        path: [0; crate::plan::MAX_PATH + 1],
        out: transport::Outgoing::new(),
        rx: Received::new(),
        in_slot_order: session.slot_order,
        temps: (0, -1),
        defer_received: matches!(barrier.mode, barrier::Mode::Shared(_)),
    };
    let result = task.prepare_and_run(&mut slots, barrier, preserved.as_mut());
    for own in [task.home, task.waker, if task.dir.held { task.dir.slot } else { -1 }] {
        if own >= 0 {
            let _ = fd::close(own);
        }
    }
    let Some(p) = preserved.as_mut() else { return result };
    let result = result.and_then(|()| barrier.await_commit(t, session.deadline));
    match result {
        Ok(()) => {
            p.commit(session.keep, session.keep_others, planned);
            if let Some(n) = core::num::NonZeroU32::new(plan.tasks[t].nofile) {
                set_nofile(n.get()).map_err(|e| Failure::sys(t, "setrlimit RLIMIT_NOFILE (nofile=, after commit)", e))?;
            }
            Ok(())
        }
        Err(f) => {
            let own = [barrier.err_fd, barrier.chan_fd, barrier.ctl_fd];
            p.rollback(&own, planned);
            Err(f)
        }
    }
}

/// Preserve mode: refuses, before any change, a table whose originals, planned slots, kept
/// and service fds cannot all be open at once under the limit.
fn check_room(plan: &Plan<'_>, t: usize, existing: &[u32], extra: usize, limit: u32) -> Result<(), Failure> {
    let planned = plan.task_targets(t);
    let unplanned = existing.iter().filter(|&&e| planned.binary_search_by_key(&e, |x| x.fd).is_err()).count();
    let displaced = existing.len() - unplanned;
    let need = planned.len() + unplanned + displaced + extra;
    if need > limit as usize {
        return Err(Failure::new(EXIT_RESTORE, t, "the process's own fds, the planned ones and the restorer's do not fit under RLIMIT_NOFILE")
            .num(": need ", need as u64)
            .num(", limit ", limit as u64));
    }
    Ok(())
}

/// Copies each inherited description this task opens into the service range (the number it
/// was found at is closed with everything else unplanned).
fn adopt_inherited(
    plan: &Plan<'_>,
    roles: &mut Roles<'_>,
    t: usize,
    slots: &mut Slots<'_>,
    adopted: &mut heapless::Vec<u32, { crate::plan::MAX_INHERIT_PER_TASK }>,
) -> Result<(), Failure> {
    let (ob, oe) = (roles.task_opened[t] as usize, roles.task_opened[t + 1] as usize);
    for k in ob..oe {
        let oi = roles.opened[k];
        let o = &plan.objects[oi as usize];
        if o.kind != KIND_INHERIT {
            continue;
        }
        let found = o.value as Fd;
        if fd::fcntl(found, g::F_GETFD, 0).is_err() {
            return Err(Failure::new(EXIT_RESTORE, t, "the inherited fd is not open in this task").at_fd(found as u32).on(oi, 0));
        }
        let to = slots.take().ok_or_else(|| Failure::new(EXIT_RESTORE, t, "no fd number left to hold a file").on(oi, 0))?;
        fd::dup3(found, to, g::O_CLOEXEC).map_err(|e| Failure::sys(t, "dup3 (inherit)", e).at_fd(found as u32).on(oi, 0))?;
        roles.held_fd[file_of(oi, 0)] = to + 1;
        // Cannot overflow: there are at most as many as `inherited` holds.
        let _ = adopted.push(to as u32);
    }
    Ok(())
}

/// How one process restores its task alone (`fdslot restore`, the blob).
pub struct AloneOptions<'a> {
    /// The session (1 to 32 of A-Za-z0-9_-).
    pub session: &'a [u8],
    pub batch: u16,
    /// The sync fd (the parent tool's barrier), or -1 for the tasks' own barrier.
    pub sync_fd: Fd,
    /// Where error lines go (the restorer keeps its own copy of it), or -1.
    pub err_fd: Fd,
    /// Sorted, deduplicated.
    pub keep: &'a [u32],
    /// CLOCK_MONOTONIC nanoseconds.
    pub deadline: u64,
    pub preserve: bool,
    pub keep_others: bool,
}

/// Restores task `t` alone in this process, as `fdslot restore` and the blob do: roles for
/// `batch`, the session's names, the sync fd's barrier (or, with -1, the tasks' own). On
/// failure the error line goes to the barrier's peers, to `err_fd` and to `report`; the
/// barrier's fds are closed and the exit code comes back. On success the barrier is returned
/// with its fds still open, for the caller to close.
pub fn restore_alone(plan: &Plan<'_>, t: usize, o: &AloneOptions<'_>, report: impl FnOnce(&[u8])) -> Result<Barrier<'static>, u8> {
    let Ok(mut roles) = Roles::compute(plan, o.batch) else {
        report(b"fdslot: cannot map memory for the plan's roles");
        return Err(EXIT_RESTORE);
    };
    let names = Names::new(o.session, transport::plan_hash(plan.text, o.batch));
    let mode = if o.sync_fd >= 0 { barrier::Mode::SyncFd } else { barrier::Mode::Peers };
    let mut barrier = Barrier { mode, err_fd: o.err_fd, chan_fd: o.sync_fd, ctl_fd: -1 };
    let sess = Session { names, keep: o.keep, deadline: o.deadline, preserve: o.preserve, keep_others: o.keep_others, slot_order: false };
    match restore_task(plan, &mut roles, t, &sess, &mut barrier) {
        Ok(()) => Ok(barrier),
        Err(f) => {
            let mut line = crate::text::Line::<400>::new();
            f.format(plan, &mut line);
            let text = line.as_bytes();
            if barrier.err_fd >= 0 {
                let _ = fd::write_all(barrier.err_fd, text);
                let _ = fd::write_all(barrier.err_fd, b"\n");
            }
            barrier.fail(plan, &names, t, f.code, text);
            report(text);
            barrier.close();
            Err(f.code)
        }
    }
}

/// Refuses, before any change, a plan that cannot fit under RLIMIT_NOFILE; returns the limit.
/// Returns the limit and how many numbers the restore needs at most under it.
fn check_limits(plan: &Plan<'_>, roles: &Roles<'_>, t: usize, session: &Session<'_>, barrier: &Barrier<'_>) -> Result<(u32, usize), Failure> {
    let planned = plan.task_targets(t);
    let (soft, _) = proc::getrlimit(g::RLIMIT_NOFILE).map_err(|e| Failure::sys(t, "getrlimit", e))?;
    let limit = soft.min(crate::plan::NR_OPEN as u64 * 1024) as u32;
    if let Some(last) = planned.last() {
        if last.fd >= limit {
            return Err(Failure::new(EXIT_RESTORE, t, "fd is not below RLIMIT_NOFILE").num(", which is ", limit as u64).at_fd(last.fd).on(last.object, last.end));
        }
    }
    for &k in session.keep {
        if planned.binary_search_by_key(&k, |x| x.fd).is_ok() {
            return Err(Failure::new(EXIT_USAGE, t, "--keep names a planned slot").at_fd(k));
        }
    }
    let need = planned.len() + session.keep.len() + service_need(plan, roles, t, barrier);
    if need > limit as usize {
        return Err(Failure::new(EXIT_RESTORE, t, "planned, kept and the restorer's own fds do not fit under RLIMIT_NOFILE")
            .num(": need ", need as u64)
            .num(", limit ", limit as u64));
    }
    Ok((limit, need))
}

/// The service numbers task `t` needs at most: the barrier's, the home socket, the waker,
/// held files, adopted inherited fds, and the spare one.
fn service_need(plan: &Plan<'_>, roles: &Roles<'_>, t: usize, barrier: &Barrier<'_>) -> usize {
    let inherits = roles.opens(t).iter().filter(|&&o| plan.objects[o as usize].kind == KIND_INHERIT).count();
    barrier.service_need() + (!roles.sends(t).is_empty()) as usize + may_wake(plan, roles, t, barrier) as usize + roles.held[t] as usize + inherits + 1
}

/// Whether task `t` slides its window (it receives more batches than `window_for` binds
/// before the barrier), and so may have to wake an opener that waits for its credits.
fn may_wake(plan: &Plan<'_>, roles: &Roles<'_>, t: usize, barrier: &Barrier<'_>) -> bool {
    matches!(barrier.mode, barrier::Mode::Shared(_)) && roles.task_batches[t + 1] - roles.task_batches[t] > window_for(plan.tasks.len())
}

/// Closes every fd but `keep`, the restorer's own, the inherited descriptions it adopted, and
/// with `stdio` fds 0 to 2.
fn close_unplanned(keep: &[u32], own: &[Fd], adopted: &[u32], stdio: bool) -> Result<(), Errno> {
    let mut spared: heapless::Vec<u32, { MAX_KEEP + 7 + crate::plan::MAX_INHERIT_PER_TASK }> = heapless::Vec::new();
    let stdio: &[u32] = if stdio { &[0, 1, 2] } else { &[] };
    for &k in keep.iter().chain(adopted).chain(stdio) {
        let _ = spared.push(k);
    }
    for &o in own {
        if o >= 0 {
            let _ = spared.push(o as u32);
        }
    }
    crate::sort::sort_by_key(&mut spared, |&s| s);
    preserve::close_all_but(&spared)
}

impl<'a, 'p, 'r> Task<'a, 'p, 'r> {
    /// Adopts inherited fds and the barrier's, clears the table (or parks what is in the way),
    /// then runs the restore.
    fn prepare_and_run(&mut self, slots: &mut Slots<'_>, barrier: &mut Barrier<'_>, preserved: Option<&mut preserve::Preserved<'_>>) -> Result<(), Failure> {
        let t = self.t;
        let mut adopted: heapless::Vec<u32, { crate::plan::MAX_INHERIT_PER_TASK }> = heapless::Vec::new();
        adopt_inherited(self.plan, self.roles, t, slots, &mut adopted)?;
        barrier.adopt(slots, t)?;
        match preserved {
            Some(p) => p.park(slots).map_err(|(at, what, e)| Failure::sys(t, what, e).at_fd(at))?,
            // A relay (no slots of its own) keeps 0 to 2 as it found them, so that each file
            // it opens lands on the service number it is held at: no move per file.
            None => close_unplanned(self.session.keep, &barrier.fds(), &adopted, self.plan.tasks[t].relay != 0).map_err(|e| Failure::sys(t, "close_range", e))?,
        }
        // Under `run` (fresh forks of ours: no foreign seccomp filter to trip, no other thread
        // to see it) a task that sends nothing yields to its openers while it restores (see
        // `batch_while_receiving`); its policy is back before the caller execs or stops it.
        self.batch = matches!(barrier.mode, barrier::Mode::Shared(_)) && self.roles.sends(t).is_empty() && batch_while_receiving();
        let result = self.run(slots, barrier);
        if result.is_err() {
            // `run` ends its success with it; after a failure the task ends anyway.
            let _ = self.unbatch();
        }
        slots.drop_fillers();
        result
    }

    fn run(&mut self, slots: &mut Slots<'_>, barrier: &mut Barrier<'_>) -> Result<(), Failure> {
        let t = self.t;
        let deadline = self.session.deadline;
        if !self.roles.sends(t).is_empty() {
            let s = sock::socket_unix(n::SOCK_DGRAM | sock::SOCK_CLOEXEC | sock::SOCK_NONBLOCK).map_err(|e| Failure::sys(t, "socket", e))?;
            let to = slots.take().ok_or_else(|| Failure::new(EXIT_RESTORE, t, "no fd number left for the restorer"))?;
            self.home = move_to(s, to).map_err(|e| Failure::sys(t, "dup3 (home socket)", e))?;
            let name = self.session.names.home(self.id);
            sock::bind(self.home, &name).map_err(|e| bind_failure(t, e, "bind (home socket)"))?;
            self.wakes = self.roles.sends(t).iter().any(|&k| !self.pre_credited(k));
        }
        barrier.home_bound(t);
        if may_wake(self.plan, self.roles, t, barrier) {
            self.waker_slot = slots.take().ok_or_else(|| Failure::new(EXIT_RESTORE, t, "no fd number left for the restorer"))?;
        }
        barrier.prepare(self.plan, &self.session.names, slots, t, deadline)?;
        // A number for the directory cache, from what placeholders could have had, when this
        // task opens enough regular files for a run of them to share a directory.
        let regs = self.roles.opens(t).iter().filter(|&&o| self.plan.objects[o as usize].kind == KIND_REG).count();
        if regs > open::DIR_RUN && self.filler_budget > 0 {
            if let Some(n) = slots.take() {
                self.dir.slot = n;
                self.filler_budget -= 1;
            }
        }
        let base = [self.home, barrier.chan_fd, barrier.ctl_fd, barrier.err_fd].into_iter().find(|&f| f >= 0).unwrap_or(-1);
        slots.fill_holes(base, self.filler_budget);
        self.park_sockets(barrier)?;
        barrier.bound(self.plan, &self.session.names, t, deadline)?;
        // Objects are opened as the sends first need them, so receivers start at once.
        self.send_all(slots, barrier)?;
        self.open_through(u32::MAX, slots)?;
        self.close_temps()?;
        self.receive_rest(barrier)?;
        self.close_temps()?;
        // Files held only to send are closed, but by a relay: it holds nothing else, and its
        // exit closes them after the tasks have been told it is done.
        let (ob, oe) = (self.roles.task_opened[t] as usize, self.roles.task_opened[t + 1] as usize);
        let held_to_close = if self.plan.tasks[t].relay == 0 { ob..oe } else { ob..ob };
        for k in held_to_close {
            let oi = self.roles.opened[k];
            for end in 0..2u8 {
                let f = file_of(oi, end);
                if self.roles.sent[f] != 0 && self.roles.opener_rep[f] == 0 && self.roles.held_fd[f] > 0 {
                    let _ = fd::close(self.roles.held_fd[f] - 1);
                    self.roles.held_fd[f] = 0;
                }
            }
        }
        if let Some(n) = core::num::NonZeroU32::new(self.plan.tasks[t].nofile).filter(|_| !self.session.preserve) {
            set_nofile(n.get()).map_err(|e| Failure::sys(t, "setrlimit RLIMIT_NOFILE (nofile=)", e))?;
        }
        self.unbatch()?;
        barrier.done(self.plan, t)
    }

    /// Back to SCHED_NORMAL if `batch_while_receiving` moved this task. Never refused (a fair
    /// policy at the same nice value); if it were, the task would not be as it started.
    fn unbatch(&mut self) -> Result<(), Failure> {
        if core::mem::take(&mut self.batch) {
            proc::sched_setscheduler(g::SCHED_NORMAL).map_err(|e| Failure::sys(self.t, "sched_setscheduler (back to SCHED_NORMAL)", e))?;
        }
        Ok(())
    }

    fn target(&self, i: u32) -> &Target {
        &self.plan.targets[i as usize]
    }

    /// Splits what this task receives into runs, one per opener, and binds each run's first
    /// window of sockets.
    fn park_sockets(&mut self, barrier: &Barrier<'_>) -> Result<(), Failure> {
        let t = self.t;
        let (tb, te) = (self.roles.task_batches[t] as usize, self.roles.task_batches[t + 1] as usize);
        let mut nruns = 0;
        let mut bi = tb;
        while bi < te {
            let opener = self.roles.batches[bi].opener;
            let mut end = bi;
            while end < te && self.roles.batches[end].opener == opener {
                end += 1;
            }
            self.runs[nruns] = Run { end: end as u32, next: bi as u32, bound: bi as u32 };
            nruns += 1;
            bi = end;
        }
        self.runs = &mut core::mem::take(&mut self.runs)[..nruns];
        self.remaining = te - tb;
        for k in 0..nruns {
            let opener = self.roles.batches[self.runs[k].next as usize].opener as usize;
            barrier.await_home(opener, t, self.session.deadline)?;
        }
        self.bind_next = tb as u32;
        let first = (te - tb).min(self.window as usize) as u32;
        self.bind_more(first, barrier.abort_fd())?;
        barrier.publish_bound(t, first);
        Ok(())
    }

    /// Binds the next `n` sockets in this task's order (run after run), moving `bind_run` along.
    fn bind_more(&mut self, n: u32, abort_fd: Fd) -> Result<(), Failure> {
        for _ in 0..n {
            let bi = self.bind_next;
            while self.runs[self.bind_run].end <= bi {
                self.bind_run += 1;
            }
            self.bind_socket(bi as usize, abort_fd)?;
            self.bind_next += 1;
            self.outstanding += 1;
            self.runs[self.bind_run].bound = bi + 1;
        }
        Ok(())
    }

    /// Whether batch `k` (an index into `Roles::batches`) is among the first `window` of its
    /// receiver's batches: bound before the barrier, so its opener may send it uncredited.
    fn pre_credited(&self, k: u32) -> bool {
        let r = self.roles.batches[k as usize].receiver as usize;
        k - self.roles.task_batches[r] < self.window
    }

    /// Batch `bi`'s receiving socket: bound, connected to its opener's home, parked in its slot.
    fn bind_socket(&mut self, bi: usize, abort_fd: Fd) -> Result<(), Failure> {
        let t = self.t;
        self.close_temps()?;
        let b = self.roles.batches[bi];
        let slot = b.slot;
        let obj = self.target(self.roles.recv[b.first as usize]).object;
        let end = self.target(self.roles.recv[b.first as usize]).end;
        let fail = |f: Failure| f.at_fd(slot).on(obj, end);
        let s = sock::socket_unix(n::SOCK_DGRAM | sock::SOCK_CLOEXEC).map_err(|e| fail(Failure::sys(t, "socket", e)))?;
        if s as u32 != slot {
            fd::dup3(s, slot as Fd, g::O_CLOEXEC).map_err(|e| fail(Failure::sys(t, "dup3 (socket into slot)", e)))?;
            fd::close(s).map_err(|e| fail(Failure::sys(t, "close", e)))?;
        }
        let s = slot as Fd;
        let opener_id = self.plan.tasks[b.opener as usize].id;
        let name = self.session.names.rx(self.id, opener_id, b.index);
        // Connected first, bound after: without a name nobody can send to it, and once it has
        // one only its opener can (a connected datagram socket refuses other senders).
        // SO_PASSCRED (only where the home's name is not vouched for) comes last: on an
        // unnamed socket, connect would autobind it.
        match barrier::connect_when_bound(s, &self.session.names.home(opener_id), self.session.deadline, abort_fd) {
            Ok(barrier::Reached::Connected) => {}
            Ok(barrier::Reached::Aborted) => return Err(fail(Failure::new(EXIT_PEER, t, "aborted by the parent (another process failed)"))),
            Ok(barrier::Reached::TimedOut) => {
                return Err(fail(Failure::new(EXIT_PEER, t, "timed out waiting for")
                    .peer(b.opener as usize)
                    .then(" to bind (not started, another plan or options, or another network namespace)")))
            }
            Err(e) => return Err(fail(Failure::sys(t, "connect (receiving socket)", e))),
        }
        sock::bind(s, &name).map_err(|e| fail(bind_failure(t, e, "bind (receiving socket)")))?;
        if self.vouched {
            return Ok(());
        }
        sock::set_socket_int(s, n::SO_PASSCRED, 1).map_err(|e| fail(Failure::sys(t, "setsockopt SO_PASSCRED", e)))
    }

    /// Slides the window once enough has arrived (a quarter of it, or all that is left): binds
    /// the next sockets a quarter of the window at a time, and after each quarter publishes how
    /// many are bound (the credit, in `run`'s shared page) and wakes each opener concerned that
    /// waits for it.
    fn refill(&mut self, barrier: &Barrier<'_>) -> Result<(), Failure> {
        let (tb, te) = (self.roles.task_batches[self.t], self.roles.task_batches[self.t + 1]);
        let unbound = te - self.bind_next;
        let room = self.window.saturating_sub(self.outstanding).min(unbound);
        let quarter = (self.window / 4).max(1);
        if room == 0 || room < quarter.min(unbound) {
            return Ok(());
        }
        // A quarter at a time, each published as soon as it is bound: an opener waiting for
        // credits sends the first quarter while the rest are bound.
        let mut left = room;
        while left > 0 {
            let n = left.min(quarter);
            left -= n;
            self.bind_and_credit(n, tb, barrier)?;
        }
        Ok(())
    }

    /// Binds the next `n` sockets, publishes the credit, and wakes each opener whose run the
    /// binding reached, if it waits.
    fn bind_and_credit(&mut self, n: u32, tb: u32, barrier: &Barrier<'_>) -> Result<(), Failure> {
        let from = self.bind_run;
        let before = self.runs[from].bound;
        self.bind_more(n, barrier.abort_fd())?;
        barrier.publish_bound(self.t, self.bind_next - tb);
        // Every run past `from` that the binding reached got sockets; `from` maybe none.
        for k in from..=self.bind_run {
            let r = self.runs[k];
            if k == from && r.bound == before {
                continue;
            }
            let opener = self.roles.batches[r.bound as usize - 1].opener as usize;
            if barrier.is_waiting(opener) {
                self.wake(opener)?;
            }
        }
        Ok(())
    }

    /// Wakes opener `u`, seen waiting for credits, with a datagram to its home from the waker:
    /// an unconnected socket of its own. Never from a receiving socket, although one is
    /// connected to that home: the opener may have seen the credit meanwhile, sent the batch,
    /// finished and closed its home, and a send on a datagram socket whose peer is gone
    /// disconnects it and purges its queue, the batch with it (the receiver then waits for
    /// a file that is lost). Gone (ECONNREFUSED): the opener needs no wake. A full queue at
    /// the home (EAGAIN) wakes it anyway, but EAGAIN may also mean the waker's own send buffer
    /// is full of wakes that openers have not drained: then once more from a fresh socket.
    fn wake(&mut self, u: usize) -> Result<(), Failure> {
        let to = self.session.names.home(self.plan.tasks[u].id);
        let t = self.t;
        let fail = |what: &'static str, e: Errno| Failure::sys(t, what, e).then(" (a wake to").peer(u).then(")");
        if self.waker < 0 {
            let s = sock::socket_unix(n::SOCK_DGRAM | sock::SOCK_CLOEXEC).map_err(|e| fail("socket", e))?;
            self.waker = move_to(s, self.waker_slot).map_err(|e| fail("dup3", e))?;
        }
        let sent = match sock::send_to(self.waker, b"w", n::MSG_DONTWAIT, &to) {
            Err(e) if e == Errno::AGAIN || e == Errno::INTR => {
                let fresh = sock::socket_unix(n::SOCK_DGRAM | sock::SOCK_CLOEXEC).map_err(|e| fail("socket", e))?;
                let sent = sock::send_to(fresh, b"w", n::MSG_DONTWAIT, &to);
                fd::close(fresh).map_err(|e| fail("close", e))?;
                sent
            }
            sent => sent,
        };
        match sent {
            Ok(_) => Ok(()),
            Err(e) if e == Errno::AGAIN || e == Errno::INTR || e == Errno::CONNREFUSED => Ok(()),
            Err(e) => Err(fail("sendto", e)),
        }
    }

    /// Drops what is queued at the home socket: wakes (and anything a stranger sent). Room for
    /// credentials only: fds a stranger attaches are dropped by the kernel, never installed.
    fn drain_home(&mut self) {
        let mut buf = [0u8; 8];
        let mut from = crate::sys::socket::UnixAddr::abstract_name(b"");
        while barrier::recv_plain(self.home, &mut buf, &mut from).is_ok() {}
    }

    /// Opens, in object order, this task's objects up to and including object `upto`, and
    /// places each in its own slots; files it only sends are held in the service range.
    /// Object order keeps a reopen after the object it reopens.
    fn open_through(&mut self, upto: u32, slots: &mut Slots<'_>) -> Result<(), Failure> {
        let t = self.t;
        let (ob, oe) = (self.roles.task_opened[t] as usize, self.roles.task_opened[t + 1] as usize);
        while ob + self.opened < oe && self.roles.opened[ob + self.opened] <= upto {
            let oi = self.roles.opened[ob + self.opened];
            self.opened += 1;
            let obj = self.plan.objects[oi as usize];
            let base = if obj.kind == KIND_REOPEN { self.held(file_of(obj.value as u32, obj.extra as u8)) } else { -1 };
            // A regular file is opened with the FD_CLOEXEC its slot wants: no fcntl after.
            let reg_cloexec = match self.roles.opener_rep[file_of(oi, 0)] {
                0 => true,
                rep => self.target(rep - 1).cloexec != 0,
            };
            let src_cloexec = obj.kind != KIND_REG || reg_cloexec;
            let opened = if obj.kind == KIND_INHERIT {
                // Adopted at the start: it already sits in the service range.
                let f = file_of(oi, 0);
                if self.roles.opener_rep[f] == 0 {
                    continue;
                }
                let held = self.roles.held_fd[f] - 1;
                self.roles.held_fd[f] = 0;
                Ok(open::Opened { fds: [held, -1], n: 1 })
            } else {
                let dir = if obj.kind == KIND_REG && self.dir.slot >= 0 { self.dir_for(ob + self.opened - 1, oe, &obj) } else { None };
                open::open_object(self.plan, &obj, base, reg_cloexec, dir, &mut self.path)
            };
            let opened = opened.map_err(|(what, e)| {
                // The opener's own fd of it (a spread opener's need not be the first).
                let own = self.plan.task_targets(t).iter().find(|x| x.object == oi);
                let first = own.or_else(|| self.plan.targets.iter().find(|x| x.object == oi));
                match first {
                    Some(x) if x.task as usize == t => Failure::sys(t, what, e).on(oi, 0).at_fd(x.fd),
                    // A relay names the first task that wanted the file.
                    Some(x) if self.plan.tasks[t].relay != 0 => Failure::sys(x.task as usize, what, e).on(oi, 0).at_fd(x.fd).via(t),
                    _ => Failure::sys(t, what, e).on(oi, 0),
                }
            })?;
            let mut moves = [Move::default(); 2];
            let mut nm = 0;
            let mut ends = [0u8; 2];
            for end in 0..opened.n {
                let f = file_of(oi, end as u8);
                let src = opened.fds[end];
                let rep = self.roles.opener_rep[f];
                if rep != 0 {
                    let x = self.target(rep - 1);
                    moves[nm] = Move::new(src, x.fd as Fd, x.cloexec != 0, src_cloexec);
                } else if self.roles.sent[f] != 0 {
                    let to = slots.take().ok_or_else(|| Failure::new(EXIT_RESTORE, t, "no fd number left to hold a file").on(oi, end as u8))?;
                    self.roles.held_fd[f] = to + 1;
                    moves[nm] = Move::new(src, to, true, src_cloexec);
                } else {
                    // A pipe end nobody holds: the plan closes it.
                    fd::close(src).map_err(|e| Failure::sys(t, "close", e).on(oi, end as u8))?;
                    continue;
                }
                ends[nm] = end as u8;
                nm += 1;
            }
            let rep = self.roles.opener_rep[file_of(oi, ends[0])];
            if nm == 1 && self.in_slot_order && rep != 0 && self.place_keeping_landing(moves[0].src, rep - 1)? {
                continue;
            }
            // A move or dup below might replace a number left open, which close_temps would
            // then close.
            self.close_temps()?;
            parallel_move(&mut moves[..nm]).map_err(|(i, e)| {
                Failure::sys(t, "dup3", e).at_fd(moves[i].dst as u32).on(oi, ends[i])
            })?;
            for &end in &ends[..nm] {
                let rep = self.roles.opener_rep[file_of(oi, end)];
                if rep != 0 {
                    self.place_dups(rep - 1)?;
                }
            }
        }
        Ok(())
    }

    /// Places in target `x`'s slot the fd that landed at `from` (a spread opener's file below
    /// its slot, on a lower chunk's; in the seed's form, a received fd) by dup3 alone, leaving
    /// `from` open, so that the next fd lands just above it and a run of them is closed with
    /// one close_range before anything could be put there (a received batch, a receiving
    /// socket, another move or dup; `close_temps` is called before each). Only for a file with
    /// no dups in this task that landed on a planned slot (see `is_planned`); false (nothing
    /// done) for the others.
    fn place_keeping_landing(&mut self, from: Fd, x: u32) -> Result<bool, Failure> {
        let target = *self.target(x);
        let to = target.fd as Fd;
        if from == to || self.roles.next_dup[x as usize] != 0 || !self.is_planned(from) {
            return Ok(false);
        }
        let (lo, hi) = self.temps;
        if (lo <= to && to <= hi) || (lo <= hi && from != hi + 1) {
            self.close_temps()?;
        }
        fd::dup3(from, to, if target.cloexec != 0 { g::O_CLOEXEC } else { 0 })
            .map_err(|e| Failure::sys(self.t, "dup3", e).at_fd(target.fd).on(target.object, target.end))?;
        if self.temps.0 > self.temps.1 {
            self.temps.0 = from;
        }
        self.temps.1 = from;
        Ok(true)
    }

    /// Whether `n` is one of this task's planned slots. A number left open (`temps`) must be
    /// one, still empty: then the fds open never outnumber the planned slots and the service
    /// range, and the room `check_limits` counted under RLIMIT_NOFILE stays free (a received
    /// fd that landed above them, kept open, could take the number the next one needs).
    fn is_planned(&self, n: Fd) -> bool {
        self.plan.task_targets(self.t).binary_search_by_key(&(n as u32), |x| x.fd).is_ok()
    }

    /// Closes the numbers `place_keeping_landing` left open.
    fn close_temps(&mut self) -> Result<(), Failure> {
        let (lo, hi) = core::mem::replace(&mut self.temps, (0, -1));
        if lo <= hi {
            fd::close_range(lo as u32, hi as u32).map_err(|e| Failure::sys(self.t, "close_range", e).at_fd(lo as u32))?;
        }
        Ok(())
    }

    /// The directory to open regular file `obj` (at `k` in `Roles::opened`, whose part for this
    /// task ends at `end`) relative to: the one held, if it is the file's; else the file's own,
    /// once it holds the next `DIR_RUN` objects too (so that opening it pays); else none.
    fn dir_for(&mut self, k: usize, end: usize, obj: &Object) -> Option<(Fd, Span)> {
        if let Some(hit) = self.dir.lookup(self.plan, obj.path) {
            return Some(hit);
        }
        let cut = open::dir_split(self.plan, obj.path)?;
        let dir = &self.plan.span(obj.path)[..cut];
        let next = &self.roles.opened[(k + 1).min(end)..end];
        let same = |&o: &u32| {
            let x = &self.plan.objects[o as usize];
            x.kind == KIND_REG && open::dir_split(self.plan, x.path) == Some(cut) && self.plan.span(x.path)[..cut] == *dir
        };
        if next.len() < open::DIR_RUN || !next[..open::DIR_RUN].iter().all(same) {
            return None;
        }
        self.dir.hold(self.plan, obj.path, cut, &mut self.path)
    }

    /// Copies a placed rep into the task's other slots of the same file.
    fn place_dups(&self, rep: u32) -> Result<(), Failure> {
        let from = self.target(rep).fd as Fd;
        let mut next = self.roles.next_dup[rep as usize];
        while next != 0 {
            let x = self.target(next - 1);
            fd::dup3(from, x.fd as Fd, if x.cloexec != 0 { g::O_CLOEXEC } else { 0 })
                .map_err(|e| Failure::sys(self.t, "dup3", e).at_fd(x.fd).on(x.object, x.end))?;
            next = self.roles.next_dup[next as usize - 1];
        }
        Ok(())
    }

    /// The fd in this (opener) task that holds file `f`.
    fn held(&self, f: usize) -> Fd {
        match self.roles.opener_rep[f] {
            0 => self.roles.held_fd[f] - 1,
            rep => self.target(rep - 1).fd as Fd,
        }
    }

    /// Sends every batch this task opens for others, going round its receivers (one batch
    /// each per round, in each receiver's index order) so that all of them work at once. A
    /// batch whose socket is not bound yet (not credited) is passed over until it is: a
    /// receiver's window may be taken by other openers, whom waiting here would stall. A send
    /// never blocks: when the socket's buffer is full (receivers have not read yet), the task
    /// drains its own sockets meanwhile.
    fn send_all(&mut self, slots: &mut Slots<'_>, barrier: &Barrier<'_>) -> Result<(), Failure> {
        let mut live = 0;
        for &k in self.roles.sends(self.t) {
            let b = self.roles.batches[k as usize];
            if b.index != 0 {
                // Sorted by (index, receiver): every lane's first batch comes first.
                break;
            }
            let mut len = 1;
            while let Some(n) = self.roles.batches.get((k + len) as usize) {
                if n.receiver != b.receiver || n.opener != b.opener {
                    break;
                }
                len += 1;
            }
            // The receiver binds its first `window` batches (in its order) before the barrier.
            let pos = k - self.roles.task_batches[b.receiver as usize];
            let pre = self.window.saturating_sub(pos).min(len);
            self.lanes[live] = Lane { first: k, len, sent: 0, pre };
            live += 1;
        }
        while live > 0 {
            let mut progressed = false;
            let mut i = 0;
            while i < live {
                let l = self.lanes[i];
                // A lane's batch index is how many of it were sent.
                if l.sent < l.pre || self.credited(l.first + l.sent, barrier) {
                    self.send_batch(l.first + l.sent, slots, barrier)?;
                    progressed = true;
                    self.lanes[i].sent += 1;
                    if l.sent + 1 == l.len {
                        live -= 1;
                        self.lanes.swap(i, live);
                        continue;
                    }
                }
                i += 1;
            }
            if !progressed {
                // Every lane waits for a credit. Waiting is published first, then the lanes
                // are looked at again: a receiver that bound more meanwhile is seen, or it
                // sees this task waiting and wakes it.
                barrier.set_waiting(self.t, true);
                if !self.lanes[..live].iter().any(|l| self.credited(l.first + l.sent, barrier)) {
                    self.pump(None, barrier)?;
                }
                barrier.set_waiting(self.t, false);
            }
        }
        Ok(())
    }

    /// Whether batch `k`'s socket is bound, by its receiver's credit in `run`'s shared page.
    fn credited(&self, k: u32, barrier: &Barrier<'_>) -> bool {
        let r = self.roles.batches[k as usize].receiver as usize;
        k - self.roles.task_batches[r] < barrier.bound_of(r)
    }

    /// Opens what batch `k` carries (if not yet) and sends it.
    fn send_batch(&mut self, k: u32, slots: &mut Slots<'_>, barrier: &Barrier<'_>) -> Result<(), Failure> {
        let b = self.roles.batches[k as usize];
        let receiver_id = self.plan.tasks[b.receiver as usize].id;
        self.out.start(&Header::for_batch(&b, receiver_id, self.id, self.session.names.plan_hash));
        for i in 0..b.count as usize {
            let x = *self.target(self.roles.message_entry(&b, i));
            self.open_through(x.object, slots)?;
            let f = self.held(file_of(x.object, x.end));
            self.out.push(x.fd, f);
        }
        let to = self.session.names.rx(receiver_id, self.id, b.index);
        // While a send waits for room, receivers that take batches in slot order must take
        // whatever has arrived (see `receive_in_slot_order`): counted until it goes.
        let mut stalled = false;
        let sent = self.send_to_receiver(&to, &b, &mut stalled, barrier);
        if stalled {
            barrier.set_stalled(false);
        }
        sent
    }

    /// Sends the message built in `out` to `to` (batch `b`'s socket), taking what arrives while
    /// it waits for room; marks `stalled` (and counts it in `run`'s shared page) once it has to.
    fn send_to_receiver(&mut self, to: &crate::sys::socket::UnixAddr, b: &Batch, stalled: &mut bool, barrier: &Barrier<'_>) -> Result<(), Failure> {
        let t = self.t;
        loop {
            let e = match self.out.send(self.home, to) {
                Ok(()) => return Ok(()),
                Err(e) if e == Errno::INTR => continue,
                Err(e) => e,
            };
            if (e == Errno::AGAIN || e == Errno::TOOMANYREFS) && !*stalled {
                *stalled = true;
                barrier.set_stalled(true);
            }
            match e {
                Errno::AGAIN => self.pump(Some(self.home), barrier)?,
                // Too many fds in flight for this user: wait for receivers to take some.
                Errno::TOOMANYREFS => self.pump_for(barrier, 1_000_000)?,
                Errno::CONNREFUSED => {
                    return Err(Failure::new(EXIT_PEER, t, "the receiving socket is gone:").peer(b.receiver as usize).then(" ended").at_fd(b.slot))
                }
                e => return Err(Failure::sys(t, "sendmsg to", e).peer(b.receiver as usize).num(" fd ", b.slot as u64)),
            }
        }
    }

    /// Takes what has arrived; then waits, until the deadline, for the rest.
    fn receive_rest(&mut self, barrier: &Barrier<'_>) -> Result<(), Failure> {
        if self.in_slot_order {
            return self.receive_in_slot_order(barrier);
        }
        for k in 0..self.runs.len() {
            self.drain_run(k, barrier)?;
        }
        while self.remaining > 0 {
            self.pump(None, barrier)?;
        }
        Ok(())
    }

    /// Takes batches lowest slot first, so that each lands in its own slots (the kernel installs
    /// at the lowest free numbers; in arrival order most fds would move). Waits for the lowest
    /// bound head alone, but takes whatever has arrived while some opener's send waits for
    /// room: its room may be what the batches behind the head hold, so that waiting for the
    /// head alone could wait for ever.
    fn receive_in_slot_order(&mut self, barrier: &Barrier<'_>) -> Result<(), Failure> {
        while self.remaining > 0 {
            let mut lowest = None;
            let mut slot = u32::MAX;
            for (k, r) in self.runs.iter().enumerate() {
                if r.next < r.bound && self.roles.batches[r.next as usize].slot < slot {
                    lowest = Some(k);
                    slot = self.roles.batches[r.next as usize].slot;
                }
            }
            let Some(k) = lowest else {
                // Nothing bound: the window slides as batches arrive, so some are.
                self.pump(None, barrier)?;
                continue;
            };
            let head = self.runs[k].next;
            if self.try_receive(head, barrier)? {
                self.runs[k].next += 1;
                self.remaining -= 1;
                self.outstanding -= 1;
                self.refill(barrier)?;
                continue;
            }
            if barrier.any_stalled() {
                let before = self.remaining;
                for k in 0..self.runs.len() {
                    self.drain_run(k, barrier)?;
                }
                if self.remaining < before {
                    continue;
                }
            }
            let now = proc::monotonic_ns();
            if now >= self.session.deadline {
                return Err(self.timeout());
            }
            let mut head_fd = [g::pollfd { fd: slot as Fd, events: g::POLLIN as i16, revents: 0 }];
            match fd::poll(&mut head_fd, Some(STALL_CHECK_NS.min(self.session.deadline - now))) {
                Ok(_) => {}
                Err(e) if e == Errno::INTR => {}
                Err(e) => return Err(Failure::sys(self.t, "ppoll", e)),
            }
        }
        Ok(())
    }

    /// Receives run `k`'s messages in order while they are there, then slides its window.
    fn drain_run(&mut self, k: usize, barrier: &Barrier<'_>) -> Result<(), Failure> {
        loop {
            let r = self.runs[k];
            if r.next >= r.bound || !self.try_receive(r.next, barrier)? {
                break;
            }
            self.runs[k].next += 1;
            self.remaining -= 1;
            self.outstanding -= 1;
        }
        self.refill(barrier)
    }

    /// Waits for the next message of any run (and `tx` writable, if given; a wake at the home,
    /// where one may come), then takes what is ready.
    fn pump(&mut self, tx: Option<Fd>, barrier: &Barrier<'_>) -> Result<(), Failure> {
        self.pump_until(tx, barrier, self.session.deadline)
    }

    fn pump_for(&mut self, barrier: &Barrier<'_>, ns: u64) -> Result<(), Failure> {
        let until = (proc::monotonic_ns() + ns).min(self.session.deadline);
        self.pump_until(None, barrier, until)
    }

    fn pump_until(&mut self, tx: Option<Fd>, barrier: &Barrier<'_>, until: u64) -> Result<(), Failure> {
        // Only the head of each run: an opener sends a run in order, so nothing behind the
        // head can be there before it. One poll entry per opener, however many fds.
        let mut total = 0;
        for k in 0..self.runs.len() {
            let r = self.runs[k];
            if r.next < r.bound {
                self.roles.pollfds[total] = g::pollfd { fd: self.roles.batches[r.next as usize].slot as Fd, events: g::POLLIN as i16, revents: 0 };
                self.roles.pending[total] = k as u32;
                total += 1;
            }
        }
        let heads = total;
        if let Some(tx) = tx {
            self.roles.pollfds[total] = g::pollfd { fd: tx, events: g::POLLOUT as i16, revents: 0 };
            total += 1;
        }
        let home = if self.wakes { self.home } else { -1 };
        if home >= 0 {
            self.roles.pollfds[total] = g::pollfd { fd: home, events: g::POLLIN as i16, revents: 0 };
            total += 1;
        }
        // A parent tool may abort the group while this task waits for files.
        let watch = barrier.abort_fd();
        if watch >= 0 {
            self.roles.pollfds[total] = g::pollfd { fd: watch, events: g::POLLIN as i16, revents: 0 };
            total += 1;
        }
        let now = proc::monotonic_ns();
        if now >= self.session.deadline {
            return Err(self.timeout());
        }
        let left = until.saturating_sub(now);
        match fd::poll(&mut self.roles.pollfds[..total], Some(left)) {
            Ok(_) => {}
            Err(e) if e == Errno::INTR => return Ok(()),
            Err(e) => return Err(Failure::sys(self.t, "ppoll", e)),
        }
        if watch >= 0 && self.roles.pollfds[total - 1].revents != 0 {
            return Err(Failure::new(EXIT_PEER, self.t, "aborted by the parent (another process failed)"));
        }
        if home >= 0 && self.roles.pollfds[total - 1 - (watch >= 0) as usize].revents != 0 {
            self.drain_home();
        }
        for i in 0..heads {
            if self.roles.pollfds[i].revents == 0 {
                continue;
            }
            self.drain_run(self.roles.pending[i] as usize, barrier)?;
        }
        if proc::monotonic_ns() >= self.session.deadline && (self.remaining > 0 || tx.is_some()) {
            return Err(self.timeout());
        }
        Ok(())
    }

    fn timeout(&self) -> Failure {
        match self.runs.iter().find(|r| r.next < r.end) {
            Some(r) => {
                let b = &self.roles.batches[r.next as usize];
                Failure::new(EXIT_PEER, self.t, "timed out waiting for files from").peer(b.opener as usize).at_fd(b.slot)
            }
            None => Failure::new(EXIT_PEER, self.t, "timed out sending files (its receivers did not take them)"),
        }
    }

    /// Receives batch `bi` if its message is there; checks it came from the planned opener and
    /// says what the plan says; places it. Ok(false) when nothing has arrived yet.
    fn try_receive(&mut self, bi: u32, barrier: &Barrier<'_>) -> Result<bool, Failure> {
        let t = self.t;
        let b: Batch = self.roles.batches[bi as usize];
        if b.count > 1 {
            // A batch lands on the lowest free numbers, its moves go anywhere among its slots.
            self.close_temps()?;
        }
        let targets = self.plan.targets;
        let got = &mut self.rx;
        // Most of the batch's fds come out as planned: no fcntl afterwards.
        let entries = self.roles.entries(&b);
        let cloexec = 2 * entries.iter().filter(|&&e| targets[e as usize].cloexec != 0).count() >= entries.len();
        match transport::recv_batch(b.slot as Fd, got, cloexec) {
            Ok(()) => {}
            Err(e) if e == Errno::AGAIN || e == Errno::INTR => return Ok(false),
            Err(e) => return Err(Failure::sys(t, "recvmsg", e).at_fd(b.slot)),
        }
        let opener_id = self.plan.tasks[b.opener as usize].id;
        let expected = Header::for_batch(&b, self.id, opener_id, self.session.names.plan_hash);
        let n = entries.len();
        let slots_ok = got.slots().is_some_and(|s| s.len() == n && (0..n).all(|i| s[i] == targets[self.roles.message_entry(&b, i) as usize].fd));
        let creds_ok = match (got.creds, barrier.pid_of(b.opener as usize)) {
            (None, _) if self.vouched => true,
            (Some((_, uid)), _) if uid != self.uid => false,
            (Some((pid, _)), Some(want)) => pid == want,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let why = if got.truncated {
            Some("a message from its opener lost fds (MSG_CTRUNC)")
        } else if got.payload.header != expected || !slots_ok {
            Some("a message that does not match the plan")
        } else if !creds_ok {
            Some("a message without its opener's credentials")
        } else if got.nfds != b.count as usize {
            Some("a message with the wrong number of fds")
        } else {
            None
        };
        if let Some(why) = why {
            got.discard();
            return Err(Failure::new(EXIT_RESTORE, t, "refused ").then(why).at_fd(b.slot));
        }
        // Moves in entry order: the socket's slot first (its fd came last), as parallel_move
        // wants a first destination that may be replaced.
        let placed = if n == 1 {
            // The seed's form: one fd, no table of moves to set up. Under `run` where it
            // landed may stay open (see `place_keeping_landing`).
            let (e0, from) = (entries[0], got.fds[0]);
            if self.defer_received && self.place_keeping_landing(from, e0)? {
                return Ok(true);
            }
            self.close_temps()?;
            let x = &targets[e0 as usize];
            parallel_move(&mut [Move::new(from, x.fd as Fd, x.cloexec != 0, cloexec)])
        } else {
            // Only the batch's own moves are written: clearing room for 253 per message cost
            // more than the moves of a batch of two.
            let mut moves: heapless::Vec<Move, { MAX_BATCH as usize }> = heapless::Vec::new();
            for (i, &e) in entries.iter().enumerate() {
                let x = &targets[e as usize];
                let from = got.fds[(i + n - 1) % n];
                // Cannot overflow: a batch has at most MAX_BATCH entries.
                let _ = moves.push(Move::new(from, x.fd as Fd, x.cloexec != 0, cloexec));
            }
            parallel_move(&mut moves)
        };
        if let Err((i, e)) = placed {
            let x = &targets[self.roles.entries(&b)[i] as usize];
            return Err(Failure::sys(t, "dup3", e).at_fd(x.fd).on(x.object, x.end));
        }
        for &e in self.roles.entries(&b) {
            self.place_dups(e)?;
        }
        Ok(true)
    }
}

/// Moves the calling thread from SCHED_NORMAL to SCHED_BATCH, if it is there (no
/// SCHED_RESET_ON_FORK, no other policy). A woken SCHED_BATCH thread does not preempt the one
/// running, so an opener that wakes a receiver with every send keeps its core and runs ahead,
/// instead of its receivers taking turns with it, catching up, sleeping, and leaving a core
/// idle; CPU shares and wakeups onto an idle core are as before. Going back to SCHED_NORMAL at
/// the same nice value needs no privilege. Whether it moved. At 10,000 files x 5 tasks in the
/// seed's form, in three interleaved series of 21 runs: 14%, 6% and 3% less time, 8%, 7% and
/// 4% less CPU, idle time from 80 to 50 ms; 10,000 x 2, 100 tasks and the batched form
/// unchanged.
fn batch_while_receiving() -> bool {
    proc::sched_getscheduler() == Ok(g::SCHED_NORMAL) && proc::sched_setscheduler(g::SCHED_BATCH).is_ok()
}

/// Sets RLIMIT_NOFILE to `n` for soft and hard; where raising the hard limit is not permitted,
/// the soft one alone (if `n` fits under the hard limit).
pub fn set_nofile(n: u32) -> Result<(), Errno> {
    match proc::setrlimit(g::RLIMIT_NOFILE, n as u64, n as u64) {
        Err(e) if e == Errno::PERM => {
            let (_, hard) = proc::getrlimit(g::RLIMIT_NOFILE)?;
            if (n as u64) > hard {
                return Err(e);
            }
            proc::setrlimit(g::RLIMIT_NOFILE, n as u64, hard)
        }
        other => other,
    }
}

fn bind_failure(t: usize, e: Errno, what: &'static str) -> Failure {
    let f = Failure::sys(t, what, e);
    if e == Errno::ADDRINUSE {
        f.then(" (the name is taken by another process)")
    } else {
        f
    }
}
