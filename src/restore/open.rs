//! Opening one object of each kind, as its opener does: fresh descriptions with FD_CLOEXEC set,
//! at whatever numbers the kernel picks; placing them is the caller's business.
//!
//! Nothing here may block: a FIFO is opened beside a temporary read-write description of
//! itself; every other path is opened with O_NONBLOCK (a FIFO planned as `reg`, or a device
//! that waits for a carrier, cannot hold the open), which is cleared afterwards unless planned;
//! `data=` must be a regular file; a pipe's buffered data is written only when it fits.

use crate::plan::*;
use crate::sys::{fd, Errno, Fd};
use linux_raw_sys::general as g;

/// The fresh fds of one object: one, or two (ends 0 and 1) for pipes and socket pairs.
pub struct Opened {
    pub fds: [Fd; 2],
    pub n: usize,
}

const F_SETPIPE_SZ: u32 = 1031;
const F_GETPIPE_SZ: u32 = 1032;
const F_ADD_SEALS: u32 = 1033;
const MFD_CLOEXEC: usize = 1;
const MFD_ALLOW_SEALING: usize = 2;

/// A failed step: the call's name and its errno.
pub type OpenError = (&'static str, Errno);

fn decode_path(plan: &Plan<'_>, s: Span, buf: &mut [u8; MAX_PATH + 1]) -> Result<usize, OpenError> {
    // The plan was validated: the path decodes and fits.
    let len = lex::decode_into(plan.span(s), &mut buf[..]).map_err(|_| ("decode path", Errno::INVAL))?;
    buf[len] = 0;
    Ok(len + 1)
}

/// Runs `f` on a fresh fd, closing the fd if `f` fails.
fn or_close<T>(f: Fd, r: Result<T, OpenError>) -> Result<T, OpenError> {
    if r.is_err() {
        let _ = fd::close(f);
    }
    r
}

/// Room for one decoded path, kept by the caller: clearing 4 KiB per open would cost more than
/// a dup.
pub type PathBuf = [u8; MAX_PATH + 1];

/// Where a regular file's path splits into its directory and the rest: the offset of the
/// last `/` in the plan's (encoded) text, when both sides are non-empty. An encoded `/` (`%2F`)
/// stays in the rest, which `openat` resolves just as it would inside the whole path.
pub fn dir_split(plan: &Plan<'_>, path: Span) -> Option<usize> {
    let raw = plan.span(path);
    let cut = raw.iter().rposition(|&b| b == b'/')?;
    (cut > 0 && cut + 1 < raw.len()).then_some(cut)
}

/// The directory of the regular files an opener is opening, held open (O_PATH) so that each
/// next file in it is opened relative to it: `openat` then walks one name, not the whole path
/// (20% of an open here, with three components). Opened when the next few of the task's
/// objects share the directory, on a service number reserved for it.
pub struct DirCache {
    /// The reserved service number, or -1 (no room: every path is walked whole).
    pub slot: Fd,
    /// Whether `slot` holds the directory `prefix` names.
    pub held: bool,
    /// The directory's part of the plan's text (encoded).
    prefix: Span,
}

/// How many of the objects that follow must share a directory before it is opened.
pub const DIR_RUN: usize = 4;

impl DirCache {
    pub const fn none() -> DirCache {
        DirCache { slot: -1, held: false, prefix: Span { off: 0, len: 0 } }
    }

    /// The held directory, if `path` lies in it: its fd, and the span of the rest.
    pub fn lookup(&self, plan: &Plan<'_>, path: Span) -> Option<(Fd, Span)> {
        if !self.held {
            return None;
        }
        let cut = dir_split(plan, path)?;
        (cut == self.prefix.len as usize && plan.span(path)[..cut] == *plan.span(self.prefix))
            .then_some((self.slot, rest_of(path, cut)))
    }

    /// Opens the directory of `path` (split at `cut`) and holds it in the reserved number, in
    /// place of the one held before; then as `lookup` for `path`. On any failure nothing
    /// changes and None comes back (the file is then opened by its whole path, and fails there
    /// if its directory is the trouble). `buf` is scratch.
    pub fn hold(&mut self, plan: &Plan<'_>, path: Span, cut: usize, buf: &mut PathBuf) -> Option<(Fd, Span)> {
        let prefix = Span { off: path.off, len: cut as u32 };
        let len = decode_path(plan, prefix, buf).ok()?;
        let d = fd::open(&buf[..len], g::O_PATH | g::O_DIRECTORY | g::O_CLOEXEC, 0).ok()?;
        // Landed on the number itself (the lowest free one, with nothing held there yet): in
        // place. Else dup3 over the number closes the directory held before, if any.
        if d != self.slot {
            let moved = fd::dup3(d, self.slot, g::O_CLOEXEC).is_ok();
            let _ = fd::close(d);
            if !moved {
                return None;
            }
        }
        self.held = true;
        self.prefix = prefix;
        Some((self.slot, rest_of(path, cut)))
    }
}

/// The part of `path` after its split at `cut` (see `dir_split`).
fn rest_of(path: Span, cut: usize) -> Span {
    Span { off: path.off + cut as u32 + 1, len: path.len - cut as u32 - 1 }
}

/// Opens `o`. `base` is the opener's fd of a reopen's pipe end (unused for other kinds). A
/// regular file gets FD_CLOEXEC as `reg_cloexec` says; every other kind has it set; `dir`, if
/// given, is a directory fd and the span of the rest of `o`'s path below it. `path` is
/// scratch space.
pub fn open_object(plan: &Plan<'_>, o: &Object, base: Fd, reg_cloexec: bool, dir: Option<(Fd, Span)>, path: &mut PathBuf) -> Result<Opened, OpenError> {
    let one = |f: Fd| Opened { fds: [f, -1], n: 1 };
    match o.kind {
        KIND_PIPE => {
            let (r, w) = fd::pipe2(g::O_CLOEXEC).map_err(|e| ("pipe2", e))?;
            match fill_pipe(plan, o, w) {
                Ok(()) => Ok(Opened { fds: [r, w], n: 2 }),
                Err(e) => {
                    let _ = fd::close(r);
                    let _ = fd::close(w);
                    Err(e)
                }
            }
        }
        KIND_SOCKETPAIR => {
            let kind = o.extra | crate::sys::socket::SOCK_CLOEXEC | (o.flags & g::O_NONBLOCK);
            let (a, b) = crate::sys::socket::socketpair_unix(kind).map_err(|e| ("socketpair", e))?;
            Ok(Opened { fds: [a, b], n: 2 })
        }
        KIND_EVENTFD => {
            let f = fd::eventfd(0, g::EFD_CLOEXEC | o.flags).map_err(|e| ("eventfd", e))?;
            if o.value != 0 {
                or_close(f, fd::write(f, &o.value.to_ne_bytes()).map(|_| ()).map_err(|e| ("write (eventfd count)", e)))?;
            }
            Ok(one(f))
        }
        KIND_MEMFD => {
            let len = decode_path(plan, o.path, path)?;
            let flags = MFD_CLOEXEC | if o.extra != 0 { MFD_ALLOW_SEALING } else { 0 };
            let f = fd::memfd_create(&path[..len], flags).map_err(|e| ("memfd_create", e))?;
            or_close(f, fill_memfd(plan, o, f))?;
            Ok(one(f))
        }
        KIND_FIFO => {
            let len = decode_path(plan, o.path, path)?;
            // A read-write description of the FIFO keeps either end's open from blocking.
            let helper = fd::open(&path[..len], g::O_RDWR | g::O_NONBLOCK | g::O_CLOEXEC, 0).map_err(|e| ("open (fifo helper)", e))?;
            let kind = fd::fstat_mode_size(helper).map(|(m, _)| m & 0o170000);
            if kind != Ok(0o010000) {
                let _ = fd::close(helper);
                return Err(("open: not a FIFO", Errno::INVAL));
            }
            let opened = fd::open(&path[..len], o.flags | g::O_NONBLOCK | g::O_CLOEXEC, 0).map_err(|e| ("open", e));
            let _ = fd::close(helper);
            let f = opened?;
            if o.flags & g::O_NONBLOCK == 0 {
                or_close(f, clear_nonblock(f))?;
            }
            Ok(one(f))
        }
        KIND_REOPEN => {
            let mut p = crate::text::Line::<32>::new();
            p.str("/proc/self/fd/").num(base as u64).str("\0");
            let access = if o.extra == 0 { g::O_RDONLY } else { g::O_WRONLY };
            match fd::open(p.peek(), access | o.flags | g::O_CLOEXEC, 0) {
                Ok(f) => Ok(one(f)),
                Err(e) if fd::open(b"/proc/self\0", g::O_PATH | g::O_CLOEXEC, 0).map(fd::close).is_err() => {
                    let _ = e;
                    Err(("reopen needs /proc mounted; open /proc/self/fd", Errno::NOENT))
                }
                Err(e) => Err(("open /proc/self/fd", e)),
            }
        }
        _ => {
            let (at, rest) = dir.unwrap_or((g::AT_FDCWD, o.path));
            let len = decode_path(plan, rest, path)?;
            // O_PATH never blocks and takes no status flags; anything else opens non-blocking.
            let nonblock = if o.flags & g::O_PATH == 0 { g::O_NONBLOCK } else { 0 };
            let cloexec = if o.kind != KIND_REG || reg_cloexec { g::O_CLOEXEC } else { 0 };
            let f = fd::open_at(at, &path[..len], o.flags | nonblock | cloexec, o.mode).map_err(|e| match e {
                Errno::NXIO => ("open (a FIFO without a reader, or a socket: plan a FIFO as fifo)", e),
                e => ("open", e),
            })?;
            if nonblock != 0 && o.flags & g::O_NONBLOCK == 0 {
                // The status flags are the planned ones (F_SETFL takes only append, direct,
                // noatime and nonblock from them): one call, no F_GETFL.
                let planned = (o.flags & !g::O_NONBLOCK) as usize;
                or_close(f, fd::fcntl(f, g::F_SETFL, planned).map(|_| ()).map_err(|e| ("fcntl F_SETFL", e)))?;
            }
            if o.pos != 0 {
                or_close(f, fd::seek_to(f, o.pos).map(|_| ()).map_err(|e| ("lseek", e)))?;
            }
            Ok(one(f))
        }
    }
}

fn clear_nonblock(f: Fd) -> Result<(), OpenError> {
    let fl = fd::fcntl(f, g::F_GETFL, 0).map_err(|e| ("fcntl F_GETFL", e))?;
    fd::fcntl(f, g::F_SETFL, fl & !(g::O_NONBLOCK as usize)).map(|_| ()).map_err(|e| ("fcntl F_SETFL", e))
}

/// Copies file `data` into `to` (a pipe or memfd) with sendfile; `limit` caps the bytes.
fn copy_data(plan: &Plan<'_>, data: Span, to: Fd, limit: Option<u64>) -> Result<(), OpenError> {
    let mut path = [0u8; MAX_PATH + 1];
    let len = decode_path(plan, data, &mut path)?;
    // Non-blocking, so that a FIFO named here cannot hold the open; then only a regular file
    // will do (a FIFO or a device has no size to check and may never end).
    let src = fd::open(&path[..len], g::O_RDONLY | g::O_NONBLOCK | g::O_CLOEXEC, 0).map_err(|e| ("open (data=)", e))?;
    let result = (|| {
        let (mode, size) = fd::fstat_mode_size(src).map_err(|e| ("fstat (data=)", e))?;
        if mode & 0o170000 != 0o100000 {
            return Err(("data= is not a regular file", Errno::INVAL));
        }
        if limit.is_some_and(|l| size > l) {
            return Err(("data= is larger than the pipe's capacity", Errno(linux_raw_sys::errno::EFBIG as u16)));
        }
        let mut left = size;
        while left > 0 {
            match fd::sendfile(to, src, left) {
                Ok(0) => break,
                Ok(n) => left -= n as u64,
                Err(e) if e == Errno::INTR => {}
                Err(e) => return Err(("sendfile (data=)", e)),
            }
        }
        Ok(())
    })();
    let _ = fd::close(src);
    result
}

fn fill_pipe(plan: &Plan<'_>, o: &Object, w: Fd) -> Result<(), OpenError> {
    if o.has_size != 0 {
        fd::fcntl(w, F_SETPIPE_SZ, o.size as usize).map_err(|e| ("fcntl F_SETPIPE_SZ", e))?;
    }
    if o.data.len != 0 {
        let cap = fd::fcntl(w, F_GETPIPE_SZ, 0).map_err(|e| ("fcntl F_GETPIPE_SZ", e))? as u64;
        // Non-blocking while filling: data that fits never waits, and a mistake cannot hang.
        fd::fcntl(w, g::F_SETFL, g::O_NONBLOCK as usize).map_err(|e| ("fcntl F_SETFL", e))?;
        copy_data(plan, o.data, w, Some(cap))?;
        clear_nonblock(w)?;
    }
    Ok(())
}

fn fill_memfd(plan: &Plan<'_>, o: &Object, f: Fd) -> Result<(), OpenError> {
    if o.data.len != 0 {
        copy_data(plan, o.data, f, None)?;
    }
    if o.has_size != 0 {
        fd::ftruncate(f, o.size).map_err(|e| ("ftruncate", e))?;
    }
    fd::seek_to(f, o.pos).map_err(|e| ("lseek", e))?;
    if o.flags != 0 {
        fd::fcntl(f, g::F_SETFL, o.flags as usize).map_err(|e| ("fcntl F_SETFL", e))?;
    }
    if o.extra != 0 {
        fd::fcntl(f, F_ADD_SEALS, o.extra as usize).map_err(|e| ("fcntl F_ADD_SEALS", e))?;
    }
    Ok(())
}
