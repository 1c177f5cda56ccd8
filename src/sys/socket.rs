//! AF_UNIX socket syscalls: the transport of socket-in-slot passing.

use super::arch::*;
use super::errno::check;
use super::{Fd, SysResult};
use linux_raw_sys::general as g;
use linux_raw_sys::net as n;

/// SOCK_CLOEXEC and SOCK_NONBLOCK share their values with the O_ flags.
pub const SOCK_CLOEXEC: u32 = g::O_CLOEXEC;
pub const SOCK_NONBLOCK: u32 = g::O_NONBLOCK;

/// An abstract AF_UNIX address: `sun_path[0] == 0`, then `len - 1` name bytes.
#[derive(Clone, Copy)]
pub struct UnixAddr {
    pub raw: n::sockaddr_un,
    /// The length passed to the kernel: family plus name.
    pub len: u32,
}

impl UnixAddr {
    /// An abstract address whose name is `name` (without the leading NUL).
    pub fn abstract_name(name: &[u8]) -> UnixAddr {
        let mut raw = n::sockaddr_un { sun_family: n::AF_UNIX as u16, sun_path: [0; 108] };
        let take = name.len().min(107);
        for (dst, src) in raw.sun_path[1..1 + take].iter_mut().zip(name) {
            *dst = *src as _;
        }
        UnixAddr { raw, len: (2 + 1 + take) as u32 }
    }

    /// The name bytes of an abstract address (after the leading NUL).
    pub fn name_bytes(&self) -> &[u8] {
        let n = (self.len as usize).saturating_sub(3).min(107);
        // SAFETY: sun_path holds c_char (i8), which has the layout of u8.
        unsafe { core::slice::from_raw_parts(self.raw.sun_path.as_ptr().add(1) as *const u8, n) }
    }
}

/// `socket(AF_UNIX, kind, 0)`.
pub fn socket_unix(kind: u32) -> SysResult<Fd> {
    // SAFETY: integer arguments only.
    check(unsafe { syscall3(g::__NR_socket, n::AF_UNIX as usize, kind as usize, 0) }).map(|v| v as Fd)
}

/// `socketpair(AF_UNIX, kind, 0)`.
pub fn socketpair_unix(kind: u32) -> SysResult<(Fd, Fd)> {
    let mut fds = [0i32; 2];
    // SAFETY: the kernel writes two ints.
    check(unsafe { syscall4(g::__NR_socketpair, n::AF_UNIX as usize, kind as usize, 0, fds.as_mut_ptr() as usize) })?;
    Ok((fds[0], fds[1]))
}

/// `bind(fd, addr)`.
pub fn bind(fd: Fd, addr: &UnixAddr) -> SysResult<()> {
    // SAFETY: addr.raw outlives the call and addr.len is within it.
    check(unsafe { syscall3(g::__NR_bind, fd as usize, &addr.raw as *const _ as usize, addr.len as usize) }).map(|_| ())
}

/// `connect(fd, addr)`.
pub fn connect(fd: Fd, addr: &UnixAddr) -> SysResult<()> {
    // SAFETY: as for bind.
    check(unsafe { syscall3(g::__NR_connect, fd as usize, &addr.raw as *const _ as usize, addr.len as usize) }).map(|_| ())
}

/// `setsockopt(fd, SOL_SOCKET, opt, &int)`.
pub fn set_socket_int(fd: Fd, opt: u32, value: i32) -> SysResult<()> {
    // SAFETY: value outlives the call.
    check(unsafe {
        syscall5(g::__NR_setsockopt, fd as usize, n::SOL_SOCKET as usize, opt as usize, &value as *const i32 as usize, 4)
    })
    .map(|_| ())
}

/// `sendmsg(fd, msg, flags)`.
///
/// # Safety
/// Every pointer in `msg` must be valid for the lengths it states.
pub unsafe fn sendmsg(fd: Fd, msg: &n::msghdr, flags: u32) -> SysResult<usize> {
    // SAFETY: the caller vouches for msg.
    check(unsafe { syscall3(g::__NR_sendmsg, fd as usize, msg as *const _ as usize, flags as usize) })
}

/// `recvmsg(fd, msg, flags)`.
///
/// # Safety
/// Every pointer in `msg` must be valid for writes of the lengths it states.
pub unsafe fn recvmsg(fd: Fd, msg: &mut n::msghdr, flags: u32) -> SysResult<usize> {
    // SAFETY: the caller vouches for msg.
    check(unsafe { syscall3(g::__NR_recvmsg, fd as usize, msg as *mut _ as usize, flags as usize) })
}

/// `send(fd, buf, MSG_NOSIGNAL | flags)` on a connected socket.
pub fn send(fd: Fd, buf: &[u8], flags: u32) -> SysResult<usize> {
    // SAFETY: buf outlives the call; no address.
    check(unsafe { syscall6(g::__NR_sendto, fd as usize, buf.as_ptr() as usize, buf.len(), (flags | n::MSG_NOSIGNAL) as usize, 0, 0) })
}

/// `sendto(fd, buf, flags | MSG_NOSIGNAL, addr)`: one datagram to a named socket.
pub fn send_to(fd: Fd, buf: &[u8], flags: u32, to: &UnixAddr) -> SysResult<usize> {
    // SAFETY: buf and to.raw outlive the call; to.len is within to.raw.
    check(unsafe {
        syscall6(g::__NR_sendto, fd as usize, buf.as_ptr() as usize, buf.len(), (flags | n::MSG_NOSIGNAL) as usize,
                 &to.raw as *const _ as usize, to.len as usize)
    })
}

/// `recv(fd, buf, flags)` on a connected socket.
pub fn recv(fd: Fd, buf: &mut [u8], flags: u32) -> SysResult<usize> {
    // SAFETY: the kernel writes at most buf.len() bytes.
    check(unsafe { syscall6(g::__NR_recvfrom, fd as usize, buf.as_mut_ptr() as usize, buf.len(), flags as usize, 0, 0) })
}

/// `listen(fd, backlog)`.
pub fn listen(fd: Fd, backlog: u32) -> SysResult<()> {
    // SAFETY: integer arguments only.
    check(unsafe { syscall2(g::__NR_listen, fd as usize, backlog as usize) }).map(|_| ())
}

/// `accept4(fd, NULL, NULL, flags)`.
pub fn accept4(fd: Fd, flags: u32) -> SysResult<Fd> {
    // SAFETY: no address is asked for.
    check(unsafe { syscall4(g::__NR_accept4, fd as usize, 0, 0, flags as usize) }).map(|v| v as Fd)
}

/// `getsockopt(fd, SOL_SOCKET, SO_PEERCRED)`: the (pid, uid, gid) of the peer when it connected.
pub fn peer_cred(fd: Fd) -> SysResult<(i32, u32, u32)> {
    let mut cred = [0u32; 3];
    let mut len: u32 = 12;
    // SAFETY: the kernel writes at most `len` bytes into cred and updates len.
    check(unsafe {
        syscall5(g::__NR_getsockopt, fd as usize, n::SOL_SOCKET as usize, n::SO_PEERCRED as usize, cred.as_mut_ptr() as usize, &mut len as *mut u32 as usize)
    })?;
    Ok((cred[0] as i32, cred[1], cred[2]))
}
