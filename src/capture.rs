//! `fdslot capture`: a plan (format 1) that describes the fd tables of live processes.
//!
//! The kernel is read through [`crate::inspect`]: one object per open file description (kcmp),
//! pipes matched by inode with their read and write sides, AF_UNIX socket pairs through their
//! peers (sock_diag), shared fd tables (kcmp KCMP_FILES). What a plan cannot hold is named fd by
//! fd. What capture cannot know is said in comments: pipe contents (a pipe cannot be read
//! without taking the bytes), and memfd contents unless `--data DIR` saves them.

use crate::arena::{bytes_for, Arena, Zeroable};
use crate::inspect::out::Out;
use crate::inspect::unix::Sockets;
use crate::inspect::{self, InspectError, LiveFd, Snapshot, WHAT_EVENTFD, WHAT_MEMFD, WHAT_PATH, WHAT_PIPE, WHAT_SOCKET};
use crate::sys::{fd, procfs, Errno};
use crate::text::Line;
use linux_raw_sys::general as g;

pub struct Options<'a> {
    pub tree: bool,
    pub skip_unsupported: bool,
    /// Where memfd contents are saved (`data=` paths in the plan point there).
    pub data_dir: Option<&'a [u8]>,
}

/// One captured task.
#[derive(Clone, Copy, Default)]
#[repr(C)]
pub struct CapTask {
    pub pid: i32,
    pub ppid: i32,
    /// The parent's index + 1 among the captured tasks; 0 for none.
    pub parent: u32,
    /// `files=`: index + 1 of the task whose table this one shares.
    pub files: u32,
    /// When it started (clock ticks since boot): siblings are ordered by it, so task ids
    /// follow creation order even where pids wrapped.
    pub start: u64,
}

// SAFETY: plain integers, valid when zero.
unsafe impl Zeroable for CapTask {}

/// Why a description cannot be captured (0: it can).
const R_DELETED: u8 = 1;
const R_PTMX: u8 = 2;
const R_SOCKET: u8 = 3;
const R_UNIX: u8 = 4;
const R_PAIR_NONBLOCK: u8 = 5;
const R_NO_DIAG: u8 = 6;
const R_OTHER: u8 = 7;
const R_FLAGS: u8 = 8;
const R_EMPTY_NAME: u8 = 9;
const R_PIPE_NONBLOCK: u8 = 10;

/// The kind of a captured object.
const O_REG: u8 = 1;
const O_FIFO: u8 = 2;
const O_PIPE: u8 = 3;
const O_PAIR: u8 = 4;
const O_EVENTFD: u8 = 5;
const O_MEMFD: u8 = 6;
const O_REOPEN: u8 = 7;

/// One object of the plan being written.
#[derive(Clone, Copy, Default)]
#[repr(C)]
struct CapObject {
    kind: u8,
    /// Which ends have a description (pipes, socket pairs).
    ends: u8,
    /// A reopen's end.
    end: u8,
    /// Left out after all (a pipe without targets, and its reopens).
    dropped: u8,
    /// A reopen's pipe (object index).
    pipe: u32,
    /// The first fd (index into the snapshot) of the object's first description.
    rep: u32,
}

// SAFETY: plain integers, valid when zero.
unsafe impl Zeroable for CapObject {}

/// A failure: the line to print and the exit code.
pub struct CaptureError {
    pub line: Line<400>,
}

fn fail(e: &InspectError) -> CaptureError {
    let mut line = Line::new();
    line.str("fdslot: capture: ");
    e.format(&mut line);
    CaptureError { line }
}

fn fail_msg(pid: i32, what: &str) -> CaptureError {
    let mut line = Line::new();
    line.str("fdslot: capture: pid ").num(pid as u64).str(": ").str(what);
    CaptureError { line }
}

fn nomem() -> CaptureError {
    let mut line = Line::new();
    line.str("fdslot: capture: cannot map memory");
    CaptureError { line }
}

/// What `/proc/PID/stat` says about one process.
struct Stat {
    ppid: i32,
    /// A zombie has no fd table any more.
    dead: bool,
    start: u64,
}

/// Reads `/proc/PID/stat`.
fn stat_of(pid: i32) -> Result<Stat, Errno> {
    let mut p = Line::<40>::new();
    p.str("/proc/").num(pid as u64).str("/stat\0");
    let f = fd::open(p.peek(), g::O_RDONLY | g::O_CLOEXEC, 0)?;
    let mut buf = [0u8; 1024];
    let n = fd::read(f, &mut buf);
    let _ = fd::close(f);
    let text = &buf[..n?];
    // "pid (comm) S ppid ...": comm may hold spaces and parentheses, so start after the last ')'.
    let close = text.iter().rposition(|&b| b == b')').ok_or(Errno::INVAL)?;
    let mut words = text[close + 1..].split(|&b| b == b' ').filter(|w| !w.is_empty());
    let dead = matches!(words.next(), Some(b"Z" | b"X"));
    let ppid = words.next().and_then(|w| crate::text::parse_radix(w, 10)).map(|v| v as i32).ok_or(Errno::INVAL)?;
    // Field 22, starttime: 18 words after ppid.
    let start = words.nth(17).and_then(|w| crate::text::parse_radix(w, 10)).unwrap_or(0);
    Ok(Stat { ppid, dead, start })
}

/// The tasks to capture, parents before children (breadth first, siblings in the order they
/// started): the given pids, and with `tree` every descendant (found by scanning /proc for
/// parent pids).
pub fn collect_tasks(given: &[i32], tree: bool) -> Result<&'static mut [CapTask], CaptureError> {
    // Candidates: the given pids, plus with --tree every process of /proc.
    let mut all = 0usize;
    let proc_dir = fd::open(b"/proc\0", g::O_RDONLY | g::O_DIRECTORY | g::O_CLOEXEC, 0).map_err(|e| fail(&InspectError { pid: 0, fd: None, what: "open /proc", errno: e }))?;
    if tree {
        let _ = inspect::for_each_fd(proc_dir, |_| {
            all += 1;
            Ok(())
        });
    }
    let cap = given.len() + all + 64;
    let mut arena = Arena::map(bytes_for::<CapTask>(cap) * 2 + bytes_for::<u32>(cap) * 3).map_err(|_| nomem())?;
    let cand = arena.take::<CapTask>(cap);
    let mut n = 0usize;
    for &pid in given {
        if cand[..n].iter().any(|c| c.pid == pid) {
            continue;
        }
        let st = stat_of(pid).map_err(|e| fail(&InspectError { pid, fd: None, what: "read /proc/PID/stat", errno: e }))?;
        if st.dead {
            return Err(fail_msg(pid, "a zombie: it has no fd table"));
        }
        cand[n] = CapTask { pid, ppid: st.ppid, start: st.start, ..CapTask::default() };
        n += 1;
    }
    let given_n = n;
    if tree {
        // Not this capture itself (when it runs under a captured shell), not zombies, and not
        // processes that ended meanwhile: none of them has a table to capture.
        let me = crate::sys::proc::getpid();
        let _ = inspect::for_each_fd(proc_dir, |pid| {
            let pid = pid as i32;
            if n < cap && pid != me && !cand[..given_n].iter().any(|c| c.pid == pid) {
                if let Ok(Stat { ppid, dead: false, start }) = stat_of(pid) {
                    cand[n] = CapTask { pid, ppid, start, ..CapTask::default() };
                    n += 1;
                }
            }
            Ok(())
        });
    }
    let _ = fd::close(proc_dir);
    // Breadth first from the roots, siblings in the order they started.
    let by_ppid = arena.take::<u32>(n);
    for (i, b) in by_ppid.iter_mut().enumerate() {
        *b = i as u32;
    }
    crate::sort::sort_by_key(by_ppid, |&i| (cand[i as usize].ppid, cand[i as usize].start, cand[i as usize].pid));
    let out = arena.take::<CapTask>(n);
    let taken = arena.take::<u32>(n);
    let by_pid = arena.take::<u32>(n);
    for (i, b) in by_pid.iter_mut().enumerate() {
        *b = i as u32;
    }
    crate::sort::sort_by_key(by_pid, |&i| cand[i as usize].pid);
    let find = |pid: i32| by_pid.binary_search_by_key(&pid, |&i| cand[i as usize].pid).ok().map(|k| by_pid[k] as usize);
    // Roots: given pids with no given ancestor (with --tree, through uncaptured ones too). A
    // given pid below another is reached from it, so parents always come first.
    let mut m = 0usize;
    for i in 0..given_n {
        let mut up = cand[i].ppid;
        let mut below_given = false;
        for _ in 0..n {
            match find(up) {
                Some(k) if k < given_n => {
                    below_given = true;
                    break;
                }
                Some(k) if tree => up = cand[k].ppid,
                _ => break,
            }
        }
        if !below_given {
            out[m] = cand[i];
            taken[i] = 1;
            m += 1;
        }
    }
    let mut head = 0;
    while head < m {
        let pid = out[head].pid;
        let lo = by_ppid.partition_point(|&i| cand[i as usize].ppid < pid);
        for &c in by_ppid[lo..].iter().take_while(|&&i| cand[i as usize].ppid == pid) {
            let c = c as usize;
            if taken[c] == 0 && (tree || c < given_n) {
                taken[c] = 1;
                out[m] = cand[c];
                out[m].parent = head as u32 + 1;
                m += 1;
            }
        }
        head += 1;
    }
    Ok(&mut out[..m])
}

/// `files=`: for each task sharing a table with an earlier one, the parent or an earlier sibling
/// in its group (the only sharing clone can recreate).
fn table_links(tasks: &mut [CapTask], snap: &Snapshot<'_>) -> Result<(), CaptureError> {
    for t in 0..tasks.len() {
        let owner = snap.owner[t] as usize;
        if owner == t {
            continue;
        }
        let parent = tasks[t].parent;
        let same = |u: usize| snap.owner[u] as usize == owner;
        let link = if parent != 0 && same(parent as usize - 1) {
            Some(parent)
        } else {
            (0..t).find(|&u| same(u) && tasks[u].parent == parent).map(|u| u as u32 + 1)
        };
        match link {
            Some(l) => tasks[t].files = l,
            None => {
                let mut line = Line::new();
                line.str("fdslot: capture: pid ").num(tasks[t].pid as u64).str(" shares its fd table with pid ").num(tasks[owner].pid as u64);
                line.str(", which is neither its parent nor a sibling: clone cannot recreate that (plan format 1 files=)");
                return Err(CaptureError { line });
            }
        }
    }
    Ok(())
}

/// `flags=` for status flags `f`.
fn write_flags(out: &mut Out, f: u32) {
    out.str("flags=");
    write_flag_words(out, f);
}

/// Status flags `f` as a plan's `flags=` value: names where every bit has one, else the number.
pub fn write_flag_words(out: &mut Out, f: u32) {
    const NAMES: &[(&str, u32)] = &[
        ("append", g::O_APPEND),
        ("nonblock", g::O_NONBLOCK),
        ("sync", g::O_SYNC),
        ("dsync", g::O_DSYNC),
        ("directory", g::O_DIRECTORY),
        ("path", g::O_PATH),
        ("noatime", g::O_NOATIME),
        ("nofollow", g::O_NOFOLLOW),
    ];
    let mut rest = f & !g::O_ACCMODE;
    let access = match f & g::O_ACCMODE {
        0 => "rdonly",
        1 => "wronly",
        2 => "rdwr",
        _ => "",
    };
    let mut named = 0;
    for &(_, bit) in NAMES {
        if rest & bit == bit {
            named |= bit;
            rest &= !bit;
        }
    }
    if rest != 0 || access.is_empty() {
        out.str("0o").octal(f as u64);
        return;
    }
    out.str(access);
    for &(name, bit) in NAMES {
        // O_SYNC includes O_DSYNC's bit: name it once.
        if named & bit == bit && !(bit == g::O_DSYNC && named & g::O_SYNC == g::O_SYNC) {
            out.str(",").str(name);
            named &= !bit;
        }
    }
}

/// The link text of task fd `f` (read again: the snapshot keeps numbers only).
fn link_of(pid: i32, f: u32, buf: &mut [u8]) -> usize {
    let mut p = Line::<48>::new();
    p.str("/proc/").num(pid as u64).str("/fd/").num(f as u64).str("\0");
    procfs::readlinkat(g::AT_FDCWD, p.peek(), buf).unwrap_or(0)
}

/// A name for what a socket is, from its own getsockopt (through pidfd_getfd).
fn socket_name(pid: i32, f: u32, l: &mut Line<400>) {
    let Ok(mine) = procfs::steal_fd(pid, f) else {
        l.str("a socket that is not one end of an AF_UNIX socket pair");
        return;
    };
    let dom = procfs::socket_int(mine, linux_raw_sys::net::SO_DOMAIN).unwrap_or(-1);
    let ty = procfs::socket_int(mine, linux_raw_sys::net::SO_TYPE).unwrap_or(-1);
    let proto = procfs::socket_int(mine, linux_raw_sys::net::SO_PROTOCOL).unwrap_or(-1);
    let _ = fd::close(mine);
    let inet = dom == linux_raw_sys::net::AF_INET as i32 || dom == linux_raw_sys::net::AF_INET6 as i32;
    l.str(match (inet, proto) {
        (true, 6) => "a TCP socket",
        (true, 17) => "a UDP socket",
        (true, _) => "an IP socket",
        _ if dom == linux_raw_sys::net::AF_NETLINK as i32 => "a netlink socket",
        _ if dom == linux_raw_sys::net::AF_UNIX as i32 => "an AF_UNIX socket",
        _ => "a socket",
    });
    l.str(" (domain ").signed(dom as i64).str(", type ").signed(ty as i64).str(", protocol ").signed(proto as i64).str(")");
}

fn reason_text(reason: u8, link: &[u8], pid: i32, f: u32, diag_err: Errno, l: &mut Line<400>) {
    match reason {
        R_DELETED => {
            l.str("a deleted file: no path reaches it any more");
        }
        R_PTMX => {
            l.str("a pty master: opening /dev/ptmx makes a new pty (pass it with inherit)");
        }
        R_SOCKET => socket_name(pid, f, l),
        R_UNIX => {
            l.str("an AF_UNIX socket that is not one end of a socket pair (bound, listening, or connected to a named socket; pass it with inherit)");
        }
        R_PAIR_NONBLOCK => {
            l.str("a socket pair whose ends differ in O_NONBLOCK (a plan sets it for both)");
        }
        R_NO_DIAG => {
            l.str("an AF_UNIX socket, but sock_diag cannot say what it is connected to (").str(diag_err.name().unwrap_or("error")).str(")");
        }
        R_FLAGS => {
            l.str("status flags this kind cannot be given in a plan");
        }
        R_EMPTY_NAME => {
            l.str("a memfd with an empty name (plan format 1 cannot write it)");
        }
        R_PIPE_NONBLOCK => {
            l.str("a pipe with no blocking description (a plan's pipe places its own ends blocking, and reopen needs one placed)");
        }
        _ => {
            let what = [
                (&b"anon_inode:[eventpoll]"[..], "an epoll instance"),
                (b"anon_inode:[signalfd]", "a signalfd"),
                (b"anon_inode:[timerfd]", "a timerfd"),
                (b"anon_inode:inotify", "an inotify instance"),
                (b"anon_inode:[fanotify]", "a fanotify instance"),
                (b"anon_inode:[pidfd]", "a pidfd"),
                (b"anon_inode:[io_uring]", "an io_uring instance"),
                (b"anon_inode:[userfaultfd]", "a userfaultfd"),
            ]
            .iter()
            .find(|(k, _)| link.starts_with(k))
            .map(|(_, v)| *v);
            l.str(what.unwrap_or(if link.starts_with(b"anon_inode:") {
                "an anonymous inode of a kind plan format 1 has no object for"
            } else if link.contains(&b':') && !link.starts_with(b"/") {
                "a namespace or other kernel object plan format 1 has no object for"
            } else {
                "a kind plan format 1 has no object for"
            }));
        }
    }
}

/// The captured plan's working state.
struct Builder<'s> {
    snap: &'s Snapshot<'static>,
    socks: Option<Sockets<'static>>,
    diag_err: Errno,
    /// Per description: object index + 1 (0: unsupported), its end, why it is unsupported.
    obj: &'static mut [u32],
    end: &'static mut [u8],
    reason: &'static mut [u8],
    /// Per description: its first fd's index.
    rep: &'static mut [u32],
    objects: &'static mut [CapObject],
    nobj: usize,
    /// Sorted pipe inodes and their object index + 1.
    pipe_ino: &'static mut [u64],
    pipe_obj: &'static mut [u32],
    /// Per socket of `socks`: its pair's object index + 1.
    sock_obj: &'static mut [u32],
}

impl<'s> Builder<'s> {
    /// Whether the fd's path is marked " (deleted)" (nlink 0 alone is not proof on every
    /// filesystem).
    fn is_deleted(&self, r: &LiveFd) -> bool {
        let mut l = [0u8; 4200];
        let n = link_of(self.snap.pids[r.task as usize], r.fd, &mut l);
        l[..n].ends_with(b" (deleted)")
    }

    fn new_object(&mut self, o: CapObject) -> u32 {
        self.objects[self.nobj] = o;
        self.nobj += 1;
        self.nobj as u32
    }

    /// Decides each description's object, in order of first appearance.
    fn assign(&mut self) {
        let fds = self.snap.fds;
        for d in 0..self.snap.descs as usize {
            let r = &fds[self.rep[d] as usize];
            let acc = r.flags & g::O_ACCMODE;
            let extra = r.flags & !(g::O_ACCMODE | g::O_NONBLOCK);
            let mut unsupported = 0;
            match r.what {
                WHAT_PATH => {
                    let ty = r.mode & 0o170000;
                    if r.nlink == 0 && self.is_deleted(r) {
                        unsupported = R_DELETED;
                    } else if ty == 0o020000 && r.rdev == ((5 << 8) | 2) {
                        unsupported = R_PTMX;
                    } else {
                        let kind = if ty == 0o010000 { O_FIFO } else { O_REG };
                        self.obj[d] = self.new_object(CapObject { kind, rep: self.rep[d], ..CapObject::default() });
                    }
                }
                WHAT_PIPE => {
                    if acc == g::O_RDWR || extra != 0 {
                        unsupported = R_FLAGS;
                    } else {
                        let e = (acc == g::O_WRONLY) as u8;
                        let k = self.pipe_ino.binary_search(&r.ino).unwrap_or(0);
                        if self.pipe_obj[k] == 0 {
                            self.pipe_obj[k] = self.new_object(CapObject { kind: O_PIPE, rep: self.rep[d], ..CapObject::default() });
                        }
                        let p = self.pipe_obj[k];
                        let pipe = &mut self.objects[p as usize - 1];
                        if r.flags & g::O_NONBLOCK == 0 && pipe.ends & (1 << e) == 0 {
                            pipe.ends |= 1 << e;
                            self.obj[d] = p;
                            self.end[d] = e;
                        } else {
                            // A second description of one end, or a non-blocking one: a reopen.
                            self.obj[d] = self.new_object(CapObject { kind: O_REOPEN, end: e, pipe: p - 1, rep: self.rep[d], ..CapObject::default() });
                        }
                    }
                }
                WHAT_SOCKET => {
                    unsupported = self.assign_socket(d, r);
                }
                WHAT_EVENTFD => {
                    if acc != g::O_RDWR || extra != 0 {
                        unsupported = R_FLAGS;
                    } else {
                        self.obj[d] = self.new_object(CapObject { kind: O_EVENTFD, rep: self.rep[d], ..CapObject::default() });
                    }
                }
                WHAT_MEMFD => {
                    let mut l = [0u8; 300];
                    let n = link_of(self.snap.pids[r.task as usize], r.fd, &mut l);
                    if acc != g::O_RDWR || r.flags & !(g::O_ACCMODE | g::O_NONBLOCK | g::O_APPEND) != 0 {
                        unsupported = R_FLAGS;
                    } else if n <= b"/memfd: (deleted)".len() {
                        unsupported = R_EMPTY_NAME;
                    } else {
                        self.obj[d] = self.new_object(CapObject { kind: O_MEMFD, rep: self.rep[d], ..CapObject::default() });
                    }
                }
                _ => unsupported = R_OTHER,
            }
            self.reason[d] = unsupported;
        }
        // A pipe that kept none of its descriptions (all non-blocking reopens) has no targets,
        // which a plan refuses: the pipe and its reopens cannot be captured.
        for i in 0..self.nobj {
            let o = self.objects[i];
            let pipe = if o.kind == O_REOPEN { o.pipe as usize } else { i };
            if matches!(o.kind, O_PIPE | O_REOPEN) && self.objects[pipe].ends == 0 {
                self.objects[i].dropped = 1;
            }
        }
        for d in 0..self.snap.descs as usize {
            let o = self.obj[d];
            if o != 0 && self.objects[o as usize - 1].dropped != 0 {
                self.obj[d] = 0;
                self.reason[d] = R_PIPE_NONBLOCK;
            }
        }
    }

    fn assign_socket(&mut self, d: usize, r: &LiveFd) -> u8 {
        let Some(socks) = &self.socks else { return R_NO_DIAG };
        let Some(s) = socks.get(r.ino) else { return R_SOCKET };
        let Some(peer) = socks.pair_peer(s) else { return R_UNIX };
        if r.flags & !g::O_NONBLOCK != g::O_RDWR {
            return R_FLAGS;
        }
        // The pair's object is keyed on whichever end was seen first.
        let key = |ino: u32| socks.inos.binary_search(&ino).ok();
        let existing = key(peer.ino).map(|k| self.sock_obj[k]).filter(|&o| o != 0);
        match existing {
            Some(o) => {
                let first = &self.snap.fds[self.objects[o as usize - 1].rep as usize];
                if first.flags & g::O_NONBLOCK != r.flags & g::O_NONBLOCK {
                    return R_PAIR_NONBLOCK;
                }
                self.objects[o as usize - 1].ends |= 2;
                self.obj[d] = o;
                self.end[d] = 1;
            }
            None => {
                let o = self.new_object(CapObject { kind: O_PAIR, ends: 1, rep: self.rep[d], ..CapObject::default() });
                if let Some(k) = key(s.ino) {
                    self.sock_obj[k] = o;
                }
                self.obj[d] = o;
                self.end[d] = 0;
            }
        }
        0
    }
}

/// What capture found, for the front end.
pub struct Captured {
    /// Fds left out (unsupported), each already named on stderr or in the plan's comments.
    pub unsupported: usize,
}

/// Captures `tasks` and writes the plan to `out`; unsupported fds go to `err` (and the plan is
/// not written) unless `opts.skip_unsupported`.
pub fn capture(tasks: &mut [CapTask], opts: &Options<'_>, out: &mut Out, err: &mut Out) -> Result<Captured, CaptureError> {
    let n = tasks.len();
    let mut pids_arena = Arena::map(bytes_for::<i32>(n)).map_err(|_| nomem())?;
    let pids = pids_arena.take::<i32>(n);
    for (p, t) in pids.iter_mut().zip(tasks.iter()) {
        *p = t.pid;
    }
    let snap = inspect::snapshot(pids).map_err(|e| fail(&e))?;
    table_links(tasks, &snap)?;
    let (socks, diag_err) = if snap.fds.iter().any(|f| f.what == WHAT_SOCKET) {
        match Sockets::read(&snap) {
            Ok(s) => (Some(s), Errno(0)),
            Err(e) => (None, e),
        }
    } else {
        (None, Errno(0))
    };
    let nd = snap.descs as usize;
    let npipes = snap.fds.iter().filter(|f| f.what == WHAT_PIPE).count();
    let nsocks = socks.as_ref().map_or(0, |s| s.inos.len());
    let size = bytes_for::<u32>(nd) * 2 + bytes_for::<u8>(nd) * 2 + bytes_for::<CapObject>(2 * nd) + bytes_for::<u64>(npipes) + bytes_for::<u32>(npipes) + bytes_for::<u32>(nsocks) + bytes_for::<u64>(snap.fds.len());
    let mut arena = Arena::map(size).map_err(|_| nomem())?;
    let mut b = Builder {
        snap: &snap,
        diag_err,
        obj: arena.take(nd),
        end: arena.take(nd),
        reason: arena.take(nd),
        rep: arena.take(nd),
        // A pipe's first description may be a reopen: the pipe is an object of its own.
        objects: arena.take(2 * nd),
        nobj: 0,
        pipe_ino: arena.take(npipes),
        pipe_obj: arena.take(npipes),
        sock_obj: arena.take(nsocks),
        socks,
    };
    let mut seen = 0usize;
    for (i, f) in snap.fds.iter().enumerate() {
        if f.desc as usize == seen {
            b.rep[seen] = i as u32;
            seen += 1;
        }
    }
    for (k, f) in snap.fds.iter().filter(|f| f.what == WHAT_PIPE).enumerate() {
        b.pipe_ino[k] = f.ino;
    }
    crate::sort::sort_by_key(b.pipe_ino, |&i| i);
    // One slot per pipe.
    let mut m = 0;
    for i in 0..b.pipe_ino.len() {
        if m == 0 || b.pipe_ino[m - 1] != b.pipe_ino[i] {
            b.pipe_ino[m] = b.pipe_ino[i];
            m += 1;
        }
    }
    let pipe_ino = core::mem::take(&mut b.pipe_ino);
    b.pipe_ino = &mut pipe_ino[..m];
    b.assign();
    // Unsupported fds, fd by fd.
    let mut unsupported = 0;
    let mut link = [0u8; 4200];
    for f in snap.fds.iter() {
        let d = f.desc as usize;
        if b.obj[d] != 0 {
            continue;
        }
        unsupported += 1;
        let t = f.task as usize;
        let len = link_of(tasks[t].pid, f.fd, &mut link);
        let mut l = Line::<400>::new();
        l.str("task ").num(t as u64 + 1).str(" (pid ").num(tasks[t].pid as u64).str(") fd ").num(f.fd as u64).str(": ");
        l.push(&link[..len.min(120)]).str(": ");
        reason_text(b.reason[d], &link[..len], tasks[t].pid, f.fd, b.diag_err, &mut l);
        if !opts.skip_unsupported {
            err.str("fdslot: capture: ").push(l.as_bytes()).str("\n");
        }
    }
    if unsupported > 0 && !opts.skip_unsupported {
        let mut l = Line::<200>::new();
        l.str("fdslot: capture: ").num(unsupported as u64).str(if unsupported == 1 { " fd cannot" } else { " fds cannot" });
        l.str(" be captured (see above); --skip-unsupported leaves them out\n");
        err.push(l.as_bytes());
        return Ok(Captured { unsupported });
    }
    write_plan(&mut b, tasks, opts, out, &mut link)?;
    if unsupported > 0 {
        out.str("\n# left out by --skip-unsupported:\n");
        for f in snap.fds.iter() {
            let d = f.desc as usize;
            if b.obj[d] != 0 {
                continue;
            }
            let t = f.task as usize;
            let len = link_of(tasks[t].pid, f.fd, &mut link);
            let mut l = Line::<400>::new();
            l.str("task ").num(t as u64 + 1).str(" fd ").num(f.fd as u64).str(": ");
            reason_text(b.reason[d], &link[..len], tasks[t].pid, f.fd, b.diag_err, &mut l);
            out.str("#   ").encoded(&link[..len.min(120)], false).str(": ").push(l.as_bytes()).str("\n");
        }
    }
    Ok(Captured { unsupported })
}

/// Writes the task lines, then each object with its targets.
fn write_plan(b: &mut Builder<'_>, tasks: &[CapTask], opts: &Options<'_>, out: &mut Out, link: &mut [u8; 4200]) -> Result<(), CaptureError> {
    let snap = b.snap;
    out.str("# captured by fdslot capture from pid");
    for t in tasks.iter() {
        out.str(" ").num(t.pid as u64);
    }
    out.str("\nfdslot 1\n");
    let mut args = ArgBuf::new()?;
    for (i, t) in tasks.iter().enumerate() {
        out.str("task ").num(i as u64 + 1);
        if t.parent != 0 {
            out.str(" parent=").num(t.parent as u64);
        }
        if t.files != 0 {
            out.str(" files=").num(t.files as u64);
        }
        args.write_exec(t.pid, out);
        out.str("  # pid ").num(t.pid as u64).str("\n");
    }
    // Targets by (object, end, fd order).
    let order = {
        let mut a = Arena::map(bytes_for::<u64>(snap.fds.len())).map_err(|_| nomem())?;
        a.take::<u64>(snap.fds.len())
    };
    let mut m = 0;
    for (i, f) in snap.fds.iter().enumerate() {
        let o = b.obj[f.desc as usize];
        if o != 0 {
            order[m] = ((o as u64) << 33) | ((b.end[f.desc as usize] as u64) << 32) | i as u64;
            m += 1;
        }
    }
    let order = &mut order[..m];
    crate::sort::sort_by_key(order, |&k| k);
    let mut cursor = 0;
    for oi in 0..b.nobj {
        let o = b.objects[oi];
        if o.dropped != 0 {
            // Dropped after the fact (see assign): its fds are listed as left out.
            continue;
        }
        let r = snap.fds[o.rep as usize];
        let pid = snap.pids[r.task as usize];
        let id = oi as u64 + 1;
        out.str("\n");
        match o.kind {
            O_REG | O_FIFO => {
                let len = link_of(pid, r.fd, link);
                out.str(if o.kind == O_REG { "reg " } else { "fifo " }).num(id).str(" ").encoded(&link[..len], false).str(" ");
                write_flags(out, r.flags);
                if o.kind == O_REG && r.pos != 0 {
                    out.str(" pos=").num(r.pos);
                }
            }
            O_PIPE => {
                out.str("pipe ").num(id);
                if let Ok(mine) = procfs::steal_fd(pid, r.fd) {
                    let cap = fd::fcntl(mine, g::F_GETPIPE_SZ, 0).unwrap_or(0);
                    let held = procfs::ioctl_int(mine, procfs::FIONREAD).unwrap_or(0);
                    let _ = fd::close(mine);
                    if cap != 0 && cap != 65536 {
                        out.str(" size=").num(cap as u64);
                    }
                    if held > 0 {
                        out.str("  # held ").num(held as u64).str(" bytes when captured: pipe contents are not captured");
                    }
                }
                for (e, side) in [(0u8, "read"), (1, "write")] {
                    if o.ends & (1 << e) == 0 {
                        out.str("\n# pipe ").num(id).str(": its ").str(side).str(" end is held outside the captured tasks (or only by reopens); restored closed");
                    }
                }
            }
            O_PAIR => {
                let kind = b.socks.as_ref().and_then(|s| s.get(r.ino)).map_or(0, |s| s.kind as u32);
                out.str("socketpair ").num(id).str(match kind {
                    linux_raw_sys::net::SOCK_DGRAM => " dgram",
                    linux_raw_sys::net::SOCK_SEQPACKET => " seqpacket",
                    _ => " stream",
                });
                if r.flags & g::O_NONBLOCK != 0 {
                    out.str(" flags=nonblock");
                }
                if o.ends != 3 {
                    out.str("  # end b: held outside the captured tasks, or left out; restored closed");
                }
            }
            O_EVENTFD => {
                out.str("eventfd ").num(id);
                if r.count != 0 {
                    out.str(" count=").num(r.count);
                }
                let sem = r.semaphore == 1;
                if sem || r.flags & g::O_NONBLOCK != 0 {
                    out.str(" flags=");
                    if sem {
                        out.str("semaphore");
                    }
                    if r.flags & g::O_NONBLOCK != 0 {
                        out.str(if sem { ",nonblock" } else { "nonblock" });
                    }
                }
                if r.semaphore == 2 {
                    out.str("  # this kernel does not report EFD_SEMAPHORE");
                }
            }
            O_MEMFD => {
                let len = link_of(pid, r.fd, link);
                let name = &link[b"/memfd:".len()..len - b" (deleted)".len()];
                out.str("memfd ").num(id).str(" ").encoded(name, true);
                write_memfd(out, pid, &r, id, opts)?;
            }
            _ => {
                out.str("reopen ").num(id).str(" ").num(o.pipe as u64 + 1).str(if o.end == 0 { " r" } else { " w" });
                if r.flags & g::O_NONBLOCK != 0 {
                    out.str(" flags=nonblock");
                }
            }
        }
        out.str("\n");
        while cursor < order.len() && (order[cursor] >> 33) as usize == oi + 1 {
            let f = &snap.fds[(order[cursor] & 0xffff_ffff) as usize];
            let end = (order[cursor] >> 32) & 1;
            out.str(match (o.kind, end) {
                (O_PIPE, 0) => "  r ",
                (O_PIPE, _) => "  w ",
                (O_PAIR, 0) => "  a ",
                (O_PAIR, _) => "  b ",
                _ => "  at ",
            });
            out.num(f.task as u64 + 1).str(":").num(f.fd as u64);
            if f.cloexec != 0 {
                out.str(" cloexec");
            }
            out.str("\n");
            cursor += 1;
        }
    }
    Ok(())
}

/// Size, seals, flags and offset of a memfd; its contents into `--data DIR` if given.
fn write_memfd(out: &mut Out, pid: i32, r: &LiveFd, id: u64, opts: &Options<'_>) -> Result<(), CaptureError> {
    out.str(" size=").num(r.size);
    if let Ok(mine) = procfs::steal_fd(pid, r.fd) {
        let seals = fd::fcntl(mine, g::F_GET_SEALS, 0).unwrap_or(0) as u32;
        let _ = fd::close(mine);
        if seals != 0 {
            out.str(" seals=");
            let mut first = true;
            for (name, bit) in [("seal", 1u32), ("shrink", 2), ("grow", 4), ("write", 8), ("future_write", 16)] {
                if seals & bit != 0 {
                    out.str(if first { "" } else { "," }).str(name);
                    first = false;
                }
            }
        }
    }
    let fl = r.flags & (g::O_APPEND | g::O_NONBLOCK);
    if fl != 0 {
        out.str(" flags=").str(match fl {
            g::O_APPEND => "append",
            g::O_NONBLOCK => "nonblock",
            _ => "append,nonblock",
        });
    }
    if r.pos != 0 {
        out.str(" pos=").num(r.pos);
    }
    let Some(dir) = opts.data_dir else {
        if r.size != 0 {
            out.str("  # contents not captured (capture --data DIR saves them)");
        }
        return Ok(());
    };
    let mut path = Line::<4200>::new();
    path.push(dir).str("/memfd-").num(id);
    let plen = path.len();
    path.str("\0");
    let mut src_path = Line::<48>::new();
    src_path.str("/proc/").num(pid as u64).str("/fd/").num(r.fd as u64).str("\0");
    let e = |what: &'static str, errno| fail(&InspectError { pid, fd: Some(r.fd), what, errno });
    let src = fd::open(src_path.peek(), g::O_RDONLY | g::O_CLOEXEC, 0).map_err(|x| e("open /proc/PID/fd/N (memfd contents)", x))?;
    let dst = match fd::open(path.peek(), g::O_WRONLY | g::O_CREAT | g::O_TRUNC | g::O_CLOEXEC, 0o600) {
        Ok(d) => d,
        Err(x) => {
            let _ = fd::close(src);
            return Err(e("create --data file", x));
        }
    };
    let mut left = r.size;
    let mut result = Ok(());
    while left > 0 {
        match fd::sendfile(dst, src, left) {
            Ok(0) => break,
            Ok(k) => left -= k as u64,
            Err(x) if x == Errno::INTR => {}
            Err(x) => {
                result = Err(e("copy memfd contents", x));
                break;
            }
        }
    }
    let _ = fd::close(src);
    let _ = fd::close(dst);
    result?;
    out.str(" data=").encoded(&path.peek()[..plen], false);
    Ok(())
}

/// A buffer for one task's /proc/PID/cmdline.
struct ArgBuf {
    buf: &'static mut [u8],
}

impl ArgBuf {
    fn new() -> Result<ArgBuf, CaptureError> {
        let size = crate::plan::MAX_ARG_BYTES + 4096;
        let mut a = Arena::map(size).map_err(|_| nomem())?;
        Ok(ArgBuf { buf: a.take::<u8>(size) })
    }

    /// Writes ` exec=ARGV` from the task's argv; false (and a comment) when it cannot.
    fn write_exec(&mut self, pid: i32, out: &mut Out) -> bool {
        let mut p = Line::<48>::new();
        p.str("/proc/").num(pid as u64).str("/cmdline\0");
        let mut len = 0;
        if let Ok(f) = fd::open(p.peek(), g::O_RDONLY | g::O_CLOEXEC, 0) {
            while len < self.buf.len() {
                match fd::read(f, &mut self.buf[len..]) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => len += k,
                }
            }
            let _ = fd::close(f);
        }
        let text = &self.buf[..len];
        let text = text.strip_suffix(b"\0").unwrap_or(text);
        if text.is_empty() || len >= crate::plan::MAX_ARG_BYTES || text.split(|&b| b == 0).count() > crate::plan::MAX_ARGS {
            out.str("  # argv not captured (unreadable, empty or too long)");
            return false;
        }
        let mut args = text.split(|&b| b == 0);
        let argv0 = args.next().unwrap_or(b"");
        // No PATH search at exec: a bare name becomes the program's own path.
        let mut exe = [0u8; 4200];
        let prog: &[u8] = if argv0.starts_with(b"/") {
            argv0
        } else {
            let mut e = Line::<48>::new();
            e.str("/proc/").num(pid as u64).str("/exe\0");
            let n = procfs::readlinkat(g::AT_FDCWD, e.peek(), &mut exe).unwrap_or(0);
            if n == 0 || exe[..n].ends_with(b" (deleted)") {
                b""
            } else {
                &exe[..n]
            }
        };
        if prog.is_empty() {
            out.str("  # argv not captured: no program path");
            return false;
        }
        out.str(" exec=").encoded(prog, false);
        for a in args {
            out.str(",").encoded(a, false);
        }
        true
    }
}
