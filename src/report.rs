//! Failures carry where they happened (task, fd, object, the call, the errno); they are turned
//! into one line only here, at the edge.

use crate::plan::{kind_name, Plan, KIND_FIFO, KIND_MEMFD, KIND_PIPE, KIND_REG, KIND_SOCKETPAIR};
use crate::sys::Errno;
use crate::text::Line;

/// Exit codes, as documented in `--help`.
pub const EXIT_RESTORE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_PEER: u8 = 3;

/// `task ID`, or `relay N` for a relay `run` added (it has no id of the plan's).
pub fn name_task<const N: usize>(plan: &Plan<'_>, t: usize, out: &mut Line<N>) {
    match plan.tasks[t].relay {
        0 => out.str("task ").num(plan.tasks[t].id as u64),
        r => out.str("relay ").num(r as u64),
    };
}

/// What went wrong in one task: small and `Copy`, formatted only at the edge.
#[derive(Clone, Copy)]
pub struct Failure {
    /// The exit code this failure maps to.
    pub code: u8,
    /// Task index in the plan, if any.
    pub task: Option<u16>,
    pub fd: Option<u32>,
    /// Object index and end, if any.
    pub object: Option<(u32, u8)>,
    /// The call or the check that failed: "open", "bind", ...
    pub what: &'static str,
    /// Another task the message names (index), printed as " task N" after `what`.
    pub peer: Option<u16>,
    pub tail: &'static str,
    /// Numbers with their labels, printed after `tail`.
    pub nums: [(&'static str, u64); 2],
    pub errno: Option<Errno>,
    /// The relay (task index) that failed on this task's behalf, printed last.
    pub via: Option<u16>,
}

impl Failure {
    #[cold]
    #[inline(never)]
    pub fn new(code: u8, task: usize, what: &'static str) -> Failure {
        Failure { code, task: Some(task as u16), fd: None, object: None, what, peer: None, tail: "", nums: [("", 0); 2], errno: None, via: None }
    }

    #[cold]
    #[inline(never)]
    pub fn sys(task: usize, what: &'static str, e: Errno) -> Failure {
        let mut f = Failure::new(EXIT_RESTORE, task, what);
        f.errno = Some(e);
        f
    }

    #[cold]
    #[inline(never)]
    pub fn at_fd(mut self, fd: u32) -> Failure {
        self.fd = Some(fd);
        self
    }

    #[cold]
    #[inline(never)]
    pub fn on(mut self, object: u32, end: u8) -> Failure {
        self.object = Some((object, end));
        self
    }

    /// Names another task (for "waiting for task N" messages).
    #[cold]
    #[inline(never)]
    pub fn peer(mut self, task: usize) -> Failure {
        self.peer = Some(task as u16);
        self
    }

    #[cold]
    #[inline(never)]
    pub fn then(mut self, s: &'static str) -> Failure {
        self.tail = s;
        self
    }

    /// Says that relay `relay` (a task index) failed at this on the named task's behalf.
    #[cold]
    #[inline(never)]
    pub fn via(mut self, relay: usize) -> Failure {
        self.via = Some(relay as u16);
        self
    }

    /// Appends `label` and `value`; at most two per failure.
    #[cold]
    #[inline(never)]
    pub fn num(mut self, label: &'static str, value: u64) -> Failure {
        let i = if self.nums[0].0.is_empty() { 0 } else { 1 };
        self.nums[i] = (label, value);
        self
    }

    /// `fdslot: task T fd N (reg 3 /path): open: ENOENT`.
    pub fn format<const N: usize>(&self, plan: &Plan<'_>, out: &mut Line<N>) {
        out.str("fdslot: ");
        if let Some(t) = self.task {
            name_task(plan, t as usize, out);
            if let Some(fd) = self.fd {
                out.str(" fd ").num(fd as u64);
            }
            if let Some((o, end)) = self.object {
                let obj = &plan.objects[o as usize];
                out.str(" (").str(kind_name(obj.kind)).str(" ").num(obj.id as u64);
                match obj.kind {
                    KIND_PIPE => out.str(if end == 0 { " r" } else { " w" }),
                    KIND_SOCKETPAIR => out.str(if end == 0 { " a" } else { " b" }),
                    KIND_REG | KIND_FIFO | KIND_MEMFD => out.str(" ").push(plan.span(obj.path)),
                    _ => out,
                };
                out.str(")");
            }
            out.str(": ");
        }
        out.str(self.what);
        if let Some(p) = self.peer {
            out.str(" ");
            name_task(plan, p as usize, out);
        }
        out.str(self.tail);
        for (label, value) in self.nums {
            if !label.is_empty() {
                out.str(label).num(value);
            }
        }
        if let Some(e) = self.errno {
            out.str(": ");
            match e.name() {
                Some(n) => out.str(n),
                None => out.str("errno ").num(e.0 as u64),
            };
        }
        if let Some(r) = self.via {
            out.str(" (opened for it by ");
            name_task(plan, r as usize, out);
            out.str(")");
        }
    }
}
