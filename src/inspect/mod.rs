//! Reading live fd tables from the kernel: for each task, its fds (getdents64 on /proc/PID/fd),
//! what each refers to (readlink, fstat through the magic link), its offset, status flags,
//! close-on-exec bit and eventfd counter (/proc/PID/fdinfo/N); which tasks share one table
//! (kcmp KCMP_FILES); and which fds share one open file description (kcmp KCMP_FILE).
//!
//! Grouping stays near-linear: fds are sorted by (device, inode) first, and only fds of one
//! inode are ordered with kcmp, which returns an order (so a sort, not a comparison of every
//! pair). `capture` and `verify` both read the kernel through here.

pub mod out;
pub mod unix;

use crate::arena::{bytes_for, Arena, Zeroable};
use crate::sys::procfs::{self, FileStat, KCMP_FILE, KCMP_FILES};
use crate::sys::{fd, Errno, Fd};
use crate::text::Line;
use linux_raw_sys::general as g;

/// What a link in /proc/PID/fd names.
pub const WHAT_PATH: u8 = 1;
pub const WHAT_PIPE: u8 = 2;
pub const WHAT_SOCKET: u8 = 3;
pub const WHAT_EVENTFD: u8 = 4;
pub const WHAT_MEMFD: u8 = 5;
/// Anything else: other anon inodes (epoll, signalfd, timerfd, ...), namespaces, ...
pub const WHAT_OTHER: u8 = 6;

/// O_LARGEFILE: the kernel sets it on every open of a 64-bit process; nobody asks for it.
pub const O_LARGEFILE: u32 = 0o100000;

/// One open fd of a live task.
#[derive(Clone, Copy, Default, Debug)]
#[repr(C)]
pub struct LiveFd {
    pub fd: u32,
    /// The task index (a table owner: tasks sharing a table list its fds once).
    pub task: u32,
    pub dev: u64,
    pub ino: u64,
    pub rdev: u64,
    /// st_size (a memfd's size).
    pub size: u64,
    /// fdinfo `pos`.
    pub pos: u64,
    /// fdinfo `eventfd-count`.
    pub count: u64,
    /// fdinfo `flags` without O_CLOEXEC (kept in `cloexec`) and O_LARGEFILE.
    pub flags: u32,
    pub mode: u32,
    pub nlink: u32,
    /// The open file description's index, once grouped.
    pub desc: u32,
    pub what: u8,
    pub cloexec: u8,
    /// fdinfo `eventfd-semaphore`: 0, 1, or 2 where the kernel does not say.
    pub semaphore: u8,
    pub _pad: u8,
}

// SAFETY: a plain integer struct, valid when zero-filled.
unsafe impl Zeroable for LiveFd {}

/// A failure to read a task: which pid (and fd), which call, which errno.
#[derive(Clone, Copy, Debug)]
pub struct InspectError {
    pub pid: i32,
    pub fd: Option<u32>,
    pub what: &'static str,
    pub errno: Errno,
}

impl InspectError {
    /// `pid P fd N: WHAT: ERRNO`.
    pub fn format<const N: usize>(&self, l: &mut Line<N>) {
        if self.pid != 0 {
            l.str("pid ").num(self.pid as u64);
            if let Some(f) = self.fd {
                l.str(" fd ").num(f as u64);
            }
            l.str(": ");
        }
        l.str(self.what);
        if self.errno.0 != 0 {
            l.str(": ").str(self.errno.name().unwrap_or("error"));
        }
    }
}

/// More fds than the table had when it was counted (it grew while being read).
pub const GREW: Errno = Errno(0);

/// The live tables of a list of tasks, grouped into open file descriptions.
pub struct Snapshot<'a> {
    pub pids: &'a [i32],
    /// The index of the first task sharing task t's fd table (t itself for a table of its own).
    pub owner: &'a [u32],
    /// `fds[first[t]..first[t + 1]]` are task t's, by fd (empty unless t is an owner).
    pub first: &'a [u32],
    /// Every fd of every owner, by (task, fd); `desc` numbers the descriptions in order of
    /// first appearance.
    pub fds: &'a [LiveFd],
    pub descs: u32,
}

impl<'a> Snapshot<'a> {
    pub fn task_fds(&self, t: usize) -> &'a [LiveFd] {
        &self.fds[self.first[t] as usize..self.first[t + 1] as usize]
    }

    /// The index into `fds` of task t's fd `fd`, if open.
    pub fn find(&self, t: usize, fd: u32) -> Option<usize> {
        let t = self.owner[t] as usize;
        let base = self.first[t] as usize;
        self.task_fds(t).binary_search_by_key(&fd, |f| f.fd).ok().map(|i| base + i)
    }
}

/// The /proc directories of one task: fd and fdinfo.
pub struct TaskDirs {
    pub pid: i32,
    pub fd_dir: Fd,
    pub info_dir: Fd,
}

impl TaskDirs {
    pub fn open(pid: i32) -> Result<TaskDirs, InspectError> {
        let open = |sub: &str| {
            let mut p = Line::<48>::new();
            p.str("/proc/").num(pid as u64).str("/").str(sub).str("\0");
            fd::open(p.peek(), g::O_RDONLY | g::O_DIRECTORY | g::O_CLOEXEC, 0)
        };
        let fd_dir = open("fd").map_err(|e| InspectError { pid, fd: None, what: "open /proc/PID/fd", errno: e })?;
        match open("fdinfo") {
            Ok(info_dir) => Ok(TaskDirs { pid, fd_dir, info_dir }),
            Err(e) => {
                let _ = fd::close(fd_dir);
                Err(InspectError { pid, fd: None, what: "open /proc/PID/fdinfo", errno: e })
            }
        }
    }
}

impl Drop for TaskDirs {
    fn drop(&mut self) {
        let _ = fd::close(self.fd_dir);
        let _ = fd::close(self.info_dir);
    }
}

/// Calls `each` with every fd number listed in the directory `dir` (from its start).
pub fn for_each_fd(dir: Fd, mut each: impl FnMut(u32) -> Result<(), Errno>) -> Result<(), Errno> {
    fd::seek_to(dir, 0)?;
    let mut buf = [0u8; 8192];
    loop {
        let n = fd::getdents64(dir, &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        let mut at = 0;
        // linux_dirent64: u64 ino, i64 off, u16 reclen, u8 type, name NUL-terminated.
        while at + 19 < n {
            let reclen = u16::from_ne_bytes([buf[at + 16], buf[at + 17]]) as usize;
            let name = &buf[at + 19..at + reclen];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if let Some(v) = crate::text::parse_radix(name, 10) {
                each(v as u32)?;
            }
            at += reclen.max(1);
        }
    }
}

/// The decimal name of fd `fd`, NUL-terminated.
pub fn fd_name(fd: u32) -> Line<16> {
    let mut l = Line::new();
    l.num(fd as u64).str("\0");
    l
}

/// readlink /proc/PID/fd/N into `buf`; returns the length.
pub fn read_link(dirs: &TaskDirs, fd: u32, buf: &mut [u8]) -> Result<usize, Errno> {
    procfs::readlinkat(dirs.fd_dir, fd_name(fd).peek(), buf)
}

/// Classifies a link target.
pub fn what_of(link: &[u8], st: &FileStat) -> u8 {
    if link.starts_with(b"/memfd:") && link.ends_with(b" (deleted)") && st.nlink == 0 && st.mode & 0o170000 == 0o100000 {
        WHAT_MEMFD
    } else if link.starts_with(b"/") {
        WHAT_PATH
    } else if link.starts_with(b"pipe:[") {
        WHAT_PIPE
    } else if link.starts_with(b"socket:[") {
        WHAT_SOCKET
    } else if link == b"anon_inode:[eventfd]" {
        WHAT_EVENTFD
    } else {
        WHAT_OTHER
    }
}

fn field<'b>(text: &'b [u8], key: &[u8]) -> Option<&'b [u8]> {
    for line in text.split(|&b| b == b'\n') {
        if let Some(rest) = line.strip_prefix(key) {
            let start = rest.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(rest.len());
            return Some(&rest[start..]);
        }
    }
    None
}

/// Reads one fd: fstat through the link, fdinfo. `link` receives the readlink text; returns its
/// length. ENOENT means the fd was closed meanwhile.
pub fn inspect_fd(dirs: &TaskDirs, fd: u32, out: &mut LiveFd, link: &mut [u8]) -> Result<usize, (&'static str, Errno)> {
    let name = fd_name(fd);
    let n = procfs::readlinkat(dirs.fd_dir, name.peek(), link).map_err(|e| ("readlink /proc/PID/fd/N", e))?;
    let st = procfs::fstatat(dirs.fd_dir, name.peek(), 0).map_err(|e| ("stat /proc/PID/fd/N", e))?;
    let f = procfs::openat(dirs.info_dir, name.peek(), g::O_RDONLY | g::O_CLOEXEC).map_err(|e| ("open /proc/PID/fdinfo/N", e))?;
    let mut info = [0u8; 1024];
    let got = fd::read(f, &mut info);
    let _ = fd::close(f);
    let got = got.map_err(|e| ("read /proc/PID/fdinfo/N", e))?;
    let info = &info[..got];
    let flags = field(info, b"flags:").and_then(|v| crate::text::parse_radix(v, 8)).ok_or(("parse fdinfo flags", Errno::INVAL))? as u32;
    *out = LiveFd {
        fd,
        dev: st.dev,
        ino: st.ino,
        rdev: st.rdev,
        size: st.size,
        pos: field(info, b"pos:").and_then(|v| crate::text::parse_radix(v, 10)).unwrap_or(0),
        count: field(info, b"eventfd-count:").and_then(|v| crate::text::parse_radix(v, 16)).unwrap_or(0),
        flags: flags & !(g::O_CLOEXEC | O_LARGEFILE),
        mode: st.mode,
        nlink: st.nlink,
        what: what_of(&link[..n], &st),
        cloexec: (flags & g::O_CLOEXEC != 0) as u8,
        semaphore: match field(info, b"eventfd-semaphore:") {
            Some(v) => (v.first() == Some(&b'1')) as u8,
            None => 2,
        },
        ..LiveFd::default()
    };
    Ok(n)
}

/// kcmp's order of two fds of (possibly) different tasks; `Err` when either is gone.
fn kcmp_fds(pids: &[i32], a: &LiveFd, b: &LiveFd) -> Result<u32, Errno> {
    procfs::kcmp(pids[a.task as usize], pids[b.task as usize], KCMP_FILE, a.fd, b.fd)
}

/// Each task's table owner: the first task whose table kcmp(KCMP_FILES) says is the same.
fn table_owners(pids: &[i32], owner: &mut [u32], order: &mut [u32]) -> Result<(), InspectError> {
    let mut failed = None;
    for (i, o) in order.iter_mut().enumerate() {
        *o = i as u32;
    }
    crate::sort::sort_by(order, |&a, &b| match procfs::kcmp(pids[a as usize], pids[b as usize], KCMP_FILES, 0, 0) {
        Ok(1) => true,
        Ok(0) => a < b,
        Ok(_) => false,
        Err(e) => {
            failed.get_or_insert(InspectError { pid: pids[a as usize], fd: None, what: "kcmp KCMP_FILES", errno: e });
            false
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let mut i = 0;
    while i < order.len() {
        let mut j = i + 1;
        while j < order.len() && procfs::kcmp(pids[order[i] as usize], pids[order[j] as usize], KCMP_FILES, 0, 0) == Ok(0) {
            j += 1;
        }
        // Equal tables sort by index, so the run's first is the lowest task.
        for k in i..j {
            owner[order[k] as usize] = order[i];
        }
        i = j;
    }
    Ok(())
}

/// How many more fds than counted the tables may gain, per table, while they are read (pooled).
const SLACK: usize = 64;

/// Reads the fd tables of `pids` and groups their fds into open file descriptions.
pub fn snapshot(pids_in: &[i32]) -> Result<Snapshot<'static>, InspectError> {
    let n = pids_in.len();
    let nomem = |e| InspectError { pid: 0, fd: None, what: "mmap", errno: e };
    let mut small = Arena::map(bytes_for::<i32>(n) + 3 * bytes_for::<u32>(n + 1)).map_err(nomem)?;
    let pids = small.take::<i32>(n);
    pids.copy_from_slice(pids_in);
    let owner = small.take::<u32>(n);
    let first = small.take::<u32>(n + 1);
    let scratch = small.take::<u32>(n + 1);
    table_owners(pids, owner, &mut scratch[..n])?;
    // Count, then read: the arena is sized from the counts.
    let mut total = 0usize;
    for t in 0..n {
        if owner[t] as usize == t {
            let dirs = TaskDirs::open(pids[t])?;
            let mut c = 0usize;
            for_each_fd(dirs.fd_dir, |_| {
                c += 1;
                Ok(())
            })
            .map_err(|e| InspectError { pid: pids[t], fd: None, what: "getdents64 /proc/PID/fd", errno: e })?;
            total += c + SLACK;
        }
    }
    let mut arena = Arena::map(bytes_for::<LiveFd>(total) + 2 * bytes_for::<u32>(total)).map_err(nomem)?;
    let fds = arena.take::<LiveFd>(total);
    let order = arena.take::<u32>(total);
    let merge_scratch = arena.take::<u32>(total);
    let mut used = 0usize;
    let mut link = [0u8; 4200];
    for t in 0..n {
        first[t] = used as u32;
        if owner[t] as usize != t {
            continue;
        }
        let pid = pids[t];
        let dirs = TaskDirs::open(pid)?;
        let start = used;
        for_each_fd(dirs.fd_dir, |f| {
            if used == total {
                return Err(GREW);
            }
            order[used] = f;
            used += 1;
            Ok(())
        })
        .map_err(|e| match e {
            GREW => InspectError { pid, fd: None, what: "its fd table grew while it was read; stop the tasks (SIGSTOP) and retry", errno: GREW },
            e => InspectError { pid, fd: None, what: "getdents64 /proc/PID/fd", errno: e },
        })?;
        crate::sort::sort_by_key(&mut order[start..used], |&f| f);
        let mut kept = start;
        for &f in order[start..used].iter() {
            let mut live = LiveFd::default();
            match inspect_fd(&dirs, f, &mut live, &mut link) {
                Ok(_) => {
                    live.task = t as u32;
                    fds[kept] = live;
                    kept += 1;
                }
                // Closed since it was listed: it is not part of the table any more.
                Err((_, e)) if e == Errno::NOENT => {}
                Err((what, e)) => return Err(InspectError { pid, fd: Some(f), what, errno: e }),
            }
        }
        used = kept;
    }
    first[n] = used as u32;
    let fds = &mut fds[..used];
    let descs = group(pids, fds, &mut order[..used], merge_scratch)?;
    Ok(Snapshot { pids, owner, first, fds, descs })
}

/// Numbers the open file descriptions: sorts by (dev, ino), then each run of one inode by
/// kcmp's order, so equal neighbours are one description. Numbers follow first appearance.
fn group(pids: &[i32], fds: &mut [LiveFd], order: &mut [u32], scratch: &mut [u32]) -> Result<u32, InspectError> {
    for (i, o) in order.iter_mut().enumerate() {
        *o = i as u32;
    }
    crate::sort::sort_by_key(order, |&i| (fds[i as usize].dev, fds[i as usize].ino, i));
    let mut failed = None;
    let mut i = 0;
    while i < order.len() {
        let key = |k: u32| (fds[k as usize].dev, fds[k as usize].ino);
        let mut j = i + 1;
        while j < order.len() && key(order[j]) == key(order[i]) {
            j += 1;
        }
        if j - i > 1 {
            crate::sort::merge_sort_by(&mut order[i..j], scratch, |&a, &b| {
                let (x, y) = (&fds[a as usize], &fds[b as usize]);
                match kcmp_fds(pids, x, y) {
                    Ok(1) => true,
                    // One description: keep first appearance first.
                    Ok(0) => a < b,
                    Ok(_) => false,
                    Err(e) => {
                        failed.get_or_insert(InspectError { pid: pids[x.task as usize], fd: Some(x.fd), what: "kcmp KCMP_FILE", errno: e });
                        false
                    }
                }
            });
            if let Some(e) = failed {
                return Err(e);
            }
        }
        // Mark each description by its first fd's index (temporarily in `desc`).
        let mut head = order[i];
        fds[head as usize].desc = head;
        for k in i + 1..j {
            let (a, b) = (order[k - 1] as usize, order[k] as usize);
            let same = kcmp_fds(pids, &fds[a], &fds[b]).map_err(|e| InspectError { pid: pids[fds[a].task as usize], fd: Some(fds[a].fd), what: "kcmp KCMP_FILE", errno: e })? == 0;
            if !same {
                head = order[k];
            }
            fds[b].desc = head;
        }
        i = j;
    }
    // Renumber 0.. by first appearance: a description's head is its first fd in (task, fd)
    // order, and every fd comes after (or is) its head.
    let mut next = 0u32;
    for i in 0..fds.len() {
        let head = fds[i].desc as usize;
        if head == i {
            order[i] = next;
            next += 1;
        }
        fds[i].desc = order[head];
    }
    Ok(next)
}
