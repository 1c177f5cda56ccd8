//! `fdslot run`: forks the task tree, lets every task rebuild its own table, and supervises.
//!
//! The plan, its roles and the session are computed once, here, before any fork: every task
//! inherits them. Tasks meet at a futex barrier in shared memory; they wake `run` through an
//! eventfd when they fail or finish. `run` is a child subreaper so every task ends up its to reap.

use super::args::{self, Args};
use super::{compute_roles, eprint, exec, load_plan, print};
use crate::plan::Plan;
use crate::report::{EXIT_PEER, EXIT_RESTORE};
use crate::restore::barrier::{Barrier, Mode, Shared, STATE_DONE, STATE_STARTED};
use crate::restore::roles::{Roles, MAX_BATCH};
use crate::restore::transport::{plan_hash, Names};
use crate::restore::{relay, restore_task, Session, MAX_KEEP};
use crate::sys::{fd, proc, Fd};
use crate::text::Line;
use core::sync::atomic::Ordering;
use linux_raw_sys::general as g;

struct Run<'a> {
    /// The plan, with `run`'s relays after its own tasks if it has any (see `relay`).
    plan: &'a Plan<'a>,
    /// How many of `plan`'s tasks are the plan's own.
    tasks: usize,
    roles: Roles<'static>,
    shared: Shared,
    session: Session<'a>,
    names: Names,
    stop: bool,
    /// `--verify`: the tasks stop once restored (as with --stop) so that run can check them.
    verify: bool,
    /// `--stop` as asked: print `ready` and leave the tasks stopped.
    report_ready: bool,
    event_fd: Fd,
    signal_fd: Fd,
    old_mask: u64,
    envp: *const *const u8,
}

/// `fdslot run`.
///
/// # Safety
/// `envp` must be the process's environment array.
pub unsafe fn cmd_run(a: &mut Args, envp: *const *const u8) -> i32 {
    let (mut path, mut stop, mut timeout, mut batch) = (None, false, 10_000_000_000u64, MAX_BATCH);
    let mut verify = false;
    let mut relays = relay::Choice::Auto;
    let mut keep = heapless::Vec::<u32, MAX_KEEP>::new();
    while let Some(arg) = a.next() {
        let r = match arg {
            b"--stop" => {
                stop = true;
                Ok(())
            }
            b"--verify" => {
                verify = true;
                Ok(())
            }
            b"--timeout" => a.timeout().map(|v| timeout = v),
            b"--batch" => a.batch().map(|v| batch = v),
            b"--relays" => a.relays().map(|v| relays = v),
            b"--keep" => a.keep(&mut keep),
            _ if path.is_none() && !arg.starts_with(b"--") => {
                path = Some(arg);
                Ok(())
            }
            _ => Err(args::unexpected(arg)),
        };
        if let Err(c) = r {
            return c;
        }
    }
    let Some(path) = path else { return super::usage_error(b"run needs a PLAN") };
    let deadline = proc::monotonic_ns() + timeout;
    let plan = match load_plan(path, true) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let relayed = match choose_relays(&plan, batch, relays, keep.len()) {
        Ok(r) => r,
        Err(c) => return c,
    };
    // Without relays, long runs of objects that the same tables hold get spread openers.
    let spread = match relayed {
        Some(_) => None,
        None => match crate::restore::spread::spread(&plan, batch, crate::restore::window_for(plan.tasks.len())) {
            Ok(s) => s,
            Err(e) => {
                let mut l = Line::<200>::new();
                l.str("fdslot: run: mmap (spread openers): ").str(e.name().unwrap_or("error")).str("\n");
                eprint(l.as_bytes());
                return EXIT_RESTORE as i32;
            }
        },
    };
    let tasks = plan.tasks.len();
    let slot_order = spread.is_some();
    let plan = relayed.as_ref().or(spread.as_ref()).unwrap_or(&plan);
    let roles = match compute_roles(plan, batch) {
        Ok(r) => r,
        Err(c) => return c,
    };
    // The tasks find --keep and inherit fds in the table they inherit from run: check that the
    // caller really passed them before run opens fds of its own, which could take those numbers.
    for &k in keep.iter() {
        if fd::fcntl(k as Fd, g::F_GETFD, 0).is_err() {
            let mut l = Line::<100>::new();
            l.str("--keep ").num(k as u64).str(": fd ").num(k as u64).str(" is not open");
            return super::usage_error(l.peek());
        }
    }
    for o in plan.objects {
        if o.kind == crate::plan::KIND_INHERIT && fd::fcntl(o.value as Fd, g::F_GETFD, 0).is_err() {
            let mut l = Line::<200>::new();
            l.str("fdslot: inherit ").num(o.id as u64).str(": fd ").num(o.value).str(" is not open in fdslot run's caller\n");
            eprint(l.as_bytes());
            return EXIT_RESTORE as i32;
        }
    }
    let fail = |what: &str, e: crate::sys::Errno| {
        let mut l = Line::<200>::new();
        l.str("fdslot: run: ").str(what).str(": ").str(e.name().unwrap_or("error")).str("\n");
        eprint(l.as_bytes());
        EXIT_RESTORE as i32
    };
    let mut random = [0u8; 16];
    if let Err(e) = proc::getrandom(&mut random) {
        return fail("getrandom", e);
    }
    let mut session_name = Line::<32>::new();
    for b in random {
        session_name.hex(b as u64, 2);
    }
    // The relays are not in the hash: every process of the group is a fork of this one.
    let names = Names::new(session_name.peek(), plan_hash(plan.text, batch));
    let shared = match Shared::map(plan.tasks.len()) {
        Ok(s) => s,
        Err(e) => return fail("mmap", e),
    };
    let mask = proc::sigbit(g::SIGCHLD) | proc::sigbit(g::SIGTERM) | proc::sigbit(g::SIGINT) | proc::sigbit(g::SIGHUP);
    let old_mask = match proc::sigprocmask(g::SIG_BLOCK, mask) {
        Ok(m) => m,
        Err(e) => return fail("sigprocmask", e),
    };
    let signal_fd = match proc::signalfd(mask, g::O_CLOEXEC | g::O_NONBLOCK) {
        Ok(f) => f,
        Err(e) => return fail("signalfd", e),
    };
    let event_fd = match fd::eventfd(0, g::EFD_CLOEXEC | g::EFD_NONBLOCK) {
        Ok(f) => f,
        Err(e) => return fail("eventfd", e),
    };
    if let Err(e) = proc::prctl(linux_raw_sys::prctl::PR_SET_CHILD_SUBREAPER, 1) {
        return fail("prctl(PR_SET_CHILD_SUBREAPER)", e);
    }
    let mut run = Run {
        plan,
        tasks,
        roles,
        shared,
        session: Session { names, keep: &keep, deadline, preserve: false, keep_others: false, slot_order },
        names,
        stop: stop || verify,
        verify,
        report_ready: stop,
        event_fd,
        signal_fd,
        old_mask,
        envp,
    };
    for t in 0..plan.tasks.len() {
        if plan.tasks[t].parent == 0 && plan.tasks[t].files == 0 {
            if let Err(code) = run.spawn(t) {
                return run.abort(code);
            }
        }
    }
    run.supervise()
}

/// The plan with the relays `run` adds (see `relay`), if it adds any: asked for with
/// `--relays N`, or by default where they cost less (`relay::assign`).
fn choose_relays(plan: &Plan<'static>, batch: u16, choice: relay::Choice, keep: usize) -> Result<Option<Plan<'static>>, i32> {
    let fail = |e: crate::sys::Errno| {
        let mut l = Line::<200>::new();
        l.str("fdslot: run: mmap (relays): ").str(e.name().unwrap_or("error")).str("\n");
        eprint(l.as_bytes());
        EXIT_RESTORE as i32
    };
    // A relay raises its soft limit to the hard one; what it holds must fit under that.
    let hard = proc::getrlimit(g::RLIMIT_NOFILE).map_err(fail)?.1.min(crate::plan::NR_OPEN as u64) as usize;
    let room = hard.saturating_sub(keep + relay::RELAY_OVERHEAD);
    match relay::assign(plan, batch, choice, room).map_err(fail)? {
        Some(a) => relay::with_relays(plan, a).map(Some).map_err(fail),
        None => Ok(None),
    }
}

impl<'a> Run<'a> {
    /// Creates task t: a fork, or for a task that shares its creator's fd table a clone with
    /// CLONE_FILES (and CLONE_PARENT when the two are siblings). In the child, never returns.
    fn spawn(&mut self, t: usize) -> Result<i32, i32> {
        let task = self.plan.tasks[t];
        let mut flags = 0usize;
        let mut parent = proc::getpid();
        if task.files != 0 {
            flags |= g::CLONE_FILES as usize;
            if task.files != task.parent {
                flags |= g::CLONE_PARENT as usize;
                parent = proc::getppid();
            }
        }
        match proc::clone_process(flags) {
            Ok(0) => {
                // Until restored, a task must not outlive its parent: nobody would reap or
                // report it. If the parent died before the flag was set, give up now.
                let _ = proc::prctl(linux_raw_sys::prctl::PR_SET_PDEATHSIG, g::SIGKILL as usize);
                if proc::getppid() != parent {
                    proc::exit(EXIT_PEER as i32);
                }
                let code = self.task_main(t);
                proc::exit(code)
            }
            Ok(pid) => {
                self.shared.task(t).pid.store(pid, Ordering::Release);
                Ok(pid)
            }
            Err(e) => {
                let mut l = Line::<200>::new();
                l.str("fdslot: task ").num(task.id as u64).str(": clone: ").str(e.name().unwrap_or("error"));
                self.shared.record_failure(t, EXIT_RESTORE, l.peek());
                Err(EXIT_RESTORE as i32)
            }
        }
    }

    /// Whether task t creates task u: the task whose table u shares, else u's parent.
    fn creates(&self, t: usize, u: usize) -> bool {
        let task = &self.plan.tasks[u];
        if task.files != 0 {
            task.files as usize == t + 1
        } else {
            task.parent as usize == t + 1
        }
    }

    /// The body of one task process.
    fn task_main(&mut self, t: usize) -> i32 {
        let _ = proc::sigprocmask(g::SIG_SETMASK, self.old_mask);
        self.shared.task(t).pid.store(proc::getpid(), Ordering::Release);
        #[cfg(not(any(test, feature = "std")))]
        crate::rt::PANIC_FD.store(-1, Ordering::Relaxed);
        for u in 0..self.plan.tasks.len() {
            if self.creates(t, u) && self.spawn(u).is_err() {
                return EXIT_RESTORE as i32;
            }
        }
        // Started: every task this one creates exists, so nothing copies this table any more.
        self.shared.task(t).state.store(STATE_STARTED, Ordering::Release);
        proc::futex_wake_all(&self.shared.task(t).state);
        let task = self.plan.tasks[t];
        if task.relay != 0 {
            // A relay ends once done; its exit closes the files it sent.
            return self.restore_here(t).err().unwrap_or(0);
        }
        if task.files != 0 {
            // This table is its owner's: touch no fd, wait for the owner to rebuild it.
            if !self.shared.wait_state(task.owner as usize, STATE_DONE, self.session.deadline) {
                return EXIT_PEER as i32;
            }
            if task.nofile != 0 {
                if let Err(e) = crate::restore::set_nofile(task.nofile) {
                    let mut line = Line::<240>::new();
                    line.str("fdslot: task ").num(task.id as u64).str(": setrlimit RLIMIT_NOFILE (nofile=): ").str(e.name().unwrap_or("error"));
                    self.shared.record_failure(t, EXIT_RESTORE, line.peek());
                    return EXIT_RESTORE as i32;
                }
            }
            // Its owner counted it as done; publish it (and drop PDEATHSIG) all the same.
            self.shared.mark_done(t, 0);
        } else {
            // Tasks forked by those sharing this table copy it when they are created: rebuild it
            // only once all of them exist.
            if task.sharers != 0 {
                for u in 0..self.plan.tasks.len() {
                    if u != t && self.plan.tasks[u].owner as usize == t && !self.shared.wait_state(u, STATE_STARTED, self.session.deadline) {
                        return EXIT_PEER as i32;
                    }
                }
            }
            if let Err(code) = self.restore_here(t) {
                return code;
            }
        }
        if self.stop {
            // Stop only once every child task has: then our own stop means the subtree is ready.
            for u in 0..self.plan.tasks.len() {
                if self.plan.tasks[u].parent as usize == t + 1 {
                    let pid = self.shared.task(u).pid.load(Ordering::Acquire);
                    let _ = proc::waitid(g::P_PID, pid, g::WSTOPPED | g::WEXITED);
                }
            }
            let _ = proc::kill(proc::getpid(), g::SIGSTOP);
        } else {
            // Our child tasks die with us (PDEATHSIG) until they are done: start our program only
            // once they are, so that its exit cannot cut their restore short.
            for u in 0..self.plan.tasks.len() {
                if self.plan.tasks[u].parent as usize == t + 1 && !self.shared.wait_state(u, STATE_DONE, self.session.deadline) {
                    return EXIT_PEER as i32;
                }
            }
        }
        let exec = task.exec;
        if exec.len == 0 {
            return 0;
        }
        // SAFETY: envp is the process's environment, as cmd_run's caller promised.
        let e = unsafe { exec::exec_plan_argv(self.plan, exec, self.envp) };
        let mut line = Line::<240>::new();
        line.str("fdslot: task ").num(task.id as u64).str(": exec: ").str(e.name().unwrap_or("error"));
        self.shared.record_failure(t, EXIT_RESTORE, line.peek());
        127
    }

    /// Restores task t in this process over `run`'s shared barrier; on failure the line goes
    /// to the shared page and the exit code comes back. A relay first raises its soft
    /// RLIMIT_NOFILE to the hard one, under which what it holds was sized to fit.
    fn restore_here(&mut self, t: usize) -> Result<(), i32> {
        let mut barrier = Barrier { mode: Mode::Shared(&self.shared), err_fd: -1, chan_fd: self.event_fd, ctl_fd: -1 };
        let raised = match self.plan.tasks[t].relay {
            0 => Ok(()),
            _ => proc::getrlimit(g::RLIMIT_NOFILE)
                .and_then(|(_, hard)| proc::setrlimit(g::RLIMIT_NOFILE, hard, hard))
                .map_err(|e| crate::report::Failure::sys(t, "setrlimit RLIMIT_NOFILE (to the hard limit)", e)),
        };
        if let Err(f) = raised.and_then(|()| restore_task(self.plan, &mut self.roles, t, &self.session, &mut barrier)) {
            let mut line = Line::<240>::new();
            f.format(self.plan, &mut line);
            barrier.fail(self.plan, &self.names, t, f.code, line.as_bytes());
            return Err(f.code as i32);
        }
        barrier.close();
        Ok(())
    }

    fn task_of(&self, pid: i32) -> Option<usize> {
        (0..self.plan.tasks.len()).find(|&t| self.shared.task(t).pid.load(Ordering::Acquire) == pid)
    }

    /// Waits for the restore, reports, then waits for every task to end.
    fn supervise(&mut self) -> i32 {
        let n = self.plan.tasks.len();
        let roots = self.plan.tasks[..self.tasks].iter().filter(|t| t.parent == 0).count();
        let (mut stopped, mut ready) = (0usize, false);
        let mut first_status: i32 = 0;
        let grace = self.session.deadline + 2_000_000_000;
        loop {
            let mut p = [
                g::pollfd { fd: self.signal_fd, events: g::POLLIN as i16, revents: 0 },
                g::pollfd { fd: self.event_fd, events: g::POLLIN as i16, revents: 0 },
            ];
            let wait = if ready { None } else { Some(grace.saturating_sub(proc::monotonic_ns())) };
            let _ = fd::poll(&mut p, wait);
            let mut buf = [0u8; 128];
            let _ = fd::read(self.event_fd, &mut buf[..8]);
            while let Ok(128) = fd::read(self.signal_fd, &mut buf) {
                let sig = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
                if sig != g::SIGCHLD {
                    self.kill_all();
                    self.reap_all();
                    return 128 + sig as i32;
                }
            }
            // Reap and collect stops.
            loop {
                match proc::waitid(g::P_ALL, 0, g::WEXITED | g::WSTOPPED | g::WNOHANG) {
                    Ok(Some(ev)) => {
                        let t = self.task_of(ev.pid);
                        if ev.code != g::CLD_STOPPED {
                            self.forget(ev.pid);
                        }
                        if ev.code == g::CLD_STOPPED {
                            if !ready && t.is_some_and(|t| self.plan.tasks[t].parent == 0) {
                                stopped += 1;
                            }
                            continue;
                        }
                        let status = if ev.code == g::CLD_EXITED { ev.status } else { 128 + ev.status };
                        if t == Some(0) {
                            first_status = status;
                        }
                        if let Some(t) = t {
                            if !ready && self.shared.task(t).state.load(Ordering::Acquire) != STATE_DONE && self.shared.failure_text(t).is_none() {
                                let mut l = Line::<240>::new();
                                l.str("fdslot: ");
                                crate::report::name_task(self.plan, t, &mut l);
                                if ev.code == g::CLD_EXITED {
                                    l.str(": exited with status ").num(ev.status as u64);
                                } else {
                                    l.str(": killed by signal ").num(ev.status as u64);
                                }
                                l.str(" before its restore completed");
                                self.shared.record_failure(t, EXIT_PEER, l.peek());
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        // ECHILD: every task has ended.
                        if ready || self.shared.header().failed.load(Ordering::Acquire) == 0 && self.shared.header().done.load(Ordering::Acquire) as usize == n {
                            return self.finish(first_status);
                        }
                        break;
                    }
                }
            }
            if self.shared.header().failed.load(Ordering::Acquire) > 0 && !ready {
                return self.abort(EXIT_RESTORE as i32);
            }
            if !ready && self.shared.header().done.load(Ordering::Acquire) as usize == n && (!self.stop || stopped == roots) {
                ready = true;
                if self.verify && !self.verify_tasks() {
                    self.kill_all();
                    self.reap_all();
                    return EXIT_RESTORE as i32;
                }
                if self.report_ready {
                    self.print_ready();
                } else if self.verify {
                    self.continue_all();
                }
            }
            if !ready && proc::monotonic_ns() >= grace {
                let mut l = Line::<200>::new();
                l.str("fdslot: run: timed out: ").num(self.shared.header().done.load(Ordering::Acquire) as u64).str(" of ").num(n as u64).str(if n > self.tasks { " tasks and relays restored" } else { " tasks restored" });
                let late = (0..n).find(|&t| self.shared.task(t).state.load(Ordering::Acquire) != STATE_DONE).unwrap_or(0);
                self.shared.record_failure(late, EXIT_PEER, l.peek());
                return self.abort(EXIT_PEER as i32);
            }
        }
    }

    fn finish(&self, first_status: i32) -> i32 {
        // A task that failed after the restore (exec) still gets its line printed.
        for t in 0..self.plan.tasks.len() {
            if let Some((text, _)) = self.shared.failure_text(t) {
                eprint(text);
                eprint(b"\n");
                break;
            }
        }
        if self.report_ready { 0 } else { first_status }
    }

    fn print_ready(&self) {
        let mut out = Line::<4096>::new();
        for t in 0..self.tasks {
            if out.len() > 4000 {
                print(out.as_bytes());
                out.clear();
            }
            out.str("task ").num(self.plan.tasks[t].id as u64).str(" pid ").num(self.shared.task(t).pid.load(Ordering::Acquire) as u64).str("\n");
        }
        out.str("ready\n");
        print(out.as_bytes());
    }

    /// `--verify`: the stopped tasks' tables against the plan; mismatches go to stderr.
    fn verify_tasks(&self) -> bool {
        let n = self.tasks;
        let Ok(mut arena) = crate::arena::Arena::map(crate::arena::bytes_for::<i32>(n)) else { return false };
        let pids = arena.take::<i32>(n);
        for (t, p) in pids.iter_mut().enumerate() {
            *p = self.shared.task(t).pid.load(Ordering::Acquire);
        }
        // The plan's own tasks only: relays hold nothing, and have ended.
        let p = self.plan;
        let own = Plan { text: p.text, tasks: &p.tasks[..n], objects: p.objects, targets: p.targets, task_first: &p.task_first[..n + 1], task_index: p.task_index };
        super::verify::run_verify(&own, pids, self.session.keep, false) == 0
    }

    /// Resumes tasks that stopped only to be verified.
    fn continue_all(&self) {
        for t in 0..self.plan.tasks.len() {
            let pid = self.shared.task(t).pid.load(Ordering::Acquire);
            if pid > 0 {
                let _ = proc::kill(pid, g::SIGCONT);
            }
        }
    }

    /// A reaped pid may be reused by anyone: never signal it again.
    fn forget(&self, pid: i32) {
        if let Some(t) = self.task_of(pid) {
            self.shared.task(t).pid.store(0, Ordering::Release);
        }
    }

    fn kill_all(&self) {
        self.shared.abort();
        for t in 0..self.plan.tasks.len() {
            let pid = self.shared.task(t).pid.load(Ordering::Acquire);
            if pid > 0 {
                let _ = proc::kill(pid, g::SIGKILL);
            }
        }
    }

    fn reap_all(&self) {
        // Killed tasks' children are reparented to us (subreaper) and reaped here too.
        loop {
            self.kill_all();
            match proc::waitid(g::P_ALL, 0, g::WEXITED) {
                Ok(Some(ev)) => self.forget(ev.pid),
                Ok(None) => {}
                Err(e) if e == crate::sys::Errno::INTR => {}
                Err(_) => break,
            }
        }
    }

    /// Kills the group and prints the first failure in plan order; returns its exit code.
    fn abort(&self, fallback: i32) -> i32 {
        self.kill_all();
        self.reap_all();
        // The first task in plan order whose own restore failed speaks; tasks that failed only
        // because a peer did (exit 3) speak only when no task failed on its own, and then the
        // first of them to fail. A relay, last in plan order, killed before go aborts the
        // group; a task that then exits takes its unrestored children with it (PDEATHSIG),
        // and their deaths, recorded after the relay's, must not speak for it.
        let spoken = |t: usize| self.shared.failure_text(t).filter(|(text, _)| !text.ends_with(b"another task failed"));
        let n = self.plan.tasks.len();
        let own = (0..n).find(|&t| spoken(t).is_some_and(|(_, code)| code != EXIT_PEER));
        let first = own.or_else(|| (0..n).filter(|&t| spoken(t).is_some()).min_by_key(|&t| self.shared.failure_seq(t)));
        match first.and_then(spoken) {
            Some((text, code)) => {
                eprint(text);
                eprint(b"\n");
                code as i32
            }
            None => fallback,
        }
    }
}
