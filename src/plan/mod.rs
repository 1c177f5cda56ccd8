//! The plan: text in format 1, parsed without copying into arrays of tasks, objects and targets,
//! and validated as a whole before any fd is touched.
//!
//! ```text
//! fdslot 1
//! task 1
//! task 2 parent=1 exec=/bin/sleep,100
//! reg 1 /var/log/app.log flags=wronly,append pos=4096
//!   at 1:1 cloexec
//!   at 2:1
//! pipe 2
//!   r 1:0
//!   w 2:5
//! ```

pub mod lex;
pub mod parse;
pub mod check;

use crate::text::Line;

/// The highest fd number a plan may name, plus one: Linux's default `nr_open`.
pub const NR_OPEN: u32 = 1 << 20;
/// The largest plan accepted, in bytes.
pub const MAX_PLAN_BYTES: usize = 1 << 30;
/// The longest path, decoded, without its NUL (PATH_MAX - 1).
pub const MAX_PATH: usize = 4095;
/// The most `exec=` arguments per task, and their decoded bytes with NULs.
pub const MAX_ARGS: usize = 4096;
pub const MAX_ARG_BYTES: usize = 128 * 1024;

/// An object's kind.
pub const KIND_REG: u8 = 1;
pub const KIND_PIPE: u8 = 2;
pub const KIND_FIFO: u8 = 3;
pub const KIND_SOCKETPAIR: u8 = 4;
pub const KIND_EVENTFD: u8 = 5;
pub const KIND_MEMFD: u8 = 6;
pub const KIND_REOPEN: u8 = 7;
pub const KIND_INHERIT: u8 = 8;

/// The keyword of each kind, for messages.
pub fn kind_name(kind: u8) -> &'static str {
    match kind {
        KIND_REG => "reg",
        KIND_PIPE => "pipe",
        KIND_FIFO => "fifo",
        KIND_SOCKETPAIR => "socketpair",
        KIND_EVENTFD => "eventfd",
        KIND_MEMFD => "memfd",
        KIND_REOPEN => "reopen",
        _ => "inherit",
    }
}

/// Kinds whose one creation yields two descriptions (ends 0 and 1).
pub fn two_ended(kind: u8) -> bool {
    kind == KIND_PIPE || kind == KIND_SOCKETPAIR
}

/// The longest memfd name (the kernel allows 249 bytes).
pub const MAX_MEMFD_NAME: usize = 249;
/// The most inherited fds one opener may hold.
pub const MAX_INHERIT_PER_TASK: usize = 256;

/// A byte range of the plan text (an encoded path or argv).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Span {
    pub off: u32,
    pub len: u32,
}

/// One task: a process whose fd table the plan describes.
#[derive(Clone, Copy, Default, Debug)]
#[repr(C)]
pub struct Task {
    pub id: u16,
    /// Index of the parent task plus one; 0 for none.
    pub parent: u16,
    pub line: u32,
    /// The encoded `exec=` value; empty for none.
    pub exec: Span,
    /// `files=`: index + 1 of the task whose fd table this one shares (and that creates it
    /// with CLONE_FILES); 0 for a table of its own.
    pub files: u16,
    /// The index of the task that owns this task's fd table: itself, or the end of its
    /// `files=` chain. Targets are kept on owners only.
    pub owner: u16,
    /// How many other tasks share this task's table (on owners).
    pub sharers: u16,
    /// Under `run` with relays (see `restore::relay`): relay number + 1 for the relays it adds
    /// after the plan's tasks; 0 for the plan's own.
    pub relay: u16,
    /// `nofile=`: RLIMIT_NOFILE for the restored program; 0 for unchanged.
    pub nofile: u32,
}

/// One object: an open file description (a pipe: one pipe() call, two descriptions).
#[derive(Clone, Copy, Default, Debug)]
#[repr(C)]
pub struct Object {
    pub id: u32,
    pub kind: u8,
    /// 1 when `opener=` named the opener.
    pub explicit_opener: u8,
    /// The opener's task index (while parsing: its task id).
    pub opener: u16,
    pub flags: u32,
    pub mode: u32,
    pub line: u32,
    /// The encoded path (reg, fifo), or name (memfd).
    pub path: Span,
    pub pos: u64,
    /// pipe and memfd `size=` (with `has_size`).
    pub size: u64,
    /// eventfd `count=`; inherit's fd; reopen's pipe (object index).
    pub value: u64,
    /// pipe and memfd `data=` (encoded path).
    pub data: Span,
    /// socketpair's type; reopen's end; memfd's seals.
    pub extra: u32,
    pub has_size: u8,
}

/// One target: fd `fd` of task `task` holds end `end` of object `object`.
#[derive(Clone, Copy, Default, Debug)]
#[repr(C)]
pub struct Target {
    pub fd: u32,
    /// Index into `Plan::objects`.
    pub object: u32,
    /// The task index (while parsing: its task id).
    pub task: u16,
    /// 0 for `at` and `r`, 1 for `w`.
    pub end: u8,
    pub cloexec: u8,
    pub line: u32,
}

// SAFETY: plain integer structs, valid when zero-filled.
unsafe impl crate::arena::Zeroable for Task {}
// SAFETY: as above.
unsafe impl crate::arena::Zeroable for Object {}
// SAFETY: as above.
unsafe impl crate::arena::Zeroable for Target {}

/// A validated plan. Targets are sorted by (task index, fd).
pub struct Plan<'a> {
    pub text: &'a [u8],
    pub tasks: &'a [Task],
    pub objects: &'a [Object],
    pub targets: &'a [Target],
    /// `targets[task_first[t] as usize..task_first[t + 1] as usize]` are task t's, by fd.
    pub task_first: &'a [u32],
    /// Task id -> index + 1 (0: not declared).
    pub task_index: &'a [u16],
}

/// A plan that breaks a rule: its line number and what is wrong.
pub struct PlanError {
    pub line: u32,
    pub msg: Line<200>,
}

impl PlanError {
    pub fn new(line: u32, what: &str) -> PlanError {
        let mut msg = Line::new();
        msg.str(what);
        PlanError { line, msg }
    }
}

impl<'a> Plan<'a> {
    pub fn span(&self, s: Span) -> &'a [u8] {
        &self.text[s.off as usize..(s.off + s.len) as usize]
    }

    /// Task `t`'s targets, sorted by fd.
    pub fn task_targets(&self, t: usize) -> &'a [Target] {
        &self.targets[self.task_first[t] as usize..self.task_first[t + 1] as usize]
    }

    /// The index of task `id`, if declared.
    pub fn task_by_id(&self, id: u16) -> Option<usize> {
        match self.task_index[id as usize] {
            0 => None,
            i => Some(i as usize - 1),
        }
    }

    /// The number of descriptions: one per object end (pipes have two).
    pub fn file_count(&self) -> usize {
        self.objects.len() * 2
    }
}

/// A description's index: object index * 2 + end.
#[inline]
pub fn file_of(object: u32, end: u8) -> usize {
    object as usize * 2 + end as usize
}
