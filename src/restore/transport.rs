//! Socket-in-slot passing: the session's socket names, and one SCM_RIGHTS message per batch.
//!
//! Names are `fdslot-` and 16 hex digits of a SipHash keyed by the session and the plan hash,
//! so they are unique per session, unpredictable to anyone who does not know the session, spread
//! evenly over the kernel's abstract-name buckets, and different for tasks that disagree on the
//! plan or options (they then cannot reach each other at all, rather than trade wrong files).

use super::roles::{Batch, MAX_BATCH};
use crate::hash::SipHasher;
use crate::sys::socket::{self as sock, UnixAddr};
use crate::sys::{Errno, Fd};
use core::mem::size_of;
use linux_raw_sys::general as g;
use linux_raw_sys::net as n;

const KIND_HOME: u64 = 1;
const KIND_RX: u64 = 2;
const KIND_CTL: u64 = 3;

/// The session's naming key and the plan hash every message carries.
#[derive(Clone, Copy)]
pub struct Names {
    k0: u64,
    k1: u64,
    pub plan_hash: u64,
}

/// Hash of the plan text and of every option that changes roles (the batch size).
pub fn plan_hash(text: &[u8], batch: u16) -> u64 {
    SipHasher::new(0x66_64_73_6c_6f_74_00_01, 0x70_6c_61_6e).write(text).u64(batch as u64).finish()
}

impl Names {
    /// The key mixes in the plan hash once, so that a name costs two SipHash blocks.
    pub fn new(session: &[u8], plan_hash: u64) -> Names {
        let k0 = SipHasher::new(1, 2).write(session).u64(plan_hash).finish();
        let k1 = SipHasher::new(3, 4).write(session).u64(plan_hash).finish();
        Names { k0, k1, plan_hash }
    }

    fn name(&self, kind: u64, a: u16, b: u16, c: u32) -> UnixAddr {
        let h = SipHasher::new(self.k0, self.k1).u64(kind | (a as u64) << 8 | (b as u64) << 24).u64(c as u64).finish();
        let mut buf = *b"fdslot-0000000000000000";
        for i in 0..16 {
            let d = ((h >> (60 - 4 * i)) & 0xf) as u8;
            buf[7 + i] = if d < 10 { b'0' + d } else { b'a' + d - 10 };
        }
        UnixAddr::abstract_name(&buf)
    }

    /// Task `task`'s sending socket; receivers connect to it.
    pub fn home(&self, task: u16) -> UnixAddr {
        self.name(KIND_HOME, task, 0, 0)
    }

    /// The receiving socket of batch `index` from `opener` to `receiver` (task ids).
    pub fn rx(&self, receiver: u16, opener: u16, index: u32) -> UnixAddr {
        self.name(KIND_RX, receiver, opener, index)
    }

    /// Task `task`'s barrier socket when the tasks run their barrier among themselves.
    pub fn ctl(&self, task: u16) -> UnixAddr {
        self.name(KIND_CTL, task, 0, 0)
    }
}

/// The fixed part of a batch message; the target slots follow as u32s.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Header {
    pub magic: u32,
    pub count: u32,
    pub receiver: u16,
    pub opener: u16,
    pub index: u32,
    pub plan_hash: u64,
}

pub const MAGIC: u32 = u32::from_le_bytes(*b"FDS1");
const HEADER: usize = size_of::<Header>();
const SLOTS_MAX: usize = MAX_BATCH as usize * 4;

impl Header {
    pub fn for_batch(b: &Batch, receiver_id: u16, opener_id: u16, plan_hash: u64) -> Header {
        Header { magic: MAGIC, count: b.count as u32, receiver: receiver_id, opener: opener_id, index: b.index, plan_hash }
    }
}

const fn cmsg_align(len: usize) -> usize {
    (len + 7) & !7
}
const CMSG_HDR: usize = size_of::<n::cmsghdr>();
const RIGHTS_SPACE: usize = CMSG_HDR + cmsg_align(MAX_BATCH as usize * 4);
const CREDS_SPACE: usize = CMSG_HDR + cmsg_align(size_of::<n::ucred>());

/// A message buffer: header, slots, and room to notice an oversized datagram.
#[repr(C, align(8))]
pub struct Payload {
    pub header: Header,
    pub slots: [u32; MAX_BATCH as usize + 2],
}

/// Control-message room for 253 fds and one set of credentials.
#[repr(C, align(8))]
struct Control([u8; CONTROL_LEN]);
const CONTROL_LEN: usize = RIGHTS_SPACE + CREDS_SPACE + 16;

/// One outgoing batch, built in place in a buffer the task keeps: the target slots as data,
/// the fds as SCM_RIGHTS. Nothing is zeroed per message (at one fd a message, clearing two
/// kilobytes each time was most of the sender's own CPU).
pub struct Outgoing {
    payload: Payload,
    control: Control,
    n: usize,
}

impl Outgoing {
    pub fn new() -> Outgoing {
        Outgoing { payload: Payload { header: Header::default(), slots: [0; MAX_BATCH as usize + 2] }, control: Control([0; CONTROL_LEN]), n: 0 }
    }

    /// Starts a message with `header`; its `count` slots follow by `push`.
    pub fn start(&mut self, header: &Header) {
        self.payload.header = *header;
        self.n = 0;
    }

    /// Adds `fd`, which the receiver places at `slot`.
    pub fn push(&mut self, slot: u32, fd: Fd) {
        let at = CMSG_HDR + self.n * 4;
        self.payload.slots[self.n] = slot;
        self.control.0[at..at + 4].copy_from_slice(&fd.to_ne_bytes());
        self.n += 1;
    }

    /// Sends the message to `to` from `from`. Never blocks.
    pub fn send(&mut self, from: Fd, to: &UnixAddr) -> Result<(), Errno> {
        debug_assert!(self.n == self.payload.header.count as usize && self.n <= MAX_BATCH as usize);
        let mut iov = g::iovec { iov_base: &mut self.payload as *mut _ as *mut _, iov_len: (HEADER + self.n * 4) as _ };
        let cmsg_len = CMSG_HDR + self.n * 4;
        let c = n::cmsghdr { cmsg_len, cmsg_level: n::SOL_SOCKET as i32, cmsg_type: n::SCM_RIGHTS as i32 };
        // SAFETY: control is 8-aligned and starts with room for one cmsghdr.
        unsafe { core::ptr::write(self.control.0.as_mut_ptr() as *mut n::cmsghdr, c) };
        let msg = n::msghdr {
            msg_name: &to.raw as *const _ as *mut _,
            msg_namelen: to.len as i32,
            msg_iov: &mut iov as *mut g::iovec as *mut _,
            msg_iovlen: 1,
            msg_control: self.control.0.as_mut_ptr() as *mut _,
            msg_controllen: cmsg_align(cmsg_len),
            msg_flags: 0,
        };
        // SAFETY: every pointer in msg refers to a live buffer of the stated length.
        unsafe { sock::sendmsg(from, &msg, n::MSG_DONTWAIT | n::MSG_NOSIGNAL) }.map(|_| ())
    }
}

/// What one receiving socket delivered; the task keeps one and reuses it.
pub struct Received {
    pub payload: Payload,
    pub len: usize,
    pub fds: [Fd; MAX_BATCH as usize],
    pub nfds: usize,
    /// SCM_CREDENTIALS, if they came: (pid, uid).
    pub creds: Option<(i32, u32)>,
    /// MSG_CTRUNC or MSG_TRUNC: something did not fit, and the kernel dropped it.
    pub truncated: bool,
    /// The sender's bound name, if any.
    pub from: UnixAddr,
    control: Control,
}

impl Received {
    /// Closes every received fd (a message we refuse); close never blocks on these kinds.
    pub fn discard(&mut self) {
        for &f in &self.fds[..self.nfds] {
            let _ = crate::sys::fd::close(f);
        }
        self.nfds = 0;
    }
}

/// Receives one message without blocking; Err(EAGAIN) when none is queued. The fds arrive with
/// FD_CLOEXEC as `cloexec` says (the restorer never execs while they are in flight).
pub fn recv_batch(sock_fd: Fd, out: &mut Received, cloexec: bool) -> Result<(), Errno> {
    let mut iov = g::iovec { iov_base: &mut out.payload as *mut _ as *mut _, iov_len: size_of::<Payload>() as _ };
    let mut msg = n::msghdr {
        msg_name: &mut out.from.raw as *mut _ as *mut _,
        msg_namelen: size_of::<n::sockaddr_un>() as i32,
        msg_iov: &mut iov as *mut g::iovec as *mut _,
        msg_iovlen: 1,
        msg_control: out.control.0.as_mut_ptr() as *mut _,
        msg_controllen: out.control.0.len(),
        msg_flags: 0,
    };
    // SAFETY: every pointer in msg refers to a live buffer of the stated length.
    let flags = n::MSG_DONTWAIT | if cloexec { n::MSG_CMSG_CLOEXEC } else { 0 };
    let len = unsafe { sock::recvmsg(sock_fd, &mut msg, flags) }?;
    out.len = len;
    out.from.len = msg.msg_namelen as u32;
    out.nfds = 0;
    out.creds = None;
    out.truncated = msg.msg_flags & (n::MSG_CTRUNC | n::MSG_TRUNC) != 0;
    let mut off = 0usize;
    while off + CMSG_HDR <= msg.msg_controllen {
        // SAFETY: the kernel wrote cmsg headers within msg_controllen; reads are unaligned-safe.
        let c: n::cmsghdr = unsafe { core::ptr::read_unaligned(out.control.0.as_ptr().add(off) as *const n::cmsghdr) };
        if c.cmsg_len < CMSG_HDR || off + c.cmsg_len > msg.msg_controllen {
            break;
        }
        let data = &out.control.0[off + CMSG_HDR..off + c.cmsg_len];
        if c.cmsg_level == n::SOL_SOCKET as i32 && c.cmsg_type == n::SCM_RIGHTS as i32 {
            for chunk in data.chunks_exact(4) {
                let f = i32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                if out.nfds < out.fds.len() {
                    out.fds[out.nfds] = f;
                    out.nfds += 1;
                } else {
                    let _ = crate::sys::fd::close(f);
                    out.truncated = true;
                }
            }
        } else if c.cmsg_level == n::SOL_SOCKET as i32 && c.cmsg_type == n::SCM_CREDENTIALS as i32 && data.len() >= 12 {
            let pid = i32::from_ne_bytes([data[0], data[1], data[2], data[3]]);
            let uid = u32::from_ne_bytes([data[4], data[5], data[6], data[7]]);
            out.creds = Some((pid, uid));
        }
        off += cmsg_align(c.cmsg_len);
    }
    Ok(())
}

impl Received {
    pub fn new() -> Received {
        Received {
            payload: Payload { header: Header::default(), slots: [0; MAX_BATCH as usize + 2] },
            len: 0,
            fds: [-1; MAX_BATCH as usize],
            nfds: 0,
            creds: None,
            truncated: false,
            from: UnixAddr::abstract_name(b""),
            control: Control([0; CONTROL_LEN]),
        }
    }

    /// The message's bytes as received (the first `len` are valid).
    pub fn payload_bytes(&self) -> &[u8] {
        // SAFETY: Payload is plain integers; viewing it as bytes is sound.
        unsafe { core::slice::from_raw_parts(&self.payload as *const Payload as *const u8, size_of::<Payload>()) }
    }

    /// The slots the message names, if its length is consistent with its header.
    pub fn slots(&self) -> Option<&[u32]> {
        let count = self.payload.header.count as usize;
        if self.len < HEADER || count > MAX_BATCH as usize || self.len != HEADER + count * 4 {
            return None;
        }
        Some(&self.payload.slots[..count])
    }
}

impl Default for Received {
    fn default() -> Self {
        Self::new()
    }
}

impl Default for Outgoing {
    fn default() -> Self {
        Self::new()
    }
}

const _: () = assert!(SLOTS_MAX + HEADER < size_of::<Payload>());
