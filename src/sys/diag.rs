//! AF_UNIX sock_diag over NETLINK_SOCK_DIAG: which socket is connected to which.
//!
//! linux-raw-sys 0.12 carries neither `unix_diag_req` nor `unix_diag_msg` (include/uapi/linux/
//! unix_diag.h), so they are defined here, `repr(C)` as the kernel lays them out, with the
//! netlink header they travel behind.

use super::arch::*;
use super::errno::check;
use super::{fd, Errno, Fd, SysResult};
use linux_raw_sys::general as g;
use linux_raw_sys::net as n;

const NETLINK_SOCK_DIAG: usize = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const UDIAG_SHOW_NAME: u32 = 1;
const UDIAG_SHOW_PEER: u32 = 4;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_PEER: u16 = 2;

/// `struct nlmsghdr`.
#[repr(C)]
#[derive(Clone, Copy)]
struct NlHeader {
    len: u32,
    kind: u16,
    flags: u16,
    seq: u32,
    pid: u32,
}

/// `struct unix_diag_req`.
#[repr(C)]
#[derive(Clone, Copy)]
struct UnixDiagReq {
    family: u8,
    protocol: u8,
    pad: u16,
    states: u32,
    ino: u32,
    show: u32,
    cookie: [u32; 2],
}

/// `struct unix_diag_msg`.
#[repr(C)]
#[derive(Clone, Copy)]
struct UnixDiagMsg {
    family: u8,
    kind: u8,
    state: u8,
    pad: u8,
    ino: u32,
    cookie: [u32; 2],
}

#[repr(C)]
struct Request {
    header: NlHeader,
    req: UnixDiagReq,
}

/// One AF_UNIX socket as sock_diag reports it.
#[derive(Clone, Copy, Default, Debug)]
pub struct UnixSocket {
    pub ino: u32,
    /// SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET.
    pub kind: u8,
    /// The TCP_* state the kernel reuses (1 established, 7 close, 10 listen).
    pub state: u8,
    /// Bound to a name (a path or an abstract name), or an accepted socket of a listener.
    pub named: bool,
    /// The connected peer's inode; 0 for none.
    pub peer: u32,
}

fn read_u32(b: &[u8]) -> u32 {
    u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
}

/// `socket(AF_NETLINK, SOCK_RAW, NETLINK_SOCK_DIAG)`, then `send` of a SOCK_DIAG_BY_FAMILY
/// request and `recv` of the answers: every AF_UNIX socket of this network namespace (a dump),
/// or the one socket `only` (inode); `each` sees every answer. `ENOENT` when the kernel has no
/// unix_diag (CONFIG_UNIX_DIAG off, or its module not loaded).
pub fn unix_sockets(only: Option<u32>, mut each: impl FnMut(&UnixSocket)) -> SysResult<()> {
    // SAFETY: integer arguments only.
    let sock = check(unsafe {
        syscall3(g::__NR_socket, n::AF_NETLINK as usize, (n::SOCK_RAW | g::O_CLOEXEC) as usize, NETLINK_SOCK_DIAG)
    })? as Fd;
    let r = query(sock, only, &mut each);
    let _ = fd::close(sock);
    r
}

fn query(sock: Fd, only: Option<u32>, each: &mut impl FnMut(&UnixSocket)) -> SysResult<()> {
    let req = Request {
        header: NlHeader {
            len: core::mem::size_of::<Request>() as u32,
            kind: SOCK_DIAG_BY_FAMILY,
            flags: NLM_F_REQUEST | if only.is_none() { NLM_F_DUMP } else { 0 },
            seq: 1,
            pid: 0,
        },
        req: UnixDiagReq {
            family: n::AF_UNIX as u8,
            protocol: 0,
            pad: 0,
            states: u32::MAX,
            ino: only.unwrap_or(0),
            show: UDIAG_SHOW_NAME | UDIAG_SHOW_PEER,
            // INET_DIAG_NOCOOKIE: look the socket up by inode alone.
            cookie: if only.is_some() { [u32::MAX; 2] } else { [0; 2] },
        },
    };
    // SAFETY: Request is plain integers; the byte view lives as long as req.
    let bytes = unsafe { core::slice::from_raw_parts(&req as *const Request as *const u8, core::mem::size_of::<Request>()) };
    super::socket::send(sock, bytes, 0)?;
    let mut buf = [0u8; 32768];
    let hlen = core::mem::size_of::<NlHeader>();
    loop {
        let got = match super::socket::recv(sock, &mut buf, 0) {
            Ok(0) => return Ok(()),
            Ok(got) => got,
            Err(e) if e == Errno::INTR => continue,
            Err(e) => return Err(e),
        };
        let mut at = 0;
        while at + hlen <= got {
            let len = read_u32(&buf[at..]) as usize;
            let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
            if len < hlen || at + len > got {
                return Err(Errno(linux_raw_sys::errno::EPROTO as u16));
            }
            match kind {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let code = if len >= hlen + 4 { read_u32(&buf[at + hlen..]) as i32 } else { -(linux_raw_sys::errno::EPROTO as i32) };
                    return if code == 0 { Ok(()) } else { Err(Errno((-code) as u16)) };
                }
                SOCK_DIAG_BY_FAMILY => each(&parse_one(&buf[at + hlen..at + len])),
                _ => {}
            }
            at += (len + 3) & !3;
        }
        if only.is_some() {
            return Ok(());
        }
    }
}

/// One `unix_diag_msg` and its attributes.
fn parse_one(m: &[u8]) -> UnixSocket {
    let mlen = core::mem::size_of::<UnixDiagMsg>();
    if m.len() < mlen {
        return UnixSocket::default();
    }
    let mut s = UnixSocket { ino: read_u32(&m[4..]), kind: m[1], state: m[2], named: false, peer: 0 };
    let mut at = mlen;
    while at + 4 <= m.len() {
        let alen = u16::from_ne_bytes([m[at], m[at + 1]]) as usize;
        let akind = u16::from_ne_bytes([m[at + 2], m[at + 3]]);
        if alen < 4 || at + alen > m.len() {
            break;
        }
        let body = &m[at + 4..at + alen];
        match akind {
            UNIX_DIAG_NAME if !body.is_empty() => s.named = true,
            UNIX_DIAG_PEER if body.len() >= 4 => s.peer = read_u32(body),
            _ => {}
        }
        at += (alen + 3) & !3;
    }
    s
}
