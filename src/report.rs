//! Failures carry where they happened (task, fd, object, the call, the errno); they are turned
//! into one line only here, at the edge.

use crate::plan::{Plan, KIND_PIPE};
use crate::sys::Errno;
use crate::text::Line;

/// Exit codes, as documented in `--help`.
pub const EXIT_RESTORE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_PEER: u8 = 3;

/// What went wrong in one task.
#[derive(Clone)]
pub struct Failure {
    /// The exit code this failure maps to.
    pub code: u8,
    /// Task index in the plan, if any.
    pub task: Option<u16>,
    pub fd: Option<u32>,
    /// Object index and end, if any.
    pub object: Option<(u32, u8)>,
    /// The call or the check that failed: "open", "bind", ...
    pub what: Line<120>,
    pub errno: Option<Errno>,
}

impl Failure {
    pub fn new(code: u8, task: usize, what: &str) -> Failure {
        let mut w = Line::new();
        w.str(what);
        Failure { code, task: Some(task as u16), fd: None, object: None, what: w, errno: None }
    }

    pub fn sys(task: usize, what: &str, e: Errno) -> Failure {
        let mut f = Failure::new(EXIT_RESTORE, task, what);
        f.errno = Some(e);
        f
    }

    pub fn at_fd(mut self, fd: u32) -> Failure {
        self.fd = Some(fd);
        self
    }

    pub fn on(mut self, object: u32, end: u8) -> Failure {
        self.object = Some((object, end));
        self
    }

    /// Appends a task id (for "waiting for task N" messages).
    pub fn peer(mut self, plan: &Plan<'_>, task: usize) -> Failure {
        self.what.str(" task ").num(plan.tasks[task].id as u64);
        self
    }

    pub fn then(mut self, s: &str) -> Failure {
        self.what.str(s);
        self
    }

    /// `fdslot: task T fd N (reg 3 /path): open: ENOENT`.
    pub fn format<const N: usize>(&self, plan: &Plan<'_>, out: &mut Line<N>) {
        out.str("fdslot: ");
        if let Some(t) = self.task {
            out.str("task ").num(plan.tasks[t as usize].id as u64);
            if let Some(fd) = self.fd {
                out.str(" fd ").num(fd as u64);
            }
            if let Some((o, end)) = self.object {
                let obj = &plan.objects[o as usize];
                if obj.kind == KIND_PIPE {
                    out.str(" (pipe ").num(obj.id as u64).str(if end == 0 { " r)" } else { " w)" });
                } else {
                    out.str(" (reg ").num(obj.id as u64).str(" ").push(plan.span(obj.path)).str(")");
                }
            }
            out.str(": ");
        }
        let mut w = self.what.clone_line();
        out.push(w.as_bytes());
        if let Some(e) = self.errno {
            out.str(": ");
            match e.name() {
                Some(n) => out.str(n),
                None => out.str("errno ").num(e.0 as u64),
            };
        }
    }
}

impl<const N: usize> Line<N> {
    /// A copy of this line (Line is not Copy: it is large).
    pub fn clone_line(&self) -> Line<N> {
        let mut l = Line::new();
        l.push(self.peek());
        l
    }
}

impl<const N: usize> Clone for Line<N> {
    fn clone(&self) -> Self {
        self.clone_line()
    }
}
