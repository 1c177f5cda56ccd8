//! The AF_UNIX sockets of a snapshot, as sock_diag reports them: type, name, peer. One dump of
//! the network namespace's unix sockets, kept only for the inodes the snapshot holds.

use super::{Snapshot, WHAT_SOCKET};
use crate::arena::{bytes_for, Arena};
use crate::sys::diag::{self, UnixSocket};
use crate::sys::Errno;

/// Sorted socket inodes and what the kernel said about each (`ino == 0`: not AF_UNIX, or in
/// another network namespace).
pub struct Sockets<'a> {
    pub inos: &'a [u32],
    pub info: &'a [UnixSocket],
}

// SAFETY: a plain integer struct (bool is valid as 0), valid when zero-filled.
unsafe impl crate::arena::Zeroable for UnixSocket {}

impl<'a> Sockets<'a> {
    /// Dumps the unix sockets and keeps those the snapshot's fds refer to.
    pub fn read(snap: &Snapshot<'_>) -> Result<Sockets<'static>, Errno> {
        let n = snap.fds.iter().filter(|f| f.what == WHAT_SOCKET).count();
        let mut arena = Arena::map(bytes_for::<u32>(n) + bytes_for::<UnixSocket>(n))?;
        let inos = arena.take::<u32>(n);
        let info = arena.take::<UnixSocket>(n);
        for (k, f) in snap.fds.iter().filter(|f| f.what == WHAT_SOCKET).enumerate() {
            inos[k] = f.ino as u32;
        }
        crate::sort::sort_by_key(inos, |&i| i);
        let mut m = 0;
        for i in 0..n {
            if m == 0 || inos[m - 1] != inos[i] {
                inos[m] = inos[i];
                m += 1;
            }
        }
        let (inos, info) = (&mut inos[..m], &mut info[..m]);
        if m > 0 {
            diag::unix_sockets(None, |s| {
                if let Ok(i) = inos.binary_search(&s.ino) {
                    info[i] = *s;
                }
            })?;
        }
        Ok(Sockets { inos, info })
    }

    /// What sock_diag said about socket `ino`, if it is AF_UNIX and in the snapshot.
    pub fn get(&self, ino: u64) -> Option<&'a UnixSocket> {
        let i = self.inos.binary_search(&(ino as u32)).ok()?;
        Some(&self.info[i]).filter(|s| s.ino != 0)
    }

    /// The socket `ino`: from the snapshot's, else asked for alone (a peer held elsewhere).
    pub fn lookup(&self, ino: u32) -> Option<UnixSocket> {
        if let Some(s) = self.get(ino as u64) {
            return Some(*s);
        }
        let mut found = None;
        let _ = diag::unix_sockets(Some(ino), |s| {
            if s.ino == ino {
                found = Some(*s);
            }
        });
        found
    }

    /// Whether `s` is one end of a socket pair: unnamed, and its peer is unnamed and
    /// connected back to it. Returns the peer.
    pub fn pair_peer(&self, s: &UnixSocket) -> Option<UnixSocket> {
        if s.named || s.peer == 0 {
            return None;
        }
        let p = self.lookup(s.peer)?;
        (!p.named && p.peer == s.ino).then_some(p)
    }
}
