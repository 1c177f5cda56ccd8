//! The blob's entry: the restore path only, for a host process that calls it in place.
//!
//! The blob never exits or kills its host: a failure (or a panic, which `rt` turns back into a
//! return) comes back as a negative code and a one-line error record in the caller's buffer.
//! It leaves no fd but the planned ones (and `keep`), and unmaps every arena it mapped.

use crate::plan::parse;
use crate::report::EXIT_USAGE;
use crate::restore::{restore_alone, AloneOptions};
use crate::sys::fd;
use crate::restore::roles::MAX_BATCH;
use crate::sys::proc;
use crate::text::Line;

/// The entry's argument block (`struct fdslot_args` in fdslot.h).
#[repr(C)]
pub struct BlobArgs {
    /// The plan text (format 1) and its length.
    pub plan: *const u8,
    pub plan_len: u64,
    /// The task id to restore in the calling process.
    pub task: u32,
    /// A sync fd speaking the `restore --sync-fd` protocol, or -1 for the tasks' own barrier.
    pub sync_fd: i32,
    /// One deadline for the whole restore, in milliseconds (0: 10 s).
    pub timeout_ms: u32,
    /// Fds per message, 1..=253 (0: 253).
    pub batch: u32,
    /// The session, 1 to 32 of A-Za-z0-9_-, NUL-padded.
    pub session: [u8; 32],
    /// Where the error line goes (NUL-terminated, cut to fit), and its size.
    pub error: *mut u8,
    pub error_len: u64,
    /// Fds of the host to keep open and untouched (at most 64; not planned slots), or NULL.
    pub keep: *const u32,
    pub keep_len: u32,
    /// `FLAG_*` bits; others must be 0.
    pub flags: u32,
}

/// Rebuild the host's table transactionally: park the fds the plan displaces and put them back
/// if the restore fails; with a sync fd, wait after `done` for the parent's `commit` or `abort`.
pub const FLAG_PRESERVE: u32 = 1;
/// With `FLAG_PRESERVE`: leave every fd the plan does not name open and untouched.
pub const FLAG_KEEP_OTHERS: u32 = 2;

fn report(args: &BlobArgs, line: &[u8]) {
    if args.error.is_null() || args.error_len == 0 {
        return;
    }
    let n = line.len().min(args.error_len as usize - 1);
    // SAFETY: the caller gave us error_len bytes at error.
    unsafe {
        core::ptr::copy_nonoverlapping(line.as_ptr(), args.error, n);
        *args.error.add(n) = 0;
    }
}

/// Restores `args.task` in the calling process. Returns 0, or minus the exit code that
/// `fdslot restore` would have given (-1 restore, -2 arguments or plan, -3 peer).
///
/// # Safety
/// `args` must point to a valid `BlobArgs` whose plan and error pointers are valid for their
/// lengths; the calling process must not use fds concurrently (the table is being rebuilt).
pub unsafe fn blob_restore(args: &BlobArgs) -> i64 {
    let code = restore(args);
    // SAFETY: every slice into the arenas died with `restore`'s locals.
    unsafe { crate::arena::release_all() };
    -(code as i64)
}

/// Refuses the call before anything changed. The sync fd is the blob's from the call on, so it
/// is closed here too (the barrier closes it on every later path).
fn reject(args: &BlobArgs, line: &[u8]) -> u8 {
    report(args, line);
    if args.sync_fd >= 0 {
        let _ = fd::close(args.sync_fd);
    }
    EXIT_USAGE
}

fn restore(args: &BlobArgs) -> u8 {
    let mut line = Line::<400>::new();
    let sess_len = args.session.iter().position(|&b| b == 0).unwrap_or(32);
    let session = &args.session[..sess_len];
    if args.plan.is_null()
        || args.plan_len as usize > crate::plan::MAX_PLAN_BYTES
        || session.is_empty()
        || !session.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        || args.batch > MAX_BATCH as u32
        || args.task == 0
        || args.task > 65535
        || args.flags & !(FLAG_PRESERVE | FLAG_KEEP_OTHERS) != 0
        || args.flags == FLAG_KEEP_OTHERS
    {
        return reject(args, b"fdslot: blob: bad arguments (plan, session, batch, task or flags)");
    }
    // SAFETY: the caller vouches for plan and plan_len.
    let text = unsafe { core::slice::from_raw_parts(args.plan, args.plan_len as usize) };
    let plan = match parse::load(text) {
        Ok(p) => p,
        Err(mut e) => {
            line.str("fdslot: plan line ").num(e.line as u64).str(": ").push(e.msg.as_bytes());
            return reject(args, line.as_bytes());
        }
    };
    let Some(t) = plan.task_by_id(args.task as u16).filter(|&t| plan.tasks[t].files == 0) else {
        return reject(args, b"fdslot: blob: the task is not in the plan, or shares another task's table");
    };
    let batch = if args.batch == 0 { MAX_BATCH } else { args.batch as u16 };
    let timeout = if args.timeout_ms == 0 { 10_000 } else { args.timeout_ms as u64 };
    let deadline = proc::monotonic_ns() + timeout * 1_000_000;
    let mut keep = heapless::Vec::<u32, { crate::restore::MAX_KEEP }>::new();
    if !args.keep.is_null() {
        // SAFETY: the caller vouches for keep and keep_len.
        let given = unsafe { core::slice::from_raw_parts(args.keep, args.keep_len as usize) };
        for &k in given {
            if !keep.contains(&k) && keep.push(k).is_err() {
                return reject(args, b"fdslot: blob: more than 64 fds to keep");
            }
        }
        crate::sort::sort_by_key(&mut keep, |&k| k);
    }
    let options = AloneOptions {
        session,
        batch,
        sync_fd: args.sync_fd,
        err_fd: -1,
        keep: &keep,
        deadline,
        preserve: args.flags & FLAG_PRESERVE != 0,
        keep_others: args.flags & FLAG_KEEP_OTHERS != 0,
    };
    match restore_alone(&plan, t, &options, |text| report(args, text)) {
        Ok(mut barrier) => {
            barrier.close();
            0
        }
        Err(code) => code,
    }
}
