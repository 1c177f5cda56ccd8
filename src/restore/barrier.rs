//! "Every receiver is bound" before any send, and "done" after: the only things tasks ever ask
//! each other. Three channels, none of which an outsider can forge:
//! - `Shared`: `run`'s shared memory (futex), with an eventfd that wakes `run`;
//! - `SyncFd`: a parent tool's SOCK_SEQPACKET socketpair (`bound`, `go`/`abort`, `done`, `error: ...`);
//! - `Peers`: the tasks among themselves over AF_UNIX datagram sockets; the first task of the plan
//!   coordinates, the others' barrier sockets are connected to it (so only it can say `go`), and it
//!   accepts `bound` only from the socket bound at that task's own name, with the same uid.
//!
//! Every wait ends at the session's one deadline.

use super::slots::{move_to, Slots};
use super::transport::Names;
use crate::plan::Plan;
use crate::report::{Failure, EXIT_PEER, EXIT_RESTORE};
use crate::sys::socket::{self as sock, UnixAddr};
use crate::sys::{fd, proc, Errno, Fd};
use crate::text::Line;
use core::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use linux_raw_sys::general as g;
use linux_raw_sys::net as n;

pub const STATE_NEW: u32 = 0;
pub const STATE_STARTED: u32 = 1;
/// Its home socket is bound (if it sends): receivers may connect to it.
pub const STATE_HOME: u32 = 2;
pub const STATE_BOUND: u32 = 3;
pub const STATE_DONE: u32 = 4;
pub const STATE_FAILED: u32 = 5;

pub const GO_WAIT: u32 = 0;
pub const GO: u32 = 1;
pub const GO_ABORT: u32 = 2;

/// The shared page's header.
#[repr(C)]
pub struct SharedHeader {
    pub go: AtomicU32,
    pub bound: AtomicU32,
    pub done: AtomicU32,
    pub failed: AtomicU32,
    /// Openers whose send waits for room (their buffer, or the fds in flight, is full): a
    /// receiver that takes batches in slot order then takes whatever has arrived.
    pub stalled: AtomicU32,
}

/// One task's record in shared memory; `text` holds its error line when it failed.
#[repr(C)]
pub struct SharedTask {
    pub pid: AtomicI32,
    pub state: AtomicU32,
    pub code: AtomicU32,
    pub len: AtomicU32,
    pub text: [u8; 240],
    /// As a receiver: how many of its batches (in its order) have their sockets bound. Its
    /// openers read it: this is the window's credit, which no message has to carry.
    pub bound: AtomicU32,
    /// As an opener: 1 while it waits for credits, so that a receiver that binds more wakes it.
    pub waiting: AtomicU32,
    /// Its failure's place in the order of the group's failures (with `len`).
    pub seq: AtomicU32,
}

/// `run`'s shared mapping: a header, then one record per task (plan order).
pub struct Shared {
    base: *mut u8,
    pub ntasks: usize,
}

impl Shared {
    pub fn bytes(ntasks: usize) -> usize {
        core::mem::size_of::<SharedHeader>() + ntasks * core::mem::size_of::<SharedTask>()
    }

    /// Maps the shared state (MAP_SHARED, so forks see one copy).
    pub fn map(ntasks: usize) -> Result<Shared, Errno> {
        let base = crate::sys::mem::map_anon(Self::bytes(ntasks), true)?;
        Ok(Shared { base, ntasks })
    }

    pub fn header(&self) -> &SharedHeader {
        // SAFETY: the mapping starts with a zero-initialised header (atomics valid when zero).
        unsafe { &*(self.base as *const SharedHeader) }
    }

    pub fn task(&self, t: usize) -> &SharedTask {
        assert!(t < self.ntasks);
        // SAFETY: record t lies inside the mapping; all fields are valid when zero.
        unsafe { &*(self.base.add(core::mem::size_of::<SharedHeader>() + t * core::mem::size_of::<SharedTask>()) as *const SharedTask) }
    }

    /// Publishes that task t (and `weight - 1` tasks sharing its table) is restored.
    ///
    /// Until now the task dies with its parent (PDEATHSIG): nobody else would reap or report
    /// it. From here on it must not, and the parent may go as soon as it sees DONE, so the flag
    /// is cleared first, then counted, then published.
    pub fn mark_done(&self, t: usize, weight: u32) {
        let _ = proc::prctl(linux_raw_sys::prctl::PR_SET_PDEATHSIG, 0);
        self.header().done.fetch_add(weight, Ordering::AcqRel);
        self.task(t).state.store(STATE_DONE, Ordering::Release);
        proc::futex_wake_all(&self.task(t).state);
    }

    /// Waits until task `u` has reached `state` (true), or failed, the group aborted, or the
    /// deadline passed (false).
    pub fn wait_state(&self, u: usize, state: u32, deadline: u64) -> bool {
        let word = &self.task(u).state;
        loop {
            let s = word.load(Ordering::Acquire);
            if s == STATE_FAILED || self.header().go.load(Ordering::Acquire) == GO_ABORT {
                return false;
            }
            if s >= state {
                return true;
            }
            let Some(left) = remaining(deadline) else { return false };
            let _ = proc::futex_wait(word, s, left.min(100_000_000));
        }
    }

    /// Records a failure line for task t (first writer wins) and aborts the barrier.
    pub fn record_failure(&self, t: usize, code: u8, line: &[u8]) {
        let rec = self.task(t);
        if rec.state.swap(STATE_FAILED, Ordering::AcqRel) != STATE_FAILED {
            let n = line.len().min(rec.text.len());
            // SAFETY: only task t (this process) writes its own text, before publishing len.
            unsafe { core::ptr::copy_nonoverlapping(line.as_ptr(), rec.text.as_ptr() as *mut u8, n) };
            rec.code.store(code as u32, Ordering::Relaxed);
            rec.seq.store(self.header().failed.fetch_add(1, Ordering::AcqRel), Ordering::Relaxed);
            rec.len.store(n as u32, Ordering::Release);
            proc::futex_wake_all(&rec.state);
        }
        self.abort();
    }

    pub fn abort(&self) {
        let h = self.header();
        if h.go.compare_exchange(GO_WAIT, GO_ABORT, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            proc::futex_wake_all(&h.go);
        }
    }

    /// Where task t's failure came in the group's failures (0: first), if it failed.
    pub fn failure_seq(&self, t: usize) -> u32 {
        self.task(t).seq.load(Ordering::Relaxed)
    }

    /// The recorded error line of task t, if it failed.
    pub fn failure_text(&self, t: usize) -> Option<(&[u8], u8)> {
        let rec = self.task(t);
        let len = rec.len.load(Ordering::Acquire) as usize;
        if rec.state.load(Ordering::Acquire) != STATE_FAILED || len == 0 {
            return None;
        }
        Some((&rec.text[..len], rec.code.load(Ordering::Relaxed) as u8))
    }
}

pub enum Mode<'a> {
    Shared(&'a Shared),
    SyncFd,
    Peers,
}

/// The channel of one task's barrier, with the fds it owns.
pub struct Barrier<'a> {
    pub mode: Mode<'a>,
    /// Where error lines go (restore: a copy of stderr), or -1.
    pub err_fd: Fd,
    /// The sync fd, or run's eventfd, or -1.
    pub chan_fd: Fd,
    /// Peers: this task's barrier socket.
    pub ctl_fd: Fd,
}

fn remaining(deadline: u64) -> Option<u64> {
    let now = proc::monotonic_ns();
    if now >= deadline {
        None
    } else {
        Some(deadline - now)
    }
}

/// Waits until `f` is readable (or hung up), or the deadline passes (Ok(false)).
pub fn wait_readable(f: Fd, deadline: u64) -> Result<bool, Errno> {
    loop {
        let Some(left) = remaining(deadline) else { return Ok(false) };
        let mut p = [g::pollfd { fd: f, events: g::POLLIN as i16, revents: 0 }];
        match fd::poll(&mut p, Some(left)) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(e) if e == Errno::INTR => {}
            Err(e) => return Err(e),
        }
    }
}

/// How `connect_when_bound` ended.
#[derive(PartialEq, Eq)]
pub enum Reached {
    Connected,
    TimedOut,
    /// `watch` became readable: the parent tool aborted.
    Aborted,
}

/// Connects `s` to `to`, retrying while the name is not bound yet, until the deadline or until
/// `watch` (if not -1) becomes readable.
pub fn connect_when_bound(s: Fd, to: &UnixAddr, deadline: u64, watch: Fd) -> Result<Reached, Errno> {
    let mut pause = 20_000u64;
    loop {
        match sock::connect(s, to) {
            Ok(()) => return Ok(Reached::Connected),
            Err(e) if e == Errno::CONNREFUSED || e == Errno::NOENT || e == Errno::AGAIN || e == Errno::INTR => {}
            Err(e) => return Err(e),
        }
        let Some(left) = remaining(deadline) else { return Ok(Reached::TimedOut) };
        if watch >= 0 {
            if wait_readable(watch, proc::monotonic_ns() + pause.min(left))? {
                return Ok(Reached::Aborted);
            }
        } else {
            proc::sleep_ns(pause.min(left));
        }
        pause = (pause * 2).min(2_000_000);
    }
}

const MSG_BOUND: &[u8] = b"bound";
const MSG_GO: &[u8] = b"go";
const MSG_ABORT: &[u8] = b"abort";
const MSG_DONE: &[u8] = b"done";
const MSG_ERROR: &[u8] = b"error";
const MSG_COMMIT: &[u8] = b"commit";

impl<'a> Barrier<'a> {
    /// The fds the restorer must keep while it works, in the order they were given.
    pub fn fds(&self) -> [Fd; 2] {
        [self.err_fd, self.chan_fd]
    }

    /// How many service numbers this barrier needs.
    pub fn service_need(&self) -> usize {
        (self.err_fd >= 0) as usize + (self.chan_fd >= 0) as usize + matches!(self.mode, Mode::Peers) as usize
    }

    /// Moves the barrier's fds into the service range.
    pub fn adopt(&mut self, slots: &mut Slots<'_>, t: usize) -> Result<(), Failure> {
        for f in [&mut self.err_fd, &mut self.chan_fd] {
            if *f >= 0 {
                let to = slots.take().ok_or_else(|| Failure::new(EXIT_RESTORE, t, "no fd number left for the restorer"))?;
                let old = *f;
                *f = move_to(old, to).map_err(|e| Failure::sys(t, "dup3 (service fd)", e))?;
                slots.adopted(old);
            }
        }
        Ok(())
    }

    /// Peers: creates this task's barrier socket; the others connect theirs to the coordinator's.
    pub fn prepare(&mut self, plan: &Plan<'_>, names: &Names, slots: &mut Slots<'_>, t: usize, deadline: u64) -> Result<(), Failure> {
        if !matches!(self.mode, Mode::Peers) {
            return Ok(());
        }
        let s = sock::socket_unix(n::SOCK_DGRAM | sock::SOCK_CLOEXEC | sock::SOCK_NONBLOCK).map_err(|e| Failure::sys(t, "socket", e))?;
        let to = slots.take().ok_or_else(|| Failure::new(EXIT_RESTORE, t, "no fd number left for the restorer"))?;
        self.ctl_fd = move_to(s, to).map_err(|e| Failure::sys(t, "dup3 (service fd)", e))?;
        let me = names.ctl(plan.tasks[t].id);
        if t == 0 {
            // Credentials on from the start: a `bound` sent the moment the name exists has them.
            sock::set_socket_int(self.ctl_fd, n::SO_PASSCRED, 1).map_err(|e| Failure::sys(t, "setsockopt SO_PASSCRED", e))?;
        } else {
            // Connected before it is named: nobody but the coordinator can ever queue a
            // message on it (a forged `go` sent in between would otherwise wait there).
            let coord = names.ctl(plan.tasks[0].id);
            match connect_when_bound(self.ctl_fd, &coord, deadline, -1) {
                Ok(Reached::Connected) => {}
                Ok(_) => return Err(Failure::new(EXIT_PEER, t, "timed out waiting for").peer(0).then(" (not started, another plan or options, or another network namespace)")),
                Err(e) => return Err(Failure::sys(t, "connect (barrier socket)", e)),
            }
        }
        sock::bind(self.ctl_fd, &me).map_err(|e| Failure::sys(t, "bind (barrier socket)", e))?;
        Ok(())
    }

    /// Publishes that task `t`'s home socket (if it sends) is bound. Only `run`'s shared
    /// states carry it; elsewhere receivers retry their connect.
    pub fn home_bound(&self, t: usize) {
        if let Mode::Shared(sh) = self.mode {
            // Only forward: a state already past HOME (FAILED included) stays.
            let word = &sh.task(t).state;
            if word.fetch_max(STATE_HOME, Ordering::AcqRel) < STATE_HOME {
                proc::futex_wake_all(word);
            }
        }
    }

    /// Waits (under `run`) until opener `u`'s home socket is bound, so that a receiver's
    /// connect finds it the first time: no retries, no sleeps. Elsewhere returns at once.
    pub fn await_home(&self, u: usize, t: usize, deadline: u64) -> Result<(), Failure> {
        let Mode::Shared(sh) = self.mode else { return Ok(()) };
        if sh.wait_state(u, STATE_HOME, deadline) {
            return Ok(());
        }
        if remaining(deadline).is_none() {
            return Err(Failure::new(EXIT_PEER, t, "timed out waiting for").peer(u).then(" to bind its home socket"));
        }
        Err(Failure::new(EXIT_PEER, t, "aborted: another task failed"))
    }

    /// Whether a receiving socket connected after `await_home` can hear from its opener only:
    /// under `run` the home's name is the opener's before anyone connects to it, and a
    /// connected datagram socket refuses every other sender. Elsewhere a receiver may have
    /// connected to a name a stranger held for a while, and credentials must vouch instead.
    pub fn homes_vouched(&self) -> bool {
        matches!(self.mode, Mode::Shared(_))
    }

    /// Publishes (under `run`) that receiver `t` has bound the sockets of its first `n`
    /// batches. Sequentially consistent, with `is_waiting` after it: an opener that starts to
    /// wait either sees these sockets or is seen waiting.
    pub fn publish_bound(&self, t: usize, n: u32) {
        if let Mode::Shared(sh) = self.mode {
            sh.task(t).bound.store(n, Ordering::SeqCst);
        }
    }

    /// How many of receiver `r`'s batches are bound, as far as `run`'s shared page says (0
    /// elsewhere, where every socket is bound before the barrier and no credit is needed).
    /// Sequentially consistent, as an opener's look after `set_waiting` must be: of the
    /// receiver's publish and its look at `is_waiting`, one sees the other.
    pub fn bound_of(&self, r: usize) -> u32 {
        match self.mode {
            Mode::Shared(sh) => sh.task(r).bound.load(Ordering::SeqCst),
            _ => 0,
        }
    }

    /// Marks (under `run`) opener `t` as waiting for credits, or no longer.
    pub fn set_waiting(&self, t: usize, waiting: bool) {
        if let Mode::Shared(sh) = self.mode {
            sh.task(t).waiting.store(waiting as u32, Ordering::SeqCst);
        }
    }

    /// Counts (under `run`) an opener whose send waits for room, or one no longer.
    pub fn set_stalled(&self, stalled: bool) {
        if let Mode::Shared(sh) = self.mode {
            if stalled {
                sh.header().stalled.fetch_add(1, Ordering::SeqCst);
            } else {
                sh.header().stalled.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// Whether some opener's send waits for room that only receivers can make.
    pub fn any_stalled(&self) -> bool {
        match self.mode {
            Mode::Shared(sh) => sh.header().stalled.load(Ordering::SeqCst) != 0,
            _ => false,
        }
    }

    /// Whether opener `u` waits for credits (and must be woken at its home socket).
    pub fn is_waiting(&self, u: usize) -> bool {
        match self.mode {
            Mode::Shared(sh) => sh.task(u).waiting.load(Ordering::SeqCst) != 0,
            _ => false,
        }
    }

    /// Reports "bound" and waits for "go".
    pub fn bound(&mut self, plan: &Plan<'_>, names: &Names, t: usize, deadline: u64) -> Result<(), Failure> {
        match self.mode {
            Mode::Shared(sh) => {
                let h = sh.header();
                sh.task(t).state.store(STATE_BOUND, Ordering::Release);
                // A table's owner answers for the tasks that share its table.
                let weight = 1 + plan.tasks[t].sharers as u32;
                if h.bound.fetch_add(weight, Ordering::AcqRel) + weight == sh.ntasks as u32
                    && h.go.compare_exchange(GO_WAIT, GO, Ordering::AcqRel, Ordering::Acquire).is_ok()
                {
                    proc::futex_wake_all(&h.go);
                }
                loop {
                    match h.go.load(Ordering::Acquire) {
                        GO => return Ok(()),
                        GO_ABORT => return Err(Failure::new(EXIT_PEER, t, "aborted: another task failed")),
                        _ => {}
                    }
                    let Some(left) = remaining(deadline) else {
                        let late = (0..sh.ntasks).find(|&u| sh.task(u).state.load(Ordering::Acquire) < STATE_BOUND).unwrap_or(t);
                        return Err(Failure::new(EXIT_PEER, t, "timed out waiting for").peer(late).then(" to bind its sockets"));
                    };
                    let _ = proc::futex_wait(&h.go, GO_WAIT, left);
                }
            }
            Mode::SyncFd => {
                sock::send(self.chan_fd, MSG_BOUND, 0).map_err(|e| Failure::sys(t, "send bound (sync fd)", e))?;
                let mut buf = [0u8; 64];
                match wait_readable(self.chan_fd, deadline) {
                    Ok(true) => {}
                    Ok(false) => return Err(Failure::new(EXIT_PEER, t, "timed out waiting for go on the sync fd")),
                    Err(e) => return Err(Failure::sys(t, "poll (sync fd)", e)),
                }
                match sock::recv(self.chan_fd, &mut buf, n::MSG_DONTWAIT) {
                    Ok(n) if &buf[..n] == MSG_GO => Ok(()),
                    Ok(0) => Err(Failure::new(EXIT_PEER, t, "the parent closed the sync fd before go")),
                    Ok(n) if &buf[..n] == MSG_ABORT => Err(Failure::new(EXIT_PEER, t, "aborted by the parent")),
                    Ok(_) => Err(Failure::new(EXIT_PEER, t, "unexpected message on the sync fd")),
                    Err(e) => Err(Failure::sys(t, "recv (sync fd)", e)),
                }
            }
            Mode::Peers => self.peers_bound(plan, names, t, deadline),
        }
    }

    fn peers_bound(&mut self, plan: &Plan<'_>, names: &Names, t: usize, deadline: u64) -> Result<(), Failure> {
        let ctl = self.ctl_fd;
        if t != 0 {
            let mut msg = [0u8; 8];
            msg[..5].copy_from_slice(MSG_BOUND);
            msg[6..8].copy_from_slice(&plan.tasks[t].id.to_le_bytes());
            match send_until(ctl, None, &msg, deadline) {
                Ok(()) => {}
                Err(e) if e == Errno::AGAIN => return Err(Failure::new(EXIT_PEER, t, "timed out sending bound to").peer(0)),
                Err(e) => return Err(Failure::sys(t, "send bound (barrier socket)", e)),
            }
            loop {
                match wait_readable(ctl, deadline) {
                    Ok(true) => {}
                    Ok(false) => return Err(Failure::new(EXIT_PEER, t, "timed out waiting for go from").peer(0)),
                    Err(e) => return Err(Failure::sys(t, "poll (barrier socket)", e)),
                }
                let mut buf = [0u8; 16];
                match sock::recv(ctl, &mut buf, n::MSG_DONTWAIT) {
                    Ok(n) if &buf[..n] == MSG_GO => return Ok(()),
                    Ok(8) if &buf[..5] == MSG_ABORT => {
                        // The coordinator names the task it gave up on (itself if it failed).
                        let why = plan.task_by_id(u16::from_le_bytes([buf[6], buf[7]])).unwrap_or(0);
                        let what = if why == 0 { "aborted: the restore failed in" } else { "aborted: the coordinator gave up on" };
                        return Err(Failure::new(EXIT_PEER, t, what).peer(why));
                    }
                    Ok(n) if &buf[..n] == MSG_ABORT => return Err(Failure::new(EXIT_PEER, t, "aborted by").peer(0)),
                    Ok(_) => {}
                    Err(e) if e == Errno::AGAIN || e == Errno::INTR => {}
                    Err(e) => return Err(Failure::sys(t, "recv (barrier socket)", e)),
                }
            }
        }
        // The coordinator: one "bound" from each other task's own socket, then "go" to all.
        let nt = plan.tasks.len();
        let mut arena = crate::arena::Arena::map(nt).map_err(|e| Failure::sys(t, "mmap", e))?;
        let seen = arena.take::<u8>(nt);
        // Tasks that share another's table take no part: their owner speaks for them.
        let mut missing = (1..nt).filter(|&u| plan.tasks[u].files == 0).count();
        let uid = proc::getuid();
        // Give up a little before the deadline, so that the abort naming the late task reaches
        // the others while they still wait for go (they would otherwise time out unknowing).
        let give_up = deadline - remaining(deadline).map_or(0, |left| (left / 10).min(250_000_000));
        while missing > 0 {
            match wait_readable(ctl, give_up) {
                Ok(true) => {}
                Ok(false) => {
                    let late = (1..nt).find(|&u| seen[u] == 0 && plan.tasks[u].files == 0).unwrap_or(0);
                    self.peers_send_all(plan, names, &abort_naming(plan, late));
                    return Err(Failure::new(EXIT_PEER, t, "timed out waiting for").peer(late).then(" to bind its sockets"));
                }
                Err(e) => return Err(Failure::sys(t, "poll (barrier socket)", e)),
            }
            let mut body = [0u8; 16];
            let mut from = UnixAddr::abstract_name(b"");
            let (len, sender) = match recv_plain(ctl, &mut body, &mut from) {
                Ok(got) => got,
                Err(e) if e == Errno::AGAIN || e == Errno::INTR => continue,
                Err(e) => return Err(Failure::sys(t, "recvmsg (barrier socket)", e)),
            };
            if len != 8 || (&body[..5] != MSG_BOUND && &body[..5] != MSG_ERROR) {
                continue;
            }
            let id = u16::from_le_bytes([body[6], body[7]]);
            let Some(u) = plan.task_by_id(id) else { continue };
            if u == 0 {
                continue;
            }
            if &body[..5] == MSG_ERROR {
                self.peers_send_all(plan, names, &abort_naming(plan, u));
                return Err(Failure::new(EXIT_PEER, t, "aborted: the restore failed in").peer(u));
            }
            // "bound" counts only from that task's own name, under our uid.
            if from.name_bytes() != names.ctl(id).name_bytes() || sender.map(|c| c.1) != Some(uid) {
                continue;
            }
            if seen[u] == 0 && plan.tasks[u].files == 0 {
                seen[u] = 1;
                missing -= 1;
            }
        }
        self.peers_send_all(plan, names, MSG_GO);
        Ok(())
    }

    fn peers_send_all(&self, plan: &Plan<'_>, names: &Names, msg: &[u8]) {
        for u in 1..plan.tasks.len() {
            let to = names.ctl(plan.tasks[u].id);
            let _ = sendto_blocking(self.ctl_fd, &to, msg);
        }
    }

    /// Reports that this task's table is complete.
    pub fn done(&mut self, plan: &Plan<'_>, t: usize) -> Result<(), Failure> {
        match self.mode {
            Mode::Shared(sh) => {
                sh.mark_done(t, 1 + plan.tasks[t].sharers as u32);
                let _ = fd::write(self.chan_fd, &1u64.to_ne_bytes());
                Ok(())
            }
            Mode::SyncFd => sock::send(self.chan_fd, MSG_DONE, 0).map(|_| ()).map_err(|e| Failure::sys(t, "send done (sync fd)", e)),
            Mode::Peers => Ok(()),
        }
    }

    /// The fd on which a parent tool can abort the group while the restore runs (the sync fd:
    /// after `go`, any message or hang-up there means abort), or -1.
    pub fn abort_fd(&self) -> Fd {
        match self.mode {
            Mode::SyncFd => self.chan_fd,
            _ => -1,
        }
    }

    /// Preserve mode, after `done`: waits for the parent's `commit` (the whole group is done) or
    /// `abort` (another process failed: roll back). Only the sync fd has a parent to ask; the
    /// other channels commit at once.
    pub fn await_commit(&mut self, t: usize, deadline: u64) -> Result<(), Failure> {
        if !matches!(self.mode, Mode::SyncFd) {
            return Ok(());
        }
        match wait_readable(self.chan_fd, deadline) {
            Ok(true) => {}
            Ok(false) => return Err(Failure::new(EXIT_PEER, t, "timed out waiting for commit on the sync fd")),
            Err(e) => return Err(Failure::sys(t, "poll (sync fd)", e)),
        }
        let mut buf = [0u8; 64];
        match sock::recv(self.chan_fd, &mut buf, n::MSG_DONTWAIT) {
            Ok(n) if &buf[..n] == MSG_COMMIT => Ok(()),
            Ok(0) => Err(Failure::new(EXIT_PEER, t, "the parent closed the sync fd before commit")),
            Ok(n) if &buf[..n] == MSG_ABORT => Err(Failure::new(EXIT_PEER, t, "aborted by the parent: another process failed")),
            Ok(_) => Err(Failure::new(EXIT_PEER, t, "unexpected message on the sync fd")),
            Err(e) => Err(Failure::sys(t, "recv (sync fd)", e)),
        }
    }

    /// Tells the others that this task failed, with its error line.
    pub fn fail(&mut self, plan: &Plan<'_>, names: &Names, t: usize, code: u8, line: &[u8]) {
        match self.mode {
            Mode::Shared(sh) => {
                sh.record_failure(t, code, line);
                if self.chan_fd >= 0 {
                    let _ = fd::write(self.chan_fd, &1u64.to_ne_bytes());
                }
            }
            Mode::SyncFd => {
                let mut m = Line::<300>::new();
                m.str("error: ").push(line.strip_prefix(b"fdslot: ").unwrap_or(line));
                let _ = sock::send(self.chan_fd, m.as_bytes(), n::MSG_DONTWAIT);
            }
            Mode::Peers => {
                if t == 0 {
                    if self.ctl_fd >= 0 {
                        self.peers_send_all(plan, names, &abort_naming(plan, 0));
                    }
                    return;
                }
                // From a fresh unnamed socket: this task's own name may be what failed (taken by
                // another process). The coordinator aborts on an error from anyone, since an
                // abort can only ever stop a restore, never hand out a file.
                let Ok(s) = sock::socket_unix(n::SOCK_DGRAM | sock::SOCK_CLOEXEC) else { return };
                let mut msg = [0u8; 8];
                msg[..5].copy_from_slice(MSG_ERROR);
                msg[6..8].copy_from_slice(&plan.tasks[t].id.to_le_bytes());
                let _ = sendto_blocking(s, &names.ctl(plan.tasks[0].id), &msg);
                let _ = fd::close(s);
            }
        }
    }

    /// The pid of task `u`, where the barrier knows it.
    pub fn pid_of(&self, u: usize) -> Option<i32> {
        match self.mode {
            Mode::Shared(sh) => Some(sh.task(u).pid.load(Ordering::Acquire)).filter(|&p| p > 0),
            _ => None,
        }
    }

    /// Closes the barrier's fds (before exec, or when the task ends).
    pub fn close(&mut self) {
        for f in [&mut self.err_fd, &mut self.chan_fd, &mut self.ctl_fd] {
            if *f >= 0 {
                let _ = fd::close(*f);
                *f = -1;
            }
        }
    }
}

/// The coordinator's `abort`, naming the task it gave up on (index `u`; 0 for itself).
fn abort_naming(plan: &Plan<'_>, u: usize) -> [u8; 8] {
    let mut msg = [0u8; 8];
    msg[..5].copy_from_slice(MSG_ABORT);
    msg[6..8].copy_from_slice(&plan.tasks[u].id.to_le_bytes());
    msg
}

/// `recvmsg` of one datagram without blocking: its length, and the sender's (pid, uid) if
/// credentials came. The sender's name goes to `from`. The control buffer holds credentials
/// only: fds a stranger attaches are dropped by the kernel, never installed here (so there is
/// nothing to close, and no close that could block).
pub(crate) fn recv_plain(s: Fd, buf: &mut [u8], from: &mut UnixAddr) -> Result<(usize, Option<(i32, u32)>), Errno> {
    const HDR: usize = core::mem::size_of::<n::cmsghdr>();
    #[repr(C, align(8))]
    struct Control([u8; HDR + 16]);
    let mut control = Control([0; HDR + 16]);
    let mut iov = g::iovec { iov_base: buf.as_mut_ptr() as *mut _, iov_len: buf.len() as _ };
    let mut msg = n::msghdr {
        msg_name: &mut from.raw as *mut _ as *mut _,
        msg_namelen: core::mem::size_of::<n::sockaddr_un>() as i32,
        msg_iov: &mut iov as *mut g::iovec as *mut _,
        msg_iovlen: 1,
        msg_control: control.0.as_mut_ptr() as *mut _,
        msg_controllen: control.0.len(),
        msg_flags: 0,
    };
    // SAFETY: every pointer in msg refers to a live buffer of the stated length.
    let len = unsafe { sock::recvmsg(s, &mut msg, n::MSG_DONTWAIT | n::MSG_CMSG_CLOEXEC) }?;
    from.len = msg.msg_namelen as u32;
    // SAFETY: the control buffer is 8-aligned; a header is read only where the kernel wrote one.
    let c: n::cmsghdr = unsafe { core::ptr::read(control.0.as_ptr() as *const n::cmsghdr) };
    let uid = if msg.msg_controllen >= HDR + 12 && c.cmsg_level == n::SOL_SOCKET as i32 && c.cmsg_type == n::SCM_CREDENTIALS as i32 && c.cmsg_len >= HDR + 12 {
        let d = &control.0[HDR..HDR + 8];
        Some((i32::from_ne_bytes([d[0], d[1], d[2], d[3]]), u32::from_ne_bytes([d[4], d[5], d[6], d[7]])))
    } else {
        None
    };
    Ok((len, uid))
}

/// A datagram to `to` (or the connected peer), waiting a little for room; for the few barrier
/// messages, whose receivers are waiting for them.
fn sendto_blocking(from: Fd, to: &UnixAddr, msg: &[u8]) -> Result<(), Errno> {
    send_until(from, Some(to), msg, proc::monotonic_ns() + 1_000_000_000)
}

/// Sends one datagram without blocking, retrying while the receiver's queue is full, until
/// `deadline`.
fn send_until(from: Fd, to: Option<&UnixAddr>, msg: &[u8], deadline: u64) -> Result<(), Errno> {
    let mut iov = g::iovec { iov_base: msg.as_ptr() as *mut _, iov_len: msg.len() as _ };
    let (name, namelen) = match to {
        Some(a) => (&a.raw as *const n::sockaddr_un as *mut _, a.len as i32),
        None => (core::ptr::null_mut(), 0),
    };
    let m = n::msghdr {
        msg_name: name,
        msg_namelen: namelen,
        msg_iov: &mut iov as *mut g::iovec as *mut _,
        msg_iovlen: 1,
        msg_control: core::ptr::null_mut(),
        msg_controllen: 0,
        msg_flags: 0,
    };
    loop {
        // SAFETY: m points to live locals.
        match unsafe { sock::sendmsg(from, &m, n::MSG_DONTWAIT | n::MSG_NOSIGNAL) } {
            Err(e) if e == Errno::AGAIN && proc::monotonic_ns() < deadline => proc::sleep_ns(200_000),
            other => return other.map(|_| ()),
        }
    }
}
