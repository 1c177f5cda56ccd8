//! `Errno`, the error of every syscall wrapper, and its symbolic names for error lines.

use linux_raw_sys::errno as e;

/// A positive Linux error number, as returned (negated) by a failed syscall.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Errno(pub u16);

/// The names as one string and their numbers in the same order: no table of pointers, so
/// nothing here needs a relocation in the static-pie or the blob.
macro_rules! names {
    ($($name:ident),* $(,)?) => {
        const NUMBERS: &[u8] = &[$(e::$name as u8),*];
        const TEXT: &str = concat!($(stringify!($name), " "),*);
    };
}

names!(
    EPERM, ENOENT, ESRCH, EINTR, EIO, ENXIO, E2BIG, ENOEXEC, EBADF, ECHILD, EAGAIN, ENOMEM, EACCES,
    EFAULT, EBUSY, EEXIST, EXDEV, ENODEV, ENOTDIR, EISDIR, EINVAL, ENFILE, EMFILE, ENOTTY, ETXTBSY,
    EFBIG, ENOSPC, ESPIPE, EROFS, EMLINK, EPIPE, ERANGE, ENAMETOOLONG, ENOSYS, ELOOP, ENOTSOCK,
    EMSGSIZE, EPROTOTYPE, EOPNOTSUPP, EADDRINUSE, EADDRNOTAVAIL, ENETDOWN, ECONNRESET, ENOBUFS,
    EISCONN, ENOTCONN, ETOOMANYREFS, ETIMEDOUT, ECONNREFUSED, EOVERFLOW, EDQUOT, ENOTEMPTY,
);

impl Errno {
    pub const AGAIN: Errno = Errno(e::EAGAIN as u16);
    pub const INTR: Errno = Errno(e::EINTR as u16);
    pub const INVAL: Errno = Errno(e::EINVAL as u16);
    pub const BADF: Errno = Errno(e::EBADF as u16);
    pub const CONNREFUSED: Errno = Errno(e::ECONNREFUSED as u16);
    pub const NOTCONN: Errno = Errno(e::ENOTCONN as u16);
    pub const NOENT: Errno = Errno(e::ENOENT as u16);
    pub const TOOMANYREFS: Errno = Errno(e::ETOOMANYREFS as u16);
    pub const TIMEDOUT: Errno = Errno(e::ETIMEDOUT as u16);
    pub const NOSYS: Errno = Errno(e::ENOSYS as u16);
    pub const MFILE: Errno = Errno(e::EMFILE as u16);
    pub const CHILD: Errno = Errno(e::ECHILD as u16);
    pub const SRCH: Errno = Errno(e::ESRCH as u16);
    pub const PERM: Errno = Errno(e::EPERM as u16);
    pub const ADDRINUSE: Errno = Errno(e::EADDRINUSE as u16);
    pub const NXIO: Errno = Errno(e::ENXIO as u16);

    /// The symbolic name (`ENOENT`), or `None` for a number this table does not know.
    pub fn name(self) -> Option<&'static str> {
        let i = NUMBERS.iter().position(|&n| n as u16 == self.0)?;
        TEXT.split(' ').nth(i)
    }
}

/// Turns a raw syscall return into `Ok(value)` or `Err(Errno)`.
#[inline]
pub fn check(ret: isize) -> Result<usize, Errno> {
    if (-4095..0).contains(&ret) {
        Err(Errno((-ret) as u16))
    } else {
        Ok(ret as usize)
    }
}
