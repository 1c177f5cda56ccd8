//! Opening one object of each kind, as its opener does: a fresh description with FD_CLOEXEC
//! set, at whatever number the kernel picks; placing it is the caller's business.

use crate::plan::{lex, Object, Plan, KIND_PIPE};
use crate::sys::{fd, Errno, Fd};
use linux_raw_sys::general as g;

/// The fresh fds of one object: one for `reg`, two (read, write) for `pipe`.
pub struct Opened {
    pub fds: [Fd; 2],
    pub n: usize,
}

/// Opens `o`: `reg` with its flags, mode and pos; `pipe` by pipe2.
pub fn open_object(plan: &Plan<'_>, o: &Object) -> Result<Opened, (&'static str, Errno)> {
    if o.kind == KIND_PIPE {
        let (r, w) = fd::pipe2(g::O_CLOEXEC).map_err(|e| ("pipe2", e))?;
        return Ok(Opened { fds: [r, w], n: 2 });
    }
    let mut path = [0u8; crate::plan::MAX_PATH + 1];
    // The plan was validated: the path decodes and fits.
    let len = lex::decode_into(plan.span(o.path), &mut path).map_err(|_| ("decode path", Errno::INVAL))?;
    path[len] = 0;
    let f = fd::open(&path[..len + 1], o.flags | g::O_CLOEXEC, o.mode).map_err(|e| ("open", e))?;
    if o.pos != 0 {
        if let Err(e) = fd::seek_to(f, o.pos) {
            let _ = fd::close(f);
            return Err(("lseek", e));
        }
    }
    Ok(Opened { fds: [f, -1], n: 1 })
}
