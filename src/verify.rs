//! `fdslot verify`: live processes checked against a plan, by asking the kernel.
//!
//! The live tables are read as `capture` reads them ([`crate::inspect`]): every fd, its
//! description (kcmp), what it refers to, offset, status flags and close-on-exec bit. Each
//! planned fd is compared with what the kernel says; fds the plan does not name are extra.
//! Plan paths are resolved from the current directory (as the restorer resolved them).

use crate::arena::{bytes_for, Arena};
use crate::inspect::out::Out;
use crate::inspect::unix::Sockets;
use crate::inspect::{self, InspectError, LiveFd, Snapshot, WHAT_EVENTFD, WHAT_MEMFD, WHAT_PATH, WHAT_PIPE, WHAT_SOCKET};
use crate::plan::*;
use crate::sys::{fd, procfs, Errno};
use crate::text::Line;
use linux_raw_sys::general as g;

/// One way a planned fd differs from the kernel's.
#[derive(Clone, Copy)]
enum Mismatch {
    Missing,
    Kind(&'static str),
    Path(Errno),
    Pos(u64, u64),
    Flags(u32, u32),
    Cloexec(bool),
    /// Not the description of the object's first fd (task index, fd).
    NotShared(usize, u32),
    /// Shares the description of another object's fd (task index, fd, object index).
    Shared(usize, u32, u32),
    /// Not the same pipe as (task index, fd).
    OtherPipe(usize, u32),
    /// Not connected to (task index, fd).
    Peer(usize, u32),
    Count(u64, u64),
    Semaphore(bool),
    Size(u64, u64),
    Name,
    SockType(u8, u32),
    Seals(u32, u32),
}

/// The mismatches of one fd: at most 7 can apply to one kind (a memfd's), so none is lost.
type Found = heapless::Vec<Mismatch, 8>;

/// What the front end asked for.
pub struct Options<'a> {
    /// fds that may be open beyond the plan (run's --keep).
    pub keep: &'a [u32],
    /// Print the table (verify); else only the mismatch lines (run --verify).
    pub table: bool,
}

/// The outcome: mismatches found (0: the tables are the plan).
pub struct Verdict {
    pub mismatches: usize,
    pub fds: usize,
}

struct State<'p, 's> {
    plan: &'p Plan<'p>,
    snap: &'s Snapshot<'static>,
    socks: Option<Sockets<'static>>,
    diag_err: Errno,
    /// Per plan description (object * 2 + end): the live description + 1 of its first target,
    /// and that target's index into `plan.targets`.
    desc_of: &'static mut [u32],
    first_of: &'static mut [u32],
    /// Per live description: the plan description + 1 that claimed it first.
    file_of: &'static mut [u32],
    /// A socket pair's peers could not be checked (no sock_diag answer for it).
    peers_unchecked: bool,
    link: [u8; 4200],
}

fn expected_flags(o: &Object, end: u8, pipe_end: u8) -> Option<u32> {
    let nb = o.flags & g::O_NONBLOCK;
    Some(match o.kind {
        KIND_REG | KIND_FIFO => {
            let f = o.flags & !(g::O_CREAT | g::O_EXCL | g::O_TRUNC | g::O_NOCTTY | g::O_CLOEXEC | inspect::O_LARGEFILE);
            if f & g::O_PATH != 0 {
                // O_PATH keeps only these (fs/open.c, O_PATH_FLAGS).
                f & (g::O_PATH | g::O_DIRECTORY | g::O_NOFOLLOW)
            } else {
                f
            }
        }
        KIND_PIPE => if end == 0 { g::O_RDONLY } else { g::O_WRONLY },
        KIND_REOPEN => (if pipe_end == 0 { g::O_RDONLY } else { g::O_WRONLY }) | o.flags,
        KIND_SOCKETPAIR => g::O_RDWR | nb,
        KIND_EVENTFD => g::O_RDWR | nb,
        KIND_MEMFD => g::O_RDWR | o.flags,
        _ => return None,
    })
}

fn want_what(kind: u8) -> (u8, &'static str) {
    match kind {
        KIND_REG => (WHAT_PATH, "a file by path"),
        KIND_FIFO => (WHAT_PATH, "a FIFO by path"),
        KIND_PIPE | KIND_REOPEN => (WHAT_PIPE, "a pipe"),
        KIND_SOCKETPAIR => (WHAT_SOCKET, "a socket"),
        KIND_EVENTFD => (WHAT_EVENTFD, "an eventfd"),
        KIND_MEMFD => (WHAT_MEMFD, "a memfd"),
        _ => (0, ""),
    }
}

/// Names status flags as a plan would (`wronly,append`), or in octal.
pub fn flag_names(out: &mut Out, f: u32) {
    crate::capture::write_flag_words(out, f);
}

impl<'p, 's> State<'p, 's> {
    fn link_of(&mut self, t: usize, f: u32) -> usize {
        let mut p = Line::<48>::new();
        p.str("/proc/").num(self.snap.pids[t] as u64).str("/fd/").num(f as u64).str("\0");
        procfs::readlinkat(g::AT_FDCWD, p.peek(), &mut self.link).unwrap_or(0)
    }

    /// The live fd of the plan's first target of description `file`, if mapped.
    fn first_target(&self, file: usize) -> Option<&'p Target> {
        (self.desc_of[file] != 0).then(|| &self.plan.targets[self.first_of[file] as usize])
    }

    fn live_of(&self, tg: &Target) -> Option<&'s LiveFd> {
        self.snap.find(tg.task as usize, tg.fd).map(|i| &self.snap.fds[i])
    }

    /// Maps plan descriptions to live ones, first target first.
    fn map(&mut self) {
        for (i, tg) in self.plan.targets.iter().enumerate() {
            let Some(live) = self.live_of(tg) else { continue };
            let file = file_of(tg.object, tg.end);
            if self.desc_of[file] == 0 {
                self.desc_of[file] = live.desc + 1;
                self.first_of[file] = i as u32;
            }
            if self.file_of[live.desc as usize] == 0 {
                self.file_of[live.desc as usize] = file as u32 + 1;
            }
        }
    }

    /// Everything that differs for target `tg`.
    fn check(&mut self, tg: &Target) -> Found {
        let mut found = Found::new();
        let mut add = |m| {
            let _ = found.push(m);
        };
        let Some(live) = self.live_of(tg) else {
            add(Mismatch::Missing);
            return found;
        };
        let plan = self.plan;
        let o = &plan.objects[tg.object as usize];
        let file = file_of(tg.object, tg.end);
        // Sharing: the description of the object's first fd, and no other object's.
        if self.desc_of[file] != live.desc + 1 {
            if let Some(first) = self.first_target(file) {
                add(Mismatch::NotShared(first.task as usize, first.fd));
            }
        } else {
            let claimed = self.file_of[live.desc as usize];
            if claimed != file as u32 + 1 && claimed != 0 {
                if let Some(other) = self.first_target(claimed as usize - 1) {
                    add(Mismatch::Shared(other.task as usize, other.fd, other.object));
                }
            }
        }
        if live.cloexec != tg.cloexec {
            add(Mismatch::Cloexec(live.cloexec != 0));
        }
        let (what, name) = want_what(o.kind);
        if what != 0 && live.what != what {
            add(Mismatch::Kind(name));
            return found;
        }
        let pipe_end = if o.kind == KIND_REOPEN { o.extra as u8 } else { tg.end };
        if let Some(want) = expected_flags(o, tg.end, pipe_end) {
            if live.flags != want {
                add(Mismatch::Flags(live.flags, want));
            }
        }
        let first_here = self.first_of[file] as usize == (tg as *const Target as usize - plan.targets.as_ptr() as usize) / core::mem::size_of::<Target>();
        match o.kind {
            KIND_REG | KIND_FIFO => {
                match self.stat_plan_path(o) {
                    Ok(st) if st.dev == live.dev && st.ino == live.ino => {}
                    Ok(_) => add(Mismatch::Path(Errno(0))),
                    Err(e) => add(Mismatch::Path(e)),
                }
                if o.kind == KIND_FIFO && live.mode & 0o170000 != 0o010000 {
                    add(Mismatch::Kind("a FIFO by path"));
                }
                if o.kind == KIND_REG && live.pos != o.pos {
                    add(Mismatch::Pos(live.pos, o.pos));
                }
            }
            KIND_PIPE | KIND_REOPEN if first_here => {
                // One pipe: every end and reopen of it on the same inode.
                let pipe = if o.kind == KIND_REOPEN { o.value as u32 } else { tg.object };
                for other in [file_of(pipe, 0), file_of(pipe, 1)] {
                    if other == file {
                        continue;
                    }
                    if let Some(t2) = self.first_target(other) {
                        if self.live_of(t2).is_some_and(|l2| l2.ino != live.ino) {
                            add(Mismatch::OtherPipe(t2.task as usize, t2.fd));
                        }
                    }
                }
            }
            KIND_SOCKETPAIR if first_here => match self.socks.as_ref().and_then(|socks| socks.get(live.ino)) {
                Some(s) => {
                    if s.kind as u32 != o.extra {
                        add(Mismatch::SockType(s.kind, o.extra));
                    }
                    // The peer, once per pair (at end b's first fd).
                    let a = self.first_target(file_of(tg.object, 0)).filter(|_| tg.end == 1);
                    if let Some((t2, l2)) = a.and_then(|t2| Some((t2, self.live_of(t2)?))) {
                        if s.peer as u64 != l2.ino {
                            add(Mismatch::Peer(t2.task as usize, t2.fd));
                        }
                    }
                }
                None => {
                    // sock_diag is missing, or does not list it (another network namespace):
                    // the type from the socket itself; the peer goes unchecked.
                    self.peers_unchecked = true;
                    if let Ok(mine) = procfs::steal_fd(self.snap.pids[tg.task as usize], tg.fd) {
                        let ty = procfs::socket_int(mine, linux_raw_sys::net::SO_TYPE);
                        let _ = fd::close(mine);
                        if let Some(ty) = ty.ok().map(|t| t as u32).filter(|&t| t != o.extra) {
                            add(Mismatch::SockType(ty as u8, o.extra));
                        }
                    }
                }
            },
            KIND_EVENTFD => {
                if live.count != o.value {
                    add(Mismatch::Count(live.count, o.value));
                }
                if live.semaphore != 2 && (live.semaphore == 1) != (o.flags & 1 != 0) {
                    add(Mismatch::Semaphore(live.semaphore == 1));
                }
            }
            KIND_MEMFD => {
                let n = self.link_of(tg.task as usize, tg.fd);
                let mut name = [0u8; MAX_MEMFD_NAME + 1];
                let len = lex::decode_into(plan.span(o.path), &mut name).unwrap_or(0);
                let live_name = self.link.get(b"/memfd:".len()..n.saturating_sub(b" (deleted)".len())).unwrap_or(b"");
                if live_name != &name[..len] {
                    add(Mismatch::Name);
                }
                if let Some(want) = self.memfd_size(o) {
                    if want != live.size {
                        add(Mismatch::Size(live.size, want));
                    }
                }
                if live.pos != o.pos {
                    add(Mismatch::Pos(live.pos, o.pos));
                }
                if first_here {
                    if let Ok(mine) = procfs::steal_fd(self.snap.pids[tg.task as usize], tg.fd) {
                        let seals = fd::fcntl(mine, g::F_GET_SEALS, 0).unwrap_or(0) as u32;
                        let _ = fd::close(mine);
                        // Without seals= the memfd is created unsealable: F_SEAL_SEAL.
                        let want = if o.extra == 0 { 1 } else { o.extra };
                        if seals != want {
                            add(Mismatch::Seals(seals, want));
                        }
                    }
                }
            }
            _ => {}
        }
        found
    }

    fn memfd_size(&self, o: &Object) -> Option<u64> {
        if o.has_size != 0 {
            return Some(o.size);
        }
        if o.data.len == 0 {
            return Some(0);
        }
        let mut p = [0u8; MAX_PATH + 1];
        let len = lex::decode_into(self.plan.span(o.data), &mut p).ok()?;
        p[len] = 0;
        procfs::fstatat(g::AT_FDCWD, &p[..len + 1], 0).ok().map(|s| s.size)
    }

    fn stat_plan_path(&self, o: &Object) -> Result<procfs::FileStat, Errno> {
        let mut p = [0u8; MAX_PATH + 1];
        let len = lex::decode_into(self.plan.span(o.path), &mut p).map_err(|_| Errno::INVAL)?;
        p[len] = 0;
        let flags = if o.flags & (g::O_NOFOLLOW | g::O_PATH) == (g::O_NOFOLLOW | g::O_PATH) { g::AT_SYMLINK_NOFOLLOW } else { 0 };
        procfs::fstatat(g::AT_FDCWD, &p[..len + 1], flags)
    }

    /// `task T fd N (KIND ID ...)`, the start of every mismatch line.
    fn describe(&self, out: &mut Out, t: usize, f: u32, object: Option<(u32, u8)>) {
        out.str("task ").num(self.plan.tasks[t].id as u64).str(" fd ").num(f as u64);
        if let Some((oi, end)) = object {
            out.str(" (");
            self.object_name(out, oi, end);
            out.str(")");
        }
    }

    fn object_name(&self, out: &mut Out, oi: u32, end: u8) {
        let o = &self.plan.objects[oi as usize];
        out.str(kind_name(o.kind)).str(" ").num(o.id as u64);
        match o.kind {
            KIND_PIPE => {
                out.str(if end == 0 { " r" } else { " w" });
            }
            KIND_SOCKETPAIR => {
                out.str(if end == 0 { " a" } else { " b" });
            }
            KIND_REG | KIND_FIFO | KIND_MEMFD => {
                out.str(" ").push(self.plan.span(o.path));
            }
            _ => {}
        }
    }

    fn mismatch_line(&mut self, out: &mut Out, prefix: &str, tg: &Target, m: Mismatch) {
        out.str(prefix);
        self.describe(out, tg.task as usize, tg.fd, Some((tg.object, tg.end)));
        out.str(": ");
        let id = |t: usize| self.plan.tasks[t].id as u64;
        match m {
            Mismatch::Missing => {
                out.str("not open");
            }
            Mismatch::Kind(want) => {
                let n = self.link_of(tg.task as usize, tg.fd);
                let link = self.link;
                out.str("the kernel says ").push(&link[..n]).str(", plan says ").str(want);
            }
            Mismatch::Path(e) => {
                let n = self.link_of(tg.task as usize, tg.fd);
                let link = self.link;
                out.str("refers to ").push(&link[..n]).str(", not to the file at the plan's path");
                if e.0 != 0 {
                    out.str(" (stat: ").str(e.name().unwrap_or("error")).str(")");
                }
            }
            Mismatch::Pos(got, want) => {
                out.str("pos is ").num(got).str(", plan says ").num(want);
            }
            Mismatch::Flags(got, want) => {
                out.str("flags are ");
                flag_names(out, got);
                out.str(", plan says ");
                flag_names(out, want);
            }
            Mismatch::Cloexec(got) => {
                out.str(if got { "has FD_CLOEXEC, plan says not" } else { "lacks FD_CLOEXEC, plan says cloexec" });
            }
            Mismatch::NotShared(t, f) => {
                out.str("does not share its open file description with task ").num(id(t)).str(" fd ").num(f as u64).str(" (kcmp KCMP_FILE)");
            }
            Mismatch::Shared(t, f, oi) => {
                out.str("shares one open file description with task ").num(id(t)).str(" fd ").num(f as u64).str(" (");
                self.object_name(out, oi, 0);
                out.str("), plan says separate (kcmp KCMP_FILE)");
            }
            Mismatch::OtherPipe(t, f) => {
                out.str("is not the same pipe as task ").num(id(t)).str(" fd ").num(f as u64);
            }
            Mismatch::Peer(t, f) => {
                out.str("is not connected to task ").num(id(t)).str(" fd ").num(f as u64).str(" (sock_diag)");
            }
            Mismatch::Count(got, want) => {
                out.str("eventfd count is ").num(got).str(", plan says ").num(want);
            }
            Mismatch::Semaphore(got) => {
                out.str(if got { "is EFD_SEMAPHORE, plan says not" } else { "is not EFD_SEMAPHORE, plan says semaphore" });
            }
            Mismatch::Size(got, want) => {
                out.str("size is ").num(got).str(", plan says ").num(want);
            }
            Mismatch::Name => {
                let n = self.link_of(tg.task as usize, tg.fd);
                let link = self.link;
                out.str("the kernel says ").push(&link[..n]).str(", another memfd name");
            }
            Mismatch::SockType(got, want) => {
                let name = |t: u32| match t {
                    linux_raw_sys::net::SOCK_STREAM => "stream",
                    linux_raw_sys::net::SOCK_DGRAM => "dgram",
                    linux_raw_sys::net::SOCK_SEQPACKET => "seqpacket",
                    _ => "another type",
                };
                out.str("socket type is ").str(name(got as u32)).str(", plan says ").str(name(want));
            }
            Mismatch::Seals(got, want) => {
                out.str("seals are ").num(got as u64).str(", plan says ").num(want as u64);
            }
        }
        out.str("\n");
    }
}

/// Checks the live tasks `pids` (one per plan task, in plan order) against `plan`; writes the
/// table (or only mismatch lines) to `out`.
pub fn verify(plan: &Plan<'_>, pids: &[i32], opts: &Options<'_>, out: &mut Out) -> Result<Verdict, InspectError> {
    let snap = inspect::snapshot(pids)?;
    let (socks, diag_err) = if snap.fds.iter().any(|f| f.what == WHAT_SOCKET) {
        match Sockets::read(&snap) {
            Ok(s) => (Some(s), Errno(0)),
            Err(e) => (None, e),
        }
    } else {
        (None, Errno(0))
    };
    let nfiles = plan.file_count();
    let nd = snap.descs as usize;
    let mut arena = Arena::map(bytes_for::<u32>(nfiles) * 2 + bytes_for::<u32>(nd)).map_err(|e| InspectError { pid: 0, fd: None, what: "mmap", errno: e })?;
    let mut st = State {
        plan,
        snap: &snap,
        socks,
        diag_err,
        desc_of: arena.take(nfiles),
        first_of: arena.take(nfiles),
        file_of: arena.take(nd),
        peers_unchecked: false,
        link: [0; 4200],
    };
    st.map();
    let mut mismatches = 0usize;
    let prefix = if opts.table { "mismatch: " } else { "fdslot: verify: " };
    // Shared tables: the kernel's (kcmp KCMP_FILES) against files=.
    let mut table_lines = 0;
    for pass in 0..2 {
        for (t, task) in plan.tasks.iter().enumerate() {
            let live_owner = snap.owner[t] as usize;
            if live_owner == task.owner as usize {
                if pass == 0 && opts.table && task.owner as usize != t {
                    out.str("task ").num(task.id as u64).str(" (pid ").num(pids[t] as u64).str("): shares the fd table of task ");
                    out.num(plan.tasks[task.owner as usize].id as u64).str(", as planned (kcmp KCMP_FILES)\n");
                }
                continue;
            }
            if pass == 1 {
                out.str(prefix).str("task ").num(task.id as u64);
                if live_owner != t {
                    out.str(": shares the fd table of task ").num(plan.tasks[live_owner].id as u64);
                } else {
                    out.str(": has a table of its own");
                }
                if task.owner as usize != t {
                    out.str(", plan says it shares task ").num(plan.tasks[task.owner as usize].id as u64).str("'s (files=)");
                } else {
                    out.str(", plan says a table of its own");
                }
                out.str(" (kcmp KCMP_FILES)\n");
            } else {
                table_lines += 1;
            }
        }
    }
    mismatches += table_lines;
    // The table, then the mismatch lines (pass 1 prints, pass 2 explains).
    let mut total_fds = 0;
    for pass in 0..2 {
        let quiet = pass == 0 && !opts.table;
        for (t, &pid) in pids.iter().enumerate() {
            if plan.tasks[t].owner as usize != t {
                continue;
            }
            if pass == 0 && opts.table {
                out.str("task ").num(plan.tasks[t].id as u64).str(" (pid ").num(pid as u64).str(")\n");
                header(out);
            }
            let targets = plan.task_targets(t);
            for tg in targets {
                let found = st.check(tg);
                if pass == 0 {
                    total_fds += 1;
                    mismatches += found.len();
                    if !quiet {
                        row(&mut st, out, tg.task as usize, tg.fd, Some(tg), &found);
                    }
                } else {
                    for m in found {
                        st.mismatch_line(out, prefix, tg, m);
                    }
                }
            }
            // Extra fds: open in the live table, named nowhere in the plan.
            let live_owner = snap.owner[t] as usize;
            for live in snap.task_fds(live_owner) {
                if targets.binary_search_by_key(&live.fd, |x| x.fd).is_ok() || opts.keep.contains(&live.fd) {
                    continue;
                }
                if pass == 0 {
                    mismatches += 1;
                    if !quiet {
                        row(&mut st, out, t, live.fd, None, &Found::new());
                    }
                } else {
                    let n = st.link_of(live_owner, live.fd);
                    let link = st.link;
                    out.str(prefix);
                    st.describe(out, t, live.fd, None);
                    out.str(": open (").push(&link[..n]).str("), but not in the plan\n");
                }
            }
        }
    }
    if opts.table {
        if st.peers_unchecked {
            out.str("note: socket pair peers not checked: sock_diag ");
            if st.diag_err.0 != 0 {
                out.str("failed (").str(st.diag_err.name().unwrap_or("error")).str(")\n");
            } else {
                out.str("does not list them (another network namespace?)\n");
            }
        }
        if mismatches == 0 {
            out.str("verify: ok: ").num(plan.tasks.len() as u64).str(" tasks, ").num(total_fds as u64).str(" fds match the plan\n");
        } else {
            out.str("verify: ").num(mismatches as u64).str(" mismatches\n");
        }
    }
    Ok(Verdict { mismatches, fds: total_fds })
}

fn header(out: &mut Out) {
    let start = out.mark();
    out.str("  fd").pad_from(start, 9).str("object").pad_from(start, 41).str("kernel").pad_from(start, 82).str("pos");
    out.pad_from(start, 93).str("flags").pad_from(start, 114).str("cloexec").pad_from(start, 122).str("check\n");
}

/// One row of the table.
fn row(st: &mut State<'_, '_>, out: &mut Out, t: usize, f: u32, tg: Option<&Target>, found: &Found) {
    let start = out.mark();
    out.str("  ").num(f as u64);
    out.pad_from(start, 9);
    match tg {
        Some(tg) => st.object_name(out, tg.object, tg.end),
        None => {
            out.str("-");
        }
    }
    out.pad_from(start, 40).str(" ");
    let live = st.snap.find(t, f).map(|i| st.snap.fds[i]);
    match live {
        None => {
            out.str("(not open)");
            out.pad_from(start, 122).str("MISMATCH\n");
            return;
        }
        Some(live) => {
            let owner = st.snap.owner[t] as usize;
            let n = st.link_of(owner, f);
            let link = st.link;
            out.push(&link[..n.min(40)]);
            out.pad_from(start, 81).str(" ");
            if live.what == WHAT_EVENTFD {
                out.str("count=").num(live.count);
            } else {
                out.num(live.pos);
            }
            out.pad_from(start, 92).str(" ");
            flag_names(out, live.flags);
            out.pad_from(start, 113).str(" ").str(if live.cloexec != 0 { "yes" } else { "no" });
            out.pad_from(start, 122);
        }
    }
    let Some(tg) = tg else {
        out.str("EXTRA: not in the plan\n");
        return;
    };
    out.str(if found.is_empty() { "ok" } else { "MISMATCH" });
    // Sharing, as kcmp found it: the object's first fd, unless this is it.
    if let Some(first) = st.first_target(file_of(tg.object, tg.end)) {
        if (first.task, first.fd) != (tg.task, tg.fd) && st.desc_of[file_of(tg.object, tg.end)] == live.map_or(0, |l| l.desc + 1) {
            out.str("  (one description with task ").num(st.plan.tasks[first.task as usize].id as u64).str(" fd ").num(first.fd as u64).str(")");
        }
    }
    out.str("\n");
}
