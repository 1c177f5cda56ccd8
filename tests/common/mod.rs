//! Shared helpers for the fdslot integration tests.
//!
//! - [`bin`]: the fdslot executable (`FDSLOT_BIN`, else `target/release/fdslot`, built once if
//!   missing);
//! - [`Plan`]: a tiny plan builder that renders format 1 text and the expected layout;
//! - [`start_stopped`] / [`run_stop`]: `fdslot run PLAN --stop`, read until `ready`, task → pid;
//! - [`check_tables`] / [`assert_tables`]: the kernel checker (`/proc/PID/fd`, `fdinfo`, kcmp);
//! - [`Spawned`], [`spawn_sync`], [`recv_packet`]: driving `fdslot restore` like a parent tool;
//! - [`names`], [`bind_abstract`], [`send_fd_abstract`]: the session's socket names.
//!
//! Nothing here may hang a test: every wait has a cap ([`CAP`]) and every process started is
//! killed by id when its guard drops.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// One #[test] per transport form of a scenario `fn NAME(batch)`: `NAME::FORM` runs
/// `NAME(BATCH)`, so each form passes or fails on its own.
#[allow(unused_macros)]
macro_rules! forms {
    ($name:ident: $($form:ident = $batch:expr),+ $(,)?) => {
        mod $name {
            $( #[test] fn $form() { super::$name($batch) } )+
        }
    };
}

/// The longest any single wait in a test may take.
pub const CAP: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// The binary, names, temp files
// ---------------------------------------------------------------------------------------------

/// The fdslot executable: `$FDSLOT_BIN`, else `<manifest>/target/release/fdslot`, built once
/// with `cargo build --release --bin fdslot` when missing.
pub fn bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("FDSLOT_BIN") {
            return PathBuf::from(p);
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let p = root.join("target/release/fdslot");
        if !p.exists() {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let out = Command::new(cargo)
                .args(["build", "--release", "--bin", "fdslot"])
                .current_dir(&root)
                .stdin(Stdio::null())
                .output()
                .expect("cannot run cargo to build fdslot");
            assert!(
                out.status.success() && p.exists(),
                "cargo build --release --bin fdslot failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        p
    })
}

/// A `Command` for the fdslot binary with stdin from /dev/null.
pub fn fdslot() -> Command {
    let mut c = Command::new(bin());
    c.stdin(Stdio::null());
    c
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A name unique to this test process and call.
pub fn uniq(tag: &str) -> String {
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A session name (1..32 chars of A-Za-z0-9_-) unique to this call.
pub fn session(tag: &str) -> String {
    let tag: String = tag
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect();
    let s = format!(
        "{tag}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    assert!(s.len() <= 32);
    s
}

/// A private temporary directory, removed on drop.
pub struct TmpDir(pub PathBuf);

impl TmpDir {
    pub fn new(tag: &str) -> TmpDir {
        let base = std::fs::canonicalize(std::env::temp_dir()).unwrap();
        let p = base.join(format!("fdslot-test-{}", uniq(tag)));
        std::fs::create_dir_all(&p).unwrap();
        TmpDir(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    /// Creates (or truncates) file `name` with `content`.
    pub fn file(&self, name: &str, content: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, content).unwrap();
        p
    }
    /// Writes plan text to `name` and returns its path.
    pub fn plan(&self, text: &str) -> PathBuf {
        self.file(
            &format!("plan-{}.fds", SEQ.fetch_add(1, Ordering::Relaxed)),
            text.as_bytes(),
        )
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Percent-encodes a path or argument as format 1 wants it.
pub fn pct(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        if (0x21..=0x7e).contains(&b) && !matches!(b, b'%' | b',' | b'#') {
            s.push(b as char);
        } else {
            write!(s, "%{b:02X}").unwrap();
        }
    }
    s
}

/// A small deterministic PRNG (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// RLIMIT_NOFILE's soft limit of this process (and so of the fdslot it starts).
pub fn nofile_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) }, 0);
    r.rlim_cur
}

// ---------------------------------------------------------------------------------------------
// Flags
// ---------------------------------------------------------------------------------------------

pub const O_LARGEFILE: u32 = 0o100000;
pub const O_CLOEXEC: u32 = 0o2000000;

/// The bits of a `flags=` value (names or a number).
pub fn flag_bits(s: &str) -> u32 {
    if s.is_empty() {
        return 0;
    }
    if s.as_bytes()[0].is_ascii_digit() {
        return s.parse().expect("flags number");
    }
    s.split(',')
        .map(|n| {
            (match n {
                "rdonly" => libc::O_RDONLY,
                "wronly" => libc::O_WRONLY,
                "rdwr" => libc::O_RDWR,
                "append" => libc::O_APPEND,
                "nonblock" => libc::O_NONBLOCK,
                "creat" => libc::O_CREAT,
                "excl" => libc::O_EXCL,
                "trunc" => libc::O_TRUNC,
                "directory" => libc::O_DIRECTORY,
                "path" => libc::O_PATH,
                "noatime" => libc::O_NOATIME,
                "sync" => libc::O_SYNC,
                "dsync" => libc::O_DSYNC,
                "nofollow" => libc::O_NOFOLLOW,
                "noctty" => libc::O_NOCTTY,
                _ => panic!("unknown flag {n}"),
            }) as u32
        })
        .fold(0, |a, b| a | b)
}

/// The status flags the kernel keeps in `f_flags` (what fdinfo shows) for an open with `open`.
pub fn kept_flags(open: u32) -> u32 {
    let open = open & !O_CLOEXEC & !O_LARGEFILE;
    if open & libc::O_PATH as u32 != 0 {
        return open & (libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW) as u32;
    }
    open & !((libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY | libc::O_TRUNC) as u32)
}

/// Symbolic form of status flags, for messages.
pub fn flag_names(f: u32) -> String {
    let mut v = vec![match f & 3 {
        0 => "rdonly",
        1 => "wronly",
        2 => "rdwr",
        _ => "acc3",
    }
    .to_string()];
    let mut rest = f & !3;
    for (bit, name) in [
        (libc::O_APPEND, "append"),
        (libc::O_NONBLOCK, "nonblock"),
        (libc::O_SYNC, "sync"),
        (libc::O_DSYNC, "dsync"),
        (libc::O_DIRECTORY, "directory"),
        (libc::O_NOFOLLOW, "nofollow"),
        (libc::O_NOATIME, "noatime"),
        (libc::O_PATH, "path"),
        (O_CLOEXEC as i32, "cloexec"),
        (O_LARGEFILE as i32, "largefile"),
        (libc::O_CREAT, "creat"),
        (libc::O_EXCL, "excl"),
        (libc::O_TRUNC, "trunc"),
        (libc::O_NOCTTY, "noctty"),
    ] {
        let bit = bit as u32;
        if rest & bit == bit && bit != 0 {
            v.push(name.into());
            rest &= !bit;
        }
    }
    if rest != 0 {
        v.push(format!("{rest:#o}"));
    }
    format!("{} ({f:#o})", v.join(","))
}

// ---------------------------------------------------------------------------------------------
// Plan builder and the expected layout
// ---------------------------------------------------------------------------------------------

/// A memfd's parameters (`memfd ID NAME [size=] [data=] [seals=] [flags=] [pos=]`).
#[derive(Clone, Debug, Default)]
pub struct MemfdSpec {
    /// The name, raw bytes (percent-encoded in the plan).
    pub name: Vec<u8>,
    pub size: Option<u64>,
    /// data=PATH and the bytes the test wrote there.
    pub data: Option<(PathBuf, Vec<u8>)>,
    /// seals= as written (comma-separated names), "" for none.
    pub seals: String,
    /// flags= as written ("append,nonblock" ...), "" for none.
    pub flags: String,
    pub pos: Option<u64>,
}

#[derive(Clone, Debug)]
pub enum Kind {
    Reg {
        path: PathBuf,
        flags: String,
        pos: Option<u64>,
        mode: Option<u32>,
    },
    /// `pipe ID [data=PATH] [size=N]`.
    Pipe {
        data: Option<(PathBuf, Vec<u8>)>,
        size: Option<u64>,
    },
    /// `fifo ID PATH [flags=..]`.
    Fifo {
        path: PathBuf,
        flags: String,
    },
    /// `socketpair ID stream|dgram|seqpacket [flags=..]`; ends a (0) and b (1).
    Socketpair {
        ty: String,
        flags: String,
    },
    /// `eventfd ID [count=N] [flags=..]`.
    Eventfd {
        count: Option<u64>,
        flags: String,
    },
    Memfd(MemfdSpec),
    /// `reopen ID PIPE r|w [flags=..]`.
    Reopen {
        pipe: u32,
        end: u8,
        flags: String,
    },
    /// `inherit ID FD`; `src` is this test process's fd that the caller passes in at FD.
    Inherit {
        fd: u32,
        src: RawFd,
    },
}

impl Kind {
    pub fn keyword(&self) -> &'static str {
        match self {
            Kind::Reg { .. } => "reg",
            Kind::Pipe { .. } => "pipe",
            Kind::Fifo { .. } => "fifo",
            Kind::Socketpair { .. } => "socketpair",
            Kind::Eventfd { .. } => "eventfd",
            Kind::Memfd(_) => "memfd",
            Kind::Reopen { .. } => "reopen",
            Kind::Inherit { .. } => "inherit",
        }
    }
    /// The target keyword of end `end`.
    pub fn end_keyword(&self, end: u8) -> &'static str {
        match (self, end) {
            (Kind::Pipe { .. }, 0) => "r",
            (Kind::Pipe { .. }, _) => "w",
            (Kind::Socketpair { .. }, 0) => "a",
            (Kind::Socketpair { .. }, _) => "b",
            _ => "at",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Tgt {
    pub end: u8,
    pub task: u16,
    pub fd: u32,
    pub cloexec: bool,
}

#[derive(Clone, Debug)]
pub struct Obj {
    pub id: u32,
    pub kind: Kind,
    pub opener: Option<u16>,
    pub targets: Vec<Tgt>,
}

#[derive(Clone, Debug)]
pub struct TaskDef {
    pub id: u16,
    pub parent: Option<u16>,
    pub exec: Option<Vec<Vec<u8>>>,
    /// `files=T`: shares T's fd table.
    pub files: Option<u16>,
    /// `nofile=N`: RLIMIT_NOFILE of the restored program.
    pub nofile: Option<u64>,
}

/// A plan under construction. Targets attach to the last object added.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub tasks: Vec<TaskDef>,
    pub objs: Vec<Obj>,
    /// Comment lines of this many bytes in all, written before each half of the objects: a
    /// plan text of a given size whose paths sit at both ends.
    pub padding: usize,
}

/// What readlink(/proc/PID/fd/FD) must show.
#[derive(Clone, Debug, PartialEq)]
pub enum Link {
    Path(PathBuf),
    /// Starts with this (`pipe:[`, `socket:[`).
    Prefix(String),
    /// Exactly these bytes (`anon_inode:[eventfd]`, `/memfd:NAME (deleted)`).
    Exact(Vec<u8>),
    Any,
}

/// Kernel facts about an object beyond its fdinfo, checked on one fd of each (object, end)
/// (through a pidfd_getfd copy) while the tasks are stopped.
#[derive(Clone, Debug)]
pub enum Probe {
    None,
    /// A pipe end (or a reopen of one): F_GETPIPE_SZ (when planned), FIONREAD == data.len(),
    /// and on a read end the buffered bytes themselves (tee, which does not consume them).
    Pipe {
        cap: Option<u64>,
        data: Vec<u8>,
    },
    /// A socketpair end: SO_TYPE; the two ends are each other's peer (a datagram each way),
    /// or, with the other end planned nowhere, the peer is gone (EPIPE/ECONNREFUSED).
    Socket {
        ty: i32,
        peer_planned: bool,
    },
    /// eventfd-count (and eventfd-semaphore where fdinfo shows it).
    Eventfd {
        count: u64,
        semaphore: bool,
    },
    /// Contents (pread), size (fstat) and seals (F_GET_SEALS; None: 0 or F_SEAL_SEAL).
    Memfd {
        content: Vec<u8>,
        seals: Option<i32>,
    },
    /// kcmp(this test, fd, task, its fd) == 0.
    SameAsMine {
        fd: RawFd,
    },
}

/// What one planned fd must be.
#[derive(Clone, Debug)]
pub struct Slot {
    pub obj: u32,
    pub end: u8,
    /// The path a reg's (or fifo's) fd must link to; None for other kinds.
    pub path: Option<PathBuf>,
    /// The planned offset (checked when Some).
    pub pos: Option<u64>,
    /// The status flags fdinfo must show (without O_LARGEFILE and O_CLOEXEC).
    pub flags: u32,
    pub cloexec: bool,
    /// What readlink must show.
    pub link: Link,
    /// Fds with the same `ident` must be the same inode (one pipe: its ends and its
    /// reopens), fds with different ones different inodes.
    pub ident: Option<u32>,
    pub probe: Probe,
    /// The object's kind keyword, for messages.
    pub kind: &'static str,
}

/// task → fd → slot; every declared task has an entry, maybe empty. Members of a shared
/// table (files=) each get the whole table.
pub type Expect = BTreeMap<u16, BTreeMap<u32, Slot>>;

pub const F_SEAL_SEAL: i32 = 1;
pub const F_SEAL_SHRINK: i32 = 2;
pub const F_SEAL_GROW: i32 = 4;
pub const F_SEAL_WRITE: i32 = 8;
pub const F_SEAL_FUTURE_WRITE: i32 = 16;

/// The bits of a seals= list.
pub fn seal_bits(s: &str) -> i32 {
    s.split(',')
        .filter(|n| !n.is_empty())
        .map(|n| match n {
            "seal" => F_SEAL_SEAL,
            "shrink" => F_SEAL_SHRINK,
            "grow" => F_SEAL_GROW,
            "write" => F_SEAL_WRITE,
            "future_write" => F_SEAL_FUTURE_WRITE,
            _ => panic!("unknown seal {n}"),
        })
        .fold(0, |a, b| a | b)
}

/// Whether a comma-separated list names `word`.
pub fn has_word(list: &str, word: &str) -> bool {
    list.split(',').any(|w| w == word)
}

/// The capacity F_SETPIPE_SZ gives for `size`: at least a page, rounded up to a power of two.
pub fn pipe_capacity(size: u64) -> u64 {
    size.max(4096).next_power_of_two()
}

pub fn sock_type(ty: &str) -> i32 {
    match ty {
        "stream" => libc::SOCK_STREAM,
        "dgram" => libc::SOCK_DGRAM,
        "seqpacket" => libc::SOCK_SEQPACKET,
        _ => panic!("unknown socket type {ty}"),
    }
}

/// The bytes a memfd must hold: data, then truncated or zero-extended to size.
pub fn memfd_content(m: &MemfdSpec) -> Vec<u8> {
    let mut c = m.data.as_ref().map(|d| d.1.clone()).unwrap_or_default();
    if let Some(s) = m.size {
        c.resize(s as usize, 0);
    }
    c
}

impl Plan {
    pub fn new() -> Plan {
        Plan::default()
    }
    pub fn task(&mut self, id: u16) -> &mut Self {
        self.tasks.push(TaskDef {
            id,
            parent: None,
            exec: None,
            files: None,
            nofile: None,
        });
        self
    }
    pub fn child(&mut self, id: u16, parent: u16) -> &mut Self {
        self.task(id);
        self.tasks.last_mut().unwrap().parent = Some(parent);
        self
    }
    fn task_mut(&mut self, id: u16) -> &mut TaskDef {
        self.tasks
            .iter_mut()
            .find(|t| t.id == id)
            .expect("no such task")
    }
    /// Sets task `id`'s exec= argv.
    pub fn exec(&mut self, id: u16, argv: &[&str]) -> &mut Self {
        self.task_mut(id).exec = Some(argv.iter().map(|a| a.as_bytes().to_vec()).collect());
        self
    }
    /// Sets task `id`'s files= (it shares task `with`'s table).
    pub fn files(&mut self, id: u16, with: u16) -> &mut Self {
        self.task_mut(id).files = Some(with);
        self
    }
    /// Sets task `id`'s nofile=.
    pub fn nofile(&mut self, id: u16, n: u64) -> &mut Self {
        self.task_mut(id).nofile = Some(n);
        self
    }
    fn push(&mut self, id: u32, kind: Kind) -> &mut Self {
        self.objs.push(Obj {
            id,
            kind,
            opener: None,
            targets: vec![],
        });
        self
    }
    pub fn reg(&mut self, id: u32, path: &Path, flags: &str) -> &mut Self {
        self.push(
            id,
            Kind::Reg {
                path: path.to_path_buf(),
                flags: flags.into(),
                pos: None,
                mode: None,
            },
        )
    }
    pub fn reg_pos(&mut self, id: u32, path: &Path, flags: &str, pos: u64) -> &mut Self {
        self.reg(id, path, flags);
        if let Kind::Reg { pos: p, .. } = &mut self.objs.last_mut().unwrap().kind {
            *p = Some(pos);
        }
        self
    }
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        if let Kind::Reg { mode: m, .. } = &mut self.objs.last_mut().unwrap().kind {
            *m = Some(mode);
        }
        self
    }
    pub fn pipe(&mut self, id: u32) -> &mut Self {
        self.push(
            id,
            Kind::Pipe {
                data: None,
                size: None,
            },
        )
    }
    /// data=PATH on the last object (a pipe); `bytes` is what the test wrote there.
    pub fn pipe_data(&mut self, path: &Path, bytes: &[u8]) -> &mut Self {
        match &mut self.objs.last_mut().unwrap().kind {
            Kind::Pipe { data, .. } => *data = Some((path.to_path_buf(), bytes.to_vec())),
            k => panic!("pipe_data on {k:?}"),
        }
        self
    }
    /// size= on the last object (a pipe).
    pub fn pipe_size(&mut self, n: u64) -> &mut Self {
        match &mut self.objs.last_mut().unwrap().kind {
            Kind::Pipe { size, .. } => *size = Some(n),
            k => panic!("pipe_size on {k:?}"),
        }
        self
    }
    pub fn fifo(&mut self, id: u32, path: &Path, flags: &str) -> &mut Self {
        self.push(
            id,
            Kind::Fifo {
                path: path.to_path_buf(),
                flags: flags.into(),
            },
        )
    }
    pub fn socketpair(&mut self, id: u32, ty: &str, flags: &str) -> &mut Self {
        self.push(
            id,
            Kind::Socketpair {
                ty: ty.into(),
                flags: flags.into(),
            },
        )
    }
    pub fn eventfd(&mut self, id: u32, count: Option<u64>, flags: &str) -> &mut Self {
        self.push(
            id,
            Kind::Eventfd {
                count,
                flags: flags.into(),
            },
        )
    }
    pub fn memfd(&mut self, id: u32, spec: MemfdSpec) -> &mut Self {
        self.push(id, Kind::Memfd(spec))
    }
    /// `reopen ID PIPE r|w` (end 0: r, 1: w).
    pub fn reopen(&mut self, id: u32, pipe: u32, end: u8, flags: &str) -> &mut Self {
        self.push(
            id,
            Kind::Reopen {
                pipe,
                end,
                flags: flags.into(),
            },
        )
    }
    /// `inherit ID FD`: the test passes its own fd `src` at FD to run.
    pub fn inherit(&mut self, id: u32, fd: u32, src: RawFd) -> &mut Self {
        self.push(id, Kind::Inherit { fd, src })
    }
    /// `opener=` on the last object.
    pub fn opener(&mut self, task: u16) -> &mut Self {
        self.objs.last_mut().unwrap().opener = Some(task);
        self
    }
    pub fn target(&mut self, end: u8, task: u16, fd: u32, cloexec: bool) -> &mut Self {
        self.objs
            .last_mut()
            .expect("target before any object")
            .targets
            .push(Tgt {
                end,
                task,
                fd,
                cloexec,
            });
        self
    }
    pub fn at(&mut self, task: u16, fd: u32) -> &mut Self {
        self.target(0, task, fd, false)
    }
    pub fn at_ce(&mut self, task: u16, fd: u32) -> &mut Self {
        self.target(0, task, fd, true)
    }
    pub fn r(&mut self, task: u16, fd: u32) -> &mut Self {
        self.target(0, task, fd, false)
    }
    pub fn r_ce(&mut self, task: u16, fd: u32) -> &mut Self {
        self.target(0, task, fd, true)
    }
    pub fn w(&mut self, task: u16, fd: u32) -> &mut Self {
        self.target(1, task, fd, false)
    }
    pub fn w_ce(&mut self, task: u16, fd: u32) -> &mut Self {
        self.target(1, task, fd, true)
    }
    /// Socketpair end a.
    pub fn a(&mut self, task: u16, fd: u32) -> &mut Self {
        self.target(0, task, fd, false)
    }
    pub fn a_ce(&mut self, task: u16, fd: u32) -> &mut Self {
        self.target(0, task, fd, true)
    }
    /// Socketpair end b.
    pub fn b(&mut self, task: u16, fd: u32) -> &mut Self {
        self.target(1, task, fd, false)
    }
    pub fn b_ce(&mut self, task: u16, fd: u32) -> &mut Self {
        self.target(1, task, fd, true)
    }

    pub fn task_ids(&self) -> Vec<u16> {
        self.tasks.iter().map(|t| t.id).collect()
    }

    pub fn task_def(&self, id: u16) -> Option<&TaskDef> {
        self.tasks.iter().find(|t| t.id == id)
    }

    /// The owner of task `id`'s table: where its files= chain ends (itself without files=).
    pub fn table_owner(&self, id: u16) -> u16 {
        let mut cur = id;
        for _ in 0..=self.tasks.len() {
            match self.task_def(cur).and_then(|t| t.files) {
                Some(n) => cur = n,
                None => return cur,
            }
        }
        cur
    }

    /// The plan in format 1.
    pub fn text(&self) -> String {
        let mut s = String::from("fdslot 1\n");
        for t in &self.tasks {
            write!(s, "task {}", t.id).unwrap();
            if let Some(p) = t.parent {
                write!(s, " parent={p}").unwrap();
            }
            if let Some(f) = t.files {
                write!(s, " files={f}").unwrap();
            }
            if let Some(n) = t.nofile {
                write!(s, " nofile={n}").unwrap();
            }
            if let Some(argv) = &t.exec {
                let v: Vec<String> = argv.iter().map(|a| pct(a)).collect();
                write!(s, " exec={}", v.join(",")).unwrap();
            }
            s.push('\n');
        }
        let path = |p: &Path| pct(p.as_os_str().as_bytes());
        for (i, o) in self.objs.iter().enumerate() {
            if self.padding > 0 && (i == 0 || i == self.objs.len() / 2) {
                let line = format!("# {}\n", "pad ".repeat(10_000));
                for _ in 0..(self.padding / 2).div_ceil(line.len()) {
                    s.push_str(&line);
                }
            }
            write!(s, "{} {}", o.kind.keyword(), o.id).unwrap();
            let opt = |s: &mut String, k: &str, v: &str| {
                if !v.is_empty() {
                    write!(s, " {k}={v}").unwrap();
                }
            };
            match &o.kind {
                Kind::Reg {
                    path: p,
                    flags,
                    pos,
                    mode,
                } => {
                    write!(s, " {}", path(p)).unwrap();
                    opt(&mut s, "flags", flags);
                    if let Some(m) = mode {
                        write!(s, " mode={m:o}").unwrap();
                    }
                    if let Some(p) = pos {
                        write!(s, " pos={p}").unwrap();
                    }
                }
                Kind::Pipe { data, size } => {
                    if let Some((p, _)) = data {
                        write!(s, " data={}", path(p)).unwrap();
                    }
                    if let Some(n) = size {
                        write!(s, " size={n}").unwrap();
                    }
                }
                Kind::Fifo { path: p, flags } => {
                    write!(s, " {}", path(p)).unwrap();
                    opt(&mut s, "flags", flags);
                }
                Kind::Socketpair { ty, flags } => {
                    write!(s, " {ty}").unwrap();
                    opt(&mut s, "flags", flags);
                }
                Kind::Eventfd { count, flags } => {
                    if let Some(c) = count {
                        write!(s, " count={c}").unwrap();
                    }
                    opt(&mut s, "flags", flags);
                }
                Kind::Memfd(m) => {
                    write!(s, " {}", pct(&m.name)).unwrap();
                    if let Some(n) = m.size {
                        write!(s, " size={n}").unwrap();
                    }
                    if let Some((p, _)) = &m.data {
                        write!(s, " data={}", path(p)).unwrap();
                    }
                    opt(&mut s, "seals", &m.seals);
                    opt(&mut s, "flags", &m.flags);
                    if let Some(p) = m.pos {
                        write!(s, " pos={p}").unwrap();
                    }
                }
                Kind::Reopen { pipe, end, flags } => {
                    write!(s, " {pipe} {}", if *end == 0 { "r" } else { "w" }).unwrap();
                    opt(&mut s, "flags", flags);
                }
                Kind::Inherit { fd, .. } => write!(s, " {fd}").unwrap(),
            }
            if let Some(t) = o.opener {
                write!(s, " opener={t}").unwrap();
            }
            s.push('\n');
            for t in &o.targets {
                writeln!(
                    s,
                    "  {} {}:{}{}",
                    o.kind.end_keyword(t.end),
                    t.task,
                    t.fd,
                    if t.cloexec { " cloexec" } else { "" }
                )
                .unwrap();
            }
        }
        s
    }

    fn obj(&self, id: u32) -> Option<&Obj> {
        self.objs.iter().find(|o| o.id == id)
    }

    /// The slot every fd of (object `o`, end `end`) must be (cloexec false; set per target).
    pub fn slot_for(&self, o: &Obj, end: u8) -> Slot {
        let pipe_probe = |data: &Option<(PathBuf, Vec<u8>)>, size: &Option<u64>| Probe::Pipe {
            cap: size.map(pipe_capacity),
            data: data.as_ref().map(|d| d.1.clone()).unwrap_or_default(),
        };
        let rdwr = libc::O_RDWR as u32;
        let nb = |flags: &str| {
            if has_word(flags, "nonblock") {
                libc::O_NONBLOCK as u32
            } else {
                0
            }
        };
        let mut slot = Slot {
            obj: o.id,
            end,
            path: None,
            pos: None,
            flags: 0,
            cloexec: false,
            link: Link::Any,
            ident: None,
            probe: Probe::None,
            kind: o.kind.keyword(),
        };
        match &o.kind {
            Kind::Reg {
                path, flags, pos, ..
            } => {
                slot.path = Some(path.clone());
                slot.link = Link::Path(path.clone());
                slot.pos = Some(pos.unwrap_or(0));
                slot.flags = kept_flags(flag_bits(flags));
            }
            Kind::Pipe { data, size } => {
                slot.link = Link::Prefix("pipe:[".into());
                slot.ident = Some(o.id);
                slot.flags = if end == 0 { 0 } else { 1 };
                slot.probe = pipe_probe(data, size);
            }
            Kind::Fifo { path, flags } => {
                slot.path = Some(path.clone());
                slot.link = Link::Path(path.clone());
                slot.pos = Some(0);
                slot.flags = kept_flags(flag_bits(flags));
            }
            Kind::Socketpair { ty, flags } => {
                slot.link = Link::Prefix("socket:[".into());
                slot.flags = rdwr | nb(flags);
                slot.probe = Probe::Socket {
                    ty: sock_type(ty),
                    peer_planned: o.targets.iter().any(|t| t.end != end),
                };
            }
            Kind::Eventfd { count, flags } => {
                slot.link = Link::Exact(b"anon_inode:[eventfd]".to_vec());
                slot.pos = Some(0);
                slot.flags = rdwr | nb(flags);
                slot.probe = Probe::Eventfd {
                    count: count.unwrap_or(0),
                    semaphore: has_word(flags, "semaphore"),
                };
            }
            Kind::Memfd(m) => {
                let mut l = b"/memfd:".to_vec();
                l.extend_from_slice(&m.name);
                l.extend_from_slice(b" (deleted)");
                slot.link = Link::Exact(l);
                slot.pos = Some(m.pos.unwrap_or(0));
                slot.flags = rdwr
                    | nb(&m.flags)
                    | if has_word(&m.flags, "append") {
                        libc::O_APPEND as u32
                    } else {
                        0
                    };
                slot.probe = Probe::Memfd {
                    content: memfd_content(m),
                    seals: if m.seals.is_empty() {
                        None
                    } else {
                        Some(seal_bits(&m.seals))
                    },
                };
            }
            Kind::Reopen {
                pipe,
                end: pend,
                flags,
            } => {
                slot.link = Link::Prefix("pipe:[".into());
                slot.ident = Some(*pipe);
                slot.flags = (if *pend == 0 { 0 } else { 1 }) | nb(flags);
                if let Some(Obj {
                    kind: Kind::Pipe { data, size },
                    ..
                }) = self.obj(*pipe)
                {
                    slot.probe = pipe_probe(data, size);
                }
            }
            Kind::Inherit { src, .. } => {
                let target = std::fs::read_link(format!("/proc/self/fd/{src}"))
                    .expect("inherit: the test's own fd must be open");
                let (pos, flags) =
                    fdinfo(std::process::id() as i32, *src as u32).expect("inherit: own fdinfo");
                slot.link = Link::Exact(target.as_os_str().as_bytes().to_vec());
                slot.pos = Some(pos);
                slot.flags = flags & !(O_CLOEXEC | O_LARGEFILE);
                slot.probe = Probe::SameAsMine { fd: *src };
            }
        }
        slot
    }

    /// The layout the kernel must show once every task is restored. Members of one shared
    /// table (files=) all get the table's whole layout (the union of their targets).
    pub fn expect(&self) -> Expect {
        let mut tables: BTreeMap<u16, BTreeMap<u32, Slot>> = BTreeMap::new();
        for t in &self.tasks {
            tables.entry(self.table_owner(t.id)).or_default();
        }
        for o in &self.objs {
            for t in &o.targets {
                assert!(
                    self.task_def(t.task).is_some(),
                    "test bug: target in undeclared task {}",
                    t.task
                );
                let mut slot = self.slot_for(o, t.end);
                slot.cloexec = t.cloexec;
                let prev = tables
                    .get_mut(&self.table_owner(t.task))
                    .unwrap()
                    .insert(t.fd, slot);
                assert!(
                    prev.is_none(),
                    "test bug: task {} fd {} planned twice (in its table)",
                    t.task,
                    t.fd
                );
            }
        }
        self.tasks
            .iter()
            .map(|t| (t.id, tables[&self.table_owner(t.id)].clone()))
            .collect()
    }

    /// Number of planned fds.
    pub fn fd_count(&self) -> usize {
        self.objs.iter().map(|o| o.targets.len()).sum()
    }
}
// ---------------------------------------------------------------------------------------------
// The kernel checker
// ---------------------------------------------------------------------------------------------

/// kcmp(KCMP_FILE): Ok(0) same description, Ok(1|2) ordering, Err(errno).
pub fn kcmp_file(pid1: i32, fd1: u32, pid2: i32, fd2: u32) -> Result<i64, i32> {
    // SAFETY: kcmp takes integers only.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid1 as libc::c_long,
            pid2 as libc::c_long,
            0 as libc::c_long,
            fd1 as libc::c_ulong,
            fd2 as libc::c_ulong,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(r)
    }
}

/// The fds in /proc/PID/fd.
pub fn list_fds(pid: i32) -> io::Result<BTreeSet<u32>> {
    let mut s = BTreeSet::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let e = e?;
        if let Some(n) = e.file_name().to_str().and_then(|n| n.parse().ok()) {
            s.insert(n);
        }
    }
    Ok(s)
}

/// (pos, flags) from /proc/PID/fdinfo/FD.
pub fn fdinfo(pid: i32, fd: u32) -> io::Result<(u64, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))?;
    let mut pos = None;
    let mut flags = None;
    for l in text.lines() {
        if let Some(v) = l.strip_prefix("pos:") {
            pos = v.trim().parse().ok();
        } else if let Some(v) = l.strip_prefix("flags:") {
            flags = u32::from_str_radix(v.trim(), 8).ok();
        }
    }
    match (pos, flags) {
        (Some(p), Some(f)) => Ok((p, f)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad fdinfo: {text:?}"),
        )),
    }
}

pub fn fd_target(pid: i32, fd: u32) -> String {
    match std::fs::read_link(format!("/proc/{pid}/fd/{fd}")) {
        Ok(p) => p.to_string_lossy().into_owned(),
        Err(e) => format!("<{e}>"),
    }
}

/// The state letter in /proc/PID/stat (R, S, T, Z, ...), or None when gone.
pub fn proc_state(pid: i32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = s.rfind(')')?;
    s[close + 1..].trim_start().chars().next()
}

/// PPid from /proc/PID/status.
pub fn proc_ppid(pid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

pub fn proc_comm(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

#[derive(Clone, Debug, Default)]
pub struct CheckOpts {
    /// The tasks have exec'd: FD_CLOEXEC fds are gone, and fdinfo can no longer be compared
    /// for them.
    pub after_exec: bool,
    /// The tasks must be stopped (state T). Only then are the object probes run (pipe data,
    /// socket peers, eventfd counters, memfd contents): running tasks may change them.
    pub stopped: bool,
    /// Extra fds every task must also hold (--keep); not checked further here.
    pub keep: Vec<u32>,
    /// Skip the pos check (the tasks may have moved offsets).
    pub no_pos: bool,
    /// Skip the object probes even when stopped.
    pub no_probe: bool,
}

/// A pidfd for `pid` (close-on-exec).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_long, 0 as libc::c_long) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// A copy of `fd` of the process behind `pidfd` (the same open file description; the copy is
/// close-on-exec).
pub fn pidfd_getfd(pidfd: &OwnedFd, fd: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_getfd,
            pidfd.as_raw_fd() as libc::c_long,
            fd as libc::c_long,
            0 as libc::c_long,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// A copy of task `pid`'s fd `fd` (pidfd_open + pidfd_getfd).
pub fn steal_fd(pid: i32, fd: u32) -> io::Result<OwnedFd> {
    pidfd_getfd(&pidfd_open(pid)?, fd)
}

/// kcmp(KCMP_FILES): Ok(0) when the two processes share one fd table.
pub fn kcmp_files(pid1: i32, pid2: i32) -> Result<i64, i32> {
    // SAFETY: kcmp takes integers only.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid1 as libc::c_long,
            pid2 as libc::c_long,
            2 as libc::c_long,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(r)
    }
}

/// (soft, hard) of "Max open files" in /proc/PID/limits (u64::MAX for unlimited).
pub fn proc_nofile(pid: i32) -> io::Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits"))?;
    let l = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Max open files line"))?;
    let w: Vec<&str> = l["Max open files".len()..].split_whitespace().collect();
    let num = |s: &str| {
        if s == "unlimited" {
            Ok(u64::MAX)
        } else {
            s.parse::<u64>()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, l.to_string()))
        }
    };
    Ok((
        num(w.first().copied().unwrap_or(""))?,
        num(w.get(1).copied().unwrap_or(""))?,
    ))
}

/// The value of field `key:` in /proc/PID/fdinfo/FD.
pub fn fdinfo_field(pid: i32, fd: u32, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .map(|v| v.trim().to_string())
}

fn errno_name(e: i32) -> String {
    format!("{} (errno {e})", io::Error::from_raw_os_error(e))
}

fn last_errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// FIONREAD on `fd`.
pub fn fionread(fd: &OwnedFd) -> Result<i64, i32> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(n as i64)
    }
}

/// The bytes buffered in the pipe whose read end is `fd`, without consuming them (tee into a
/// pipe of our own).
pub fn pipe_peek(fd: &OwnedFd, len: usize) -> Result<Vec<u8>, String> {
    let mut p = [0; 2];
    // SAFETY: p has room for two fds.
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
        return Err(format!("pipe2: {}", errno_name(last_errno())));
    }
    // SAFETY: fresh fds.
    let (pr, pw) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
    // SAFETY: plain fcntl.
    unsafe { libc::fcntl(pw.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
    // SAFETY: plain syscall.
    let n = unsafe {
        libc::tee(
            fd.as_raw_fd(),
            pw.as_raw_fd(),
            len.max(1),
            libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        return Err(format!("tee: {}", errno_name(last_errno())));
    }
    let mut out = vec![0u8; n as usize];
    let mut got = 0;
    while got < out.len() {
        // SAFETY: out is writable from got.
        let k = unsafe {
            libc::read(
                pr.as_raw_fd(),
                out[got..].as_mut_ptr().cast(),
                out.len() - got,
            )
        };
        if k <= 0 {
            break;
        }
        got += k as usize;
    }
    out.truncate(got);
    Ok(out)
}

fn show_bytes(b: &[u8]) -> String {
    if b.len() <= 48 {
        format!("{:?}", String::from_utf8_lossy(b))
    } else {
        format!(
            "{} bytes starting {:?}",
            b.len(),
            String::from_utf8_lossy(&b[..48])
        )
    }
}

/// Probes one (object, end) through a copy of task `pid`'s fd `fd`.
fn probe_one(slot: &Slot, what: &str, pid: i32, fd: u32, stopped: bool, errs: &mut Vec<String>) {
    let me = std::process::id() as i32;
    if let Probe::SameAsMine { fd: mine } = slot.probe {
        match kcmp_file(me, mine as u32, pid, fd) {
            Ok(0) => {}
            r => errs.push(format!(
                "{what}: must be the caller's own fd {mine} (inherited), kcmp = {r:?}"
            )),
        }
        return;
    }
    if matches!(slot.probe, Probe::None) {
        return;
    }
    let copy = match steal_fd(pid, fd) {
        Ok(c) => c,
        Err(e) => {
            errs.push(format!("{what}: pidfd_getfd: {e}"));
            return;
        }
    };
    match &slot.probe {
        Probe::Socket { ty, .. } => {
            let mut v: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: v and len are valid for getsockopt.
            let r = unsafe {
                libc::getsockopt(
                    copy.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_TYPE,
                    (&mut v as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            if r < 0 {
                errs.push(format!(
                    "{what}: getsockopt(SO_TYPE): {}",
                    errno_name(last_errno())
                ));
            } else if v != *ty {
                errs.push(format!(
                    "{what}: socket type {} ({v}), planned {}",
                    ty_name(v),
                    ty_name(*ty)
                ));
            }
            let mut dom: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: as above.
            unsafe {
                libc::getsockopt(
                    copy.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_DOMAIN,
                    (&mut dom as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            if dom != libc::AF_UNIX {
                errs.push(format!("{what}: socket domain {dom}, planned AF_UNIX"));
            }
        }
        _ if !stopped => {}
        Probe::Pipe { cap, data } => {
            if let Some(c) = cap {
                // SAFETY: plain fcntl.
                let got = unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_GETPIPE_SZ) };
                if got as i64 != *c as i64 {
                    errs.push(format!(
                        "{what}: F_GETPIPE_SZ = {got}, planned capacity {c}"
                    ));
                }
            }
            match fionread(&copy) {
                Ok(n) if n == data.len() as i64 => {}
                r => errs.push(format!(
                    "{what}: FIONREAD = {r:?}, planned {} buffered bytes",
                    data.len()
                )),
            }
            if slot.flags & 3 == 0 && !data.is_empty() {
                match pipe_peek(&copy, data.len()) {
                    Ok(b) if &b == data => {}
                    Ok(b) => errs.push(format!(
                        "{what}: buffered bytes are {}, planned {}",
                        show_bytes(&b),
                        show_bytes(data)
                    )),
                    Err(e) => errs.push(format!("{what}: {e}")),
                }
            }
        }
        Probe::Eventfd { count, semaphore } => {
            match fdinfo_field(pid, fd, "eventfd-count")
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            {
                Some(c) if c == *count => {}
                c => errs.push(format!("{what}: eventfd-count {c:?}, planned {count}")),
            }
            if let Some(s) = fdinfo_field(pid, fd, "eventfd-semaphore") {
                if (s == "1") != *semaphore {
                    errs.push(format!(
                        "{what}: eventfd-semaphore {s}, planned {}",
                        *semaphore as u8
                    ));
                }
            }
        }
        Probe::Memfd { content, seals } => {
            // SAFETY: all-zero stat is valid; fstat fills it.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: st is writable.
            if unsafe { libc::fstat(copy.as_raw_fd(), &mut st) } < 0 {
                errs.push(format!("{what}: fstat: {}", errno_name(last_errno())));
            } else if st.st_size as u64 != content.len() as u64 {
                errs.push(format!(
                    "{what}: size {}, planned {}",
                    st.st_size,
                    content.len()
                ));
            }
            let mut buf = vec![0u8; content.len() + 16];
            let mut got = 0usize;
            while got < buf.len() {
                // SAFETY: buf is writable from got.
                let k = unsafe {
                    libc::pread(
                        copy.as_raw_fd(),
                        buf[got..].as_mut_ptr().cast(),
                        buf.len() - got,
                        got as libc::off_t,
                    )
                };
                if k <= 0 {
                    break;
                }
                got += k as usize;
            }
            buf.truncate(got);
            if &buf != content {
                errs.push(format!(
                    "{what}: contents {}, planned {}",
                    show_bytes(&buf),
                    show_bytes(content)
                ));
            }
            // SAFETY: plain fcntl.
            let s = unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_GET_SEALS) };
            let ok = match seals {
                Some(want) => s == *want,
                None => s == 0 || s == F_SEAL_SEAL,
            };
            if !ok {
                errs.push(format!(
                    "{what}: F_GET_SEALS = {s:#x}, planned {}",
                    seals.map_or("none (0, or F_SEAL_SEAL)".to_string(), |w| format!(
                        "{w:#x}"
                    ))
                ));
            }
        }
        _ => {}
    }
}

/// A socketpair's ends: a datagram each way between the planned ends; a planned end whose
/// peer is planned nowhere must find the peer gone.
fn probe_pair(
    obj: u32,
    ty: i32,
    a: Option<(u16, i32, u32)>,
    b: Option<(u16, i32, u32)>,
    a_planned: bool,
    b_planned: bool,
    errs: &mut Vec<String>,
) {
    let send = |fd: &OwnedFd, msg: &[u8]| -> Result<(), i32> {
        // SAFETY: msg readable.
        let n = unsafe {
            libc::send(
                fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            Err(last_errno())
        } else {
            Ok(())
        }
    };
    let recv = |fd: &OwnedFd| -> Result<Vec<u8>, i32> {
        let mut b = vec![0u8; 256];
        // SAFETY: b writable.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                b.as_mut_ptr().cast(),
                b.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            Err(last_errno())
        } else {
            b.truncate(n as usize);
            Ok(b)
        }
    };
    let get = |t: (u16, i32, u32)| {
        steal_fd(t.1, t.2).map_err(|e| {
            format!(
                "socketpair {obj}: task {} fd {}: pidfd_getfd: {e}",
                t.0, t.2
            )
        })
    };
    match (a, b) {
        (Some(ta), Some(tb)) => {
            let (ca, cb) = match (get(ta), get(tb)) {
                (Ok(x), Ok(y)) => (x, y),
                (Err(e), _) | (_, Err(e)) => {
                    errs.push(e);
                    return;
                }
            };
            for (from, to, cf, ct) in [(ta, tb, &ca, &cb), (tb, ta, &cb, &ca)] {
                let msg = format!("probe {obj} {} {}", from.2, to.2).into_bytes();
                if let Err(e) = send(cf, &msg) {
                    errs.push(format!(
                        "socketpair {obj}: send on task {} fd {}: {}",
                        from.0,
                        from.2,
                        errno_name(e)
                    ));
                    continue;
                }
                match recv(ct) {
                    Ok(m) if m == msg => {}
                    r => errs.push(format!(
                        "socketpair {obj}: what task {} fd {} sent must arrive at task {} fd {} (its peer), got {:?}",
                        from.0,
                        from.2,
                        to.0,
                        to.2,
                        r.map(|m| String::from_utf8_lossy(&m).into_owned())
                    )),
                }
            }
        }
        (Some(t), None) | (None, Some(t)) => {
            let other_planned = if a.is_some() { b_planned } else { a_planned };
            if other_planned {
                return; // the missing end is already reported
            }
            let c = match get(t) {
                Ok(c) => c,
                Err(e) => {
                    errs.push(e);
                    return;
                }
            };
            match send(&c, b"probe") {
                Err(e) if e == libc::EPIPE || e == libc::ECONNREFUSED || e == libc::ECONNRESET => {}
                r => errs.push(format!(
                    "socketpair {obj}: the end at task {} fd {} must have no peer (its other end is planned nowhere), but send gave {:?}",
                    t.0,
                    t.2,
                    r.map_err(errno_name)
                )),
            }
            if ty != libc::SOCK_DGRAM {
                match recv(&c) {
                    Ok(m) if m.is_empty() => {}
                    r => errs.push(format!(
                        "socketpair {obj}: the end at task {} fd {} must read EOF (no peer), got {:?}",
                        t.0,
                        t.2,
                        r.map_err(errno_name)
                    )),
                }
            }
        }
        (None, None) => {}
    }
}

/// An object's end: (object id, end).
type EndKey = (u32, u8);
/// One fd of a task: (task id, pid, fd).
type TaskFd = (u16, i32, u32);

/// The kernel checker. Returns every problem found (empty: the tables are as planned).
///
/// 1. /proc/PID/fd holds exactly the planned fds (plus `keep`);
/// 2. kcmp(KCMP_FILE) == 0 within each (object, end), != 0 across them: each fd against one
///    representative, the representatives sorted by kcmp order and neighbours compared;
/// 3. fdinfo: pos, status flags, FD_CLOEXEC; readlink names the planned path / kind;
/// 4. the ends and reopens of one pipe are one inode, different pipes different inodes;
/// 5. per (object, end), on one fd: the object's probe (see [`Probe`]), and for each
///    socketpair whether its ends are each other's peers.
pub fn check_tables(exp: &Expect, pids: &BTreeMap<u16, i32>, opts: &CheckOpts) -> Vec<String> {
    let mut errs = Vec::new();
    // Per (object, end): its fds as (task, pid, fd).
    let mut groups: BTreeMap<EndKey, Vec<TaskFd>> = BTreeMap::new();
    let mut group_slot: BTreeMap<(u32, u8), Slot> = BTreeMap::new();
    // ident → (readlink, task, fd) of its first fd.
    let mut idents: BTreeMap<u32, (String, u16, u32)> = BTreeMap::new();
    for (&task, fds) in exp {
        let Some(&pid) = pids.get(&task) else {
            errs.push(format!("task {task}: no pid"));
            continue;
        };
        if opts.stopped {
            match proc_state(pid) {
                Some('T') | Some('t') => {}
                s => errs.push(format!(
                    "task {task} (pid {pid}): state {s:?}, expected stopped (T)"
                )),
            }
        }
        let want: BTreeSet<u32> = fds
            .iter()
            .filter(|(_, s)| !(opts.after_exec && s.cloexec))
            .map(|(&fd, _)| fd)
            .chain(opts.keep.iter().copied())
            .collect();
        let have = match list_fds(pid) {
            Ok(h) => h,
            Err(e) => {
                errs.push(format!(
                    "task {task} (pid {pid}): cannot list /proc/{pid}/fd: {e}"
                ));
                continue;
            }
        };
        let missing: Vec<_> = want.difference(&have).collect();
        let extra: Vec<_> = have.difference(&want).collect();
        if !missing.is_empty() {
            errs.push(format!(
                "task {task} (pid {pid}): {} planned fds missing: {}",
                missing.len(),
                first(&missing, 20)
            ));
        }
        if !extra.is_empty() {
            let shown: Vec<String> = extra
                .iter()
                .take(20)
                .map(|&&fd| format!("{fd} -> {}", fd_target(pid, fd)))
                .collect();
            errs.push(format!(
                "task {task} (pid {pid}): {} unplanned fds open: {}",
                extra.len(),
                shown.join(", ")
            ));
        }
        for (&fd, slot) in fds {
            if !have.contains(&fd) || (opts.after_exec && slot.cloexec) {
                continue;
            }
            groups
                .entry((slot.obj, slot.end))
                .or_default()
                .push((task, pid, fd));
            group_slot
                .entry((slot.obj, slot.end))
                .or_insert_with(|| slot.clone());
            let what = format!(
                "task {task} fd {fd} ({} {} end {})",
                slot.kind, slot.obj, slot.end
            );
            let raw = std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                .map(|p| p.as_os_str().as_bytes().to_vec());
            let target = fd_target(pid, fd);
            let link_ok = match (&slot.link, &raw) {
                (_, Err(_)) => false,
                (Link::Path(p), Ok(r)) => r.as_slice() == p.as_os_str().as_bytes(),
                (Link::Prefix(pre), Ok(r)) => r.starts_with(pre.as_bytes()),
                (Link::Exact(e), Ok(r)) => r == e,
                (Link::Any, Ok(_)) => true,
            };
            if !link_ok {
                let planned = match &slot.link {
                    Link::Path(p) => p.display().to_string(),
                    Link::Prefix(pre) => match pre.as_str() {
                        "pipe:[" => "a pipe (pipe:[...])".to_string(),
                        "socket:[" => "a socket (socket:[...])".to_string(),
                        _ => format!("{pre}...]"),
                    },
                    Link::Exact(e) => String::from_utf8_lossy(e).into_owned(),
                    Link::Any => "anything".into(),
                };
                errs.push(format!("{what}: links to {target}, planned {planned}"));
            }
            if let Some(id) = slot.ident {
                match idents.get(&id) {
                    None => {
                        idents.insert(id, (target.clone(), task, fd));
                    }
                    Some((t0, task0, fd0)) if *t0 != target => errs.push(format!(
                        "{what}: links to {target}, but task {task0} fd {fd0} of the same pipe links to {t0}: they must be one pipe"
                    )),
                    _ => {}
                }
            }
            match fdinfo(pid, fd) {
                Err(e) => errs.push(format!("{what}: fdinfo: {e}")),
                Ok((pos, flags)) => {
                    let ce = flags & O_CLOEXEC != 0;
                    if ce != slot.cloexec {
                        errs.push(format!(
                            "{what}: FD_CLOEXEC is {ce}, planned {}",
                            slot.cloexec
                        ));
                    }
                    let status = flags & !(O_CLOEXEC | O_LARGEFILE);
                    if status != slot.flags {
                        errs.push(format!(
                            "{what}: status flags {}, planned {}",
                            flag_names(status),
                            flag_names(slot.flags)
                        ));
                    }
                    if let (Some(p), false) = (slot.pos, opts.no_pos) {
                        if pos != p {
                            errs.push(format!("{what}: pos {pos}, planned {p}"));
                        }
                    }
                }
            }
        }
    }
    // Different pipes are different inodes.
    let mut by_target: BTreeMap<&str, u32> = BTreeMap::new();
    for (&id, (t, _, _)) in &idents {
        if let Some(prev) = by_target.insert(t.as_str(), id) {
            errs.push(format!(
                "pipes {prev} and {id} are the same pipe ({t}); they must be two"
            ));
        }
    }
    // Sharing: every fd of a group against its representative.
    let mut reps: Vec<(EndKey, TaskFd)> = Vec::new();
    for (&key, members) in &groups {
        let rep = members[0];
        for &m in &members[1..] {
            match kcmp_file(rep.1, rep.2, m.1, m.2) {
                Ok(0) => {}
                r => errs.push(format!(
                    "object {} end {}: task {} fd {} and task {} fd {} must share one description, kcmp = {r:?}",
                    key.0, key.1, rep.0, rep.2, m.0, m.2
                )),
            }
        }
        reps.push((key, rep));
    }
    // Probes, on each group's representative.
    let probe = opts.stopped && !opts.no_probe && !opts.after_exec;
    for (key, rep) in &reps {
        let slot = &group_slot[key];
        let what = format!(
            "task {} fd {} ({} {} end {})",
            rep.0, rep.2, slot.kind, slot.obj, slot.end
        );
        probe_one(slot, &what, rep.1, rep.2, probe, &mut errs);
    }
    if probe {
        // Socketpairs: the two ends are peers. Which ends are planned at all comes from exp.
        let mut planned: BTreeSet<(u32, u8)> = BTreeSet::new();
        for fds in exp.values() {
            for s in fds.values() {
                planned.insert((s.obj, s.end));
            }
        }
        let mut pairs: BTreeMap<u32, i32> = BTreeMap::new();
        for (key, slot) in &group_slot {
            if let Probe::Socket { ty, .. } = slot.probe {
                pairs.insert(key.0, ty);
            }
        }
        for (obj, ty) in pairs {
            let rep = |end: u8| groups.get(&(obj, end)).map(|m| m[0]);
            probe_pair(
                obj,
                ty,
                rep(0),
                rep(1),
                planned.contains(&(obj, 0)),
                planned.contains(&(obj, 1)),
                &mut errs,
            );
        }
    }
    // Distinctness: sort representatives by kcmp order; equal ones end up adjacent.
    let mut kerr = None;
    reps.sort_by(|a, b| match kcmp_file(a.1 .1, a.1 .2, b.1 .1, b.1 .2) {
        Ok(0) => std::cmp::Ordering::Equal,
        Ok(1) => std::cmp::Ordering::Less,
        Ok(2) => std::cmp::Ordering::Greater,
        r => {
            kerr = Some(format!("kcmp failed: {r:?}"));
            std::cmp::Ordering::Equal
        }
    });
    errs.extend(kerr);
    for w in reps.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if let Ok(0) = kcmp_file(a.1 .1, a.1 .2, b.1 .1, b.1 .2) {
            errs.push(format!(
                "object {} end {} (task {} fd {}) and object {} end {} (task {} fd {}) share one description; they must not",
                a.0 .0, a.0 .1, a.1 .0, a.1 .2, b.0 .0, b.0 .1, b.1 .0, b.1 .2
            ));
        }
    }
    errs
}

fn first<T: std::fmt::Debug>(v: &[T], n: usize) -> String {
    if v.len() <= n {
        format!("{v:?}")
    } else {
        format!("{:?} ...", &v[..n])
    }
}

fn panic_errs(what: &str, errs: Vec<String>) {
    if !errs.is_empty() {
        let n = errs.len();
        let shown: Vec<_> = errs.into_iter().take(40).collect();
        panic!("{what} failed ({n} problems):\n  {}", shown.join("\n  "));
    }
}

/// Panics with every problem [`check_tables`] finds.
pub fn assert_tables(exp: &Expect, pids: &BTreeMap<u16, i32>, opts: &CheckOpts) {
    panic_errs("kernel check", check_tables(exp, pids, opts));
}

/// [`check_tables`] of the plan's layout, plus what only the plan knows: each task's
/// RLIMIT_NOFILE (nofile=, soft and hard), and fd-table sharing (kcmp(KCMP_FILES) == 0 within
/// a files= group, != 0 between tasks of different tables).
pub fn check_plan(plan: &Plan, pids: &BTreeMap<u16, i32>, opts: &CheckOpts) -> Vec<String> {
    let mut errs = check_tables(&plan.expect(), pids, opts);
    for t in &plan.tasks {
        let (Some(n), Some(&pid)) = (t.nofile, pids.get(&t.id)) else {
            continue;
        };
        match proc_nofile(pid) {
            Ok((s, h)) if s == n && h == n => {}
            r => errs.push(format!(
                "task {} (pid {pid}): Max open files {r:?}, planned nofile={n} (soft and hard)",
                t.id
            )),
        }
    }
    let ids: Vec<(u16, i32, u16)> = plan
        .tasks
        .iter()
        .filter_map(|t| pids.get(&t.id).map(|&p| (t.id, p, plan.table_owner(t.id))))
        .collect();
    for (i, a) in ids.iter().enumerate() {
        for b in &ids[i + 1..] {
            let same = a.2 == b.2;
            match kcmp_files(a.1, b.1) {
                Ok(0) if same => {}
                Ok(r) if !same && r != 0 => {}
                r => errs.push(format!(
                    "tasks {} (pid {}) and {} (pid {}): kcmp(KCMP_FILES) = {r:?}; they must {}",
                    a.0,
                    a.1,
                    b.0,
                    b.1,
                    if same {
                        format!("share one fd table (owner task {})", a.2)
                    } else {
                        "have separate fd tables".to_string()
                    }
                )),
            }
        }
    }
    errs
}

/// Panics with every problem [`check_plan`] finds.
pub fn assert_plan(plan: &Plan, pids: &BTreeMap<u16, i32>, opts: &CheckOpts) {
    panic_errs("kernel check", check_plan(plan, pids, opts));
}

/// Waits until `pid` is gone or a zombie.
pub fn wait_gone(pid: i32, cap: Duration) -> bool {
    let t = Instant::now();
    loop {
        match proc_state(pid) {
            None | Some('Z') | Some('X') => return true,
            _ if t.elapsed() > cap => return false,
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Waits for a child with a cap; None when it is still running.
pub fn wait_timeout(child: &mut Child, cap: Duration) -> Option<ExitStatus> {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return Some(s);
        }
        if t.elapsed() > cap {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn kill(pid: i32, sig: i32) {
    // SAFETY: plain syscall on a pid this test started (directly or through fdslot).
    unsafe {
        libc::kill(pid, sig);
    }
}

// ---------------------------------------------------------------------------------------------
// Output capture
// ---------------------------------------------------------------------------------------------

/// Collects everything a pipe yields, in a thread.
#[derive(Clone, Default)]
pub struct Capture {
    buf: Arc<Mutex<Vec<u8>>>,
    done: Arc<Mutex<bool>>,
}

impl Capture {
    pub fn start(mut r: impl Read + Send + 'static) -> Capture {
        let c = Capture::default();
        let c2 = c.clone();
        std::thread::spawn(move || {
            let mut b = [0u8; 4096];
            loop {
                match r.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => c2.buf.lock().unwrap().extend_from_slice(&b[..n]),
                }
            }
            *c2.done.lock().unwrap() = true;
        });
        c
    }
    /// What came so far, after waiting up to `cap` for EOF.
    pub fn text(&self, cap: Duration) -> String {
        let t = Instant::now();
        while !*self.done.lock().unwrap() && t.elapsed() < cap {
            std::thread::sleep(Duration::from_millis(5));
        }
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// fdslot run --stop
// ---------------------------------------------------------------------------------------------

/// How a fdslot process ended.
#[derive(Debug)]
pub struct Output {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub note: String,
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status {:?} after {:.2?}{}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.status,
            self.elapsed,
            if self.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.note)
            },
            self.stdout,
            self.stderr
        )
    }
}

/// A `fdslot run PLAN --stop ARGS...` whose tasks are all stopped.
pub struct Running {
    child: Option<Child>,
    pgid: i32,
    /// task id → pid, from the `task T pid P` lines.
    pub pids: BTreeMap<u16, i32>,
    /// The task ids in the order run printed them.
    pub order: Vec<u16>,
    lines: mpsc::Receiver<Option<String>>,
    stderr: Capture,
    start: Instant,
}

/// `fdslot run PLAN --stop ARGS...` (stdin /dev/null), ready for [`start_stopped`].
pub fn run_stop_cmd(plan: &Path, args: &[&str]) -> Command {
    let mut c = fdslot();
    c.arg("run").arg(plan).arg("--stop").args(args);
    c
}

/// Starts `cmd` (a `run --stop`) in its own process group and reads its stdout until `ready`.
/// Err: run ended (or hung past [`CAP`] and was killed) without `ready`.
pub fn start_stopped(mut cmd: Command) -> Result<Running, Output> {
    let start = Instant::now();
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().expect("spawn fdslot");
    let pgid = child.id() as i32;
    let stderr = Capture::start(child.stderr.take().unwrap());
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            match l {
                Ok(l) => {
                    if tx.send(Some(l)).is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = tx.send(None);
    });
    let mut pids = BTreeMap::new();
    let mut order = Vec::new();
    let mut stdout = String::new();
    let deadline = start + CAP;
    let fail = |mut child: Child, stdout: String, note: String, pids: &BTreeMap<u16, i32>| {
        for &p in pids.values() {
            kill(p, libc::SIGKILL);
        }
        kill(-pgid, libc::SIGKILL);
        let status = wait_timeout(&mut child, Duration::from_secs(5));
        Output {
            status,
            stdout,
            stderr: stderr.text(Duration::from_secs(2)),
            elapsed: start.elapsed(),
            note,
        }
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Some(l)) => {
                stdout.push_str(&l);
                stdout.push('\n');
                if l == "ready" {
                    break;
                }
                let w: Vec<&str> = l.split(' ').collect();
                match (
                    w.as_slice(),
                    w.get(1).and_then(|t| t.parse::<u16>().ok()),
                    w.get(3).and_then(|p| p.parse::<i32>().ok()),
                ) {
                    (["task", _, "pid", _], Some(t), Some(p)) if p > 0 => {
                        if pids.insert(t, p).is_some() {
                            return Err(fail(
                                child,
                                stdout,
                                format!("task {t} printed twice"),
                                &pids,
                            ));
                        }
                        order.push(t);
                    }
                    _ => {
                        return Err(fail(
                            child,
                            stdout,
                            format!("unexpected stdout line {l:?}"),
                            &pids,
                        ))
                    }
                }
            }
            Ok(None) => {
                // EOF before ready: run has ended (or closed stdout).
                let status = wait_timeout(&mut child, Duration::from_secs(10));
                let note = if status.is_none() {
                    "stdout closed without ready; killed".to_string()
                } else {
                    String::new()
                };
                if status.is_none() {
                    return Err(fail(child, stdout, note, &pids));
                }
                for &p in pids.values() {
                    kill(p, libc::SIGKILL);
                }
                return Err(Output {
                    status,
                    stdout,
                    stderr: stderr.text(Duration::from_secs(2)),
                    elapsed: start.elapsed(),
                    note,
                });
            }
            Err(_) => {
                return Err(fail(
                    child,
                    stdout,
                    format!("no 'ready' within {CAP:?}; killed"),
                    &pids,
                ))
            }
        }
    }
    Ok(Running {
        child: Some(child),
        pgid,
        pids,
        order,
        lines: rx,
        stderr,
        start,
    })
}

/// [`start_stopped`] of `run PLAN --stop ARGS`, panicking when it does not get to `ready`.
pub fn run_stop(plan: &Path, args: &[&str]) -> Running {
    match start_stopped(run_stop_cmd(plan, args)) {
        Ok(r) => r,
        Err(o) => panic!(
            "fdslot run {} --stop {} did not get to ready: {o}",
            plan.display(),
            args.join(" ")
        ),
    }
}

impl Running {
    pub fn pid(&self, task: u16) -> i32 {
        self.pids[&task]
    }

    /// The pid of `fdslot run` itself.
    pub fn run_pid(&self) -> i32 {
        self.pgid
    }

    /// Each task is a child of its parent= task, or of run when it has none.
    pub fn assert_parents(&self, plan: &Plan) {
        let bad = self.parent_errors(plan);
        assert!(bad.is_empty(), "process tree:\n  {}", bad.join("\n  "));
    }

    /// What [`Running::assert_parents`] checks, as a list of problems.
    pub fn parent_errors(&self, plan: &Plan) -> Vec<String> {
        let mut bad = Vec::new();
        for t in &plan.tasks {
            let want = match t.parent {
                Some(p) => self.pids.get(&p).copied().unwrap_or(-1),
                None => self.run_pid(),
            };
            let Some(&pid) = self.pids.get(&t.id) else {
                bad.push(format!("task {}: no pid printed", t.id));
                continue;
            };
            let got = proc_ppid(pid);
            if got != Some(want) {
                bad.push(format!(
                    "task {} (pid {}): parent pid {got:?}, want {want} ({})",
                    t.id,
                    pid,
                    t.parent.map_or("run".to_string(), |p| format!("task {p}"))
                ));
            }
        }
        bad
    }

    /// SIGCONT to every task.
    pub fn resume(&self) {
        for &p in self.pids.values() {
            kill(p, libc::SIGCONT);
        }
    }

    /// Waits for run to exit by itself (after the tasks ended), up to `cap`.
    pub fn wait(mut self, cap: Duration) -> Output {
        let mut child = self.child.take().unwrap();
        let status = wait_timeout(&mut child, cap);
        let mut note = String::new();
        if status.is_none() {
            note = format!("run did not exit within {cap:?}; killed");
            for &p in self.pids.values() {
                kill(p, libc::SIGKILL);
            }
            kill(-self.pgid, libc::SIGKILL);
            let _ = wait_timeout(&mut child, Duration::from_secs(5));
        }
        let mut stdout = String::new();
        while let Ok(Some(l)) = self.lines.try_recv() {
            stdout.push_str(&l);
            stdout.push('\n');
        }
        for &p in self.pids.values() {
            if !wait_gone(p, Duration::from_secs(5)) {
                note.push_str(&format!("; pid {p} still alive"));
                kill(p, libc::SIGKILL);
            }
        }
        Output {
            status,
            stdout,
            stderr: self.stderr.text(Duration::from_secs(2)),
            elapsed: self.start.elapsed(),
            note,
        }
    }

    /// SIGKILLs every task, then waits for run to exit; run must exit 0 (contract: it waits
    /// for its tasks to end, then exits 0), print nothing more, and leave no task behind.
    pub fn finish(self) -> Output {
        for &p in self.pids.values() {
            kill(p, libc::SIGKILL);
        }
        let o = self.wait(CAP);
        assert!(o.note.is_empty(), "after killing the tasks: {o}");
        assert_eq!(
            o.code(),
            Some(0),
            "run must exit 0 once its tasks ended: {o}"
        );
        assert_eq!(o.stdout, "", "run printed more after ready: {o}");
        o
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            for &p in self.pids.values() {
                kill(p, libc::SIGKILL);
            }
            kill(-self.pgid, libc::SIGKILL);
            let _ = wait_timeout(&mut c, Duration::from_secs(5));
        }
    }
}

/// Runs a plan with `--stop ARGS`, checks the tables with the kernel checker, then kills the
/// tasks and checks that run exits 0.
pub fn run_and_check(plan: &Plan, dir: &TmpDir, args: &[&str]) {
    if let Err(e) = try_run_and_check(plan, dir, args) {
        panic!("{e}");
    }
}

/// [`run_and_check`] returning every problem as one message (with the plan text) instead of
/// panicking.
pub fn try_run_and_check(plan: &Plan, dir: &TmpDir, args: &[&str]) -> Result<(), String> {
    let text = plan.text();
    let path = dir.plan(&text);
    let r = start_stopped(run_stop_cmd(&path, args)).map_err(|o| {
        format!(
            "fdslot run PLAN --stop {} did not get to ready: {o}\n--- plan ---\n{text}",
            args.join(" ")
        )
    })?;
    let mut errs = Vec::new();
    if r.order != plan.task_ids() {
        errs.push(format!(
            "run must print the tasks in plan order: printed {:?}",
            r.order
        ));
    }
    errs.extend(check_plan(
        plan,
        &r.pids,
        &CheckOpts {
            stopped: true,
            ..Default::default()
        },
    ));
    errs.extend(r.parent_errors(plan));
    for &p in r.pids.values() {
        kill(p, libc::SIGKILL);
    }
    let o = r.wait(CAP);
    if !o.note.is_empty() || o.code() != Some(0) || !o.stdout.is_empty() {
        errs.push(format!(
            "after killing the tasks, run must exit 0 and print nothing more: {o}"
        ));
    }
    if errs.is_empty() {
        return Ok(());
    }
    let n = errs.len();
    let shown: Vec<_> = errs.into_iter().take(40).collect();
    Err(format!(
        "kernel check of `fdslot run PLAN --stop {}` failed ({n} problems):\n  {}\n--- plan ---\n{text}",
        args.join(" "),
        shown.join("\n  ")
    ))
}

/// `--batch N` args for a form: None is the default.
pub fn batch_args(batch: Option<u32>) -> Vec<String> {
    match batch {
        Some(n) => vec!["--batch".into(), n.to_string()],
        None => vec![],
    }
}

pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(|s| s.as_str()).collect()
}

/// Runs a fdslot command to completion with a cap.
pub fn output(mut cmd: Command) -> Output {
    let start = Instant::now();
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().expect("spawn fdslot");
    let so = Capture::start(child.stdout.take().unwrap());
    let se = Capture::start(child.stderr.take().unwrap());
    let mut status = wait_timeout(&mut child, CAP);
    let mut note = String::new();
    if status.is_none() {
        note = format!("did not exit within {CAP:?}; killed");
        kill(-(child.id() as i32), libc::SIGKILL);
        status = wait_timeout(&mut child, Duration::from_secs(5));
    }
    Output {
        status,
        stdout: so.text(Duration::from_secs(2)),
        stderr: se.text(Duration::from_secs(2)),
        elapsed: start.elapsed(),
        note,
    }
}

// ---------------------------------------------------------------------------------------------
// fdslot restore, the sync-fd protocol
// ---------------------------------------------------------------------------------------------

/// A process this test started, killed and reaped on drop.
pub struct Spawned {
    pub child: Child,
    pub stdout: Capture,
    pub stderr: Capture,
    pub start: Instant,
}

impl Spawned {
    pub fn spawn(mut cmd: Command) -> Spawned {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn");
        let stdout = Capture::start(child.stdout.take().unwrap());
        let stderr = Capture::start(child.stderr.take().unwrap());
        Spawned {
            child,
            stdout,
            stderr,
            start: Instant::now(),
        }
    }
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    /// Waits up to `cap` for exit (killing it past that) and returns what it did.
    pub fn wait(&mut self, cap: Duration) -> Output {
        let mut status = wait_timeout(&mut self.child, cap);
        let mut note = String::new();
        if status.is_none() {
            note = format!("did not exit within {cap:?}; killed");
            let _ = self.child.kill();
            status = wait_timeout(&mut self.child, Duration::from_secs(5));
        }
        Output {
            status,
            stdout: self.stdout.text(Duration::from_secs(1)),
            stderr: self.stderr.text(Duration::from_secs(1)),
            elapsed: self.start.elapsed(),
            note,
        }
    }
    /// Kills it and returns what it printed.
    pub fn kill(&mut self) -> Output {
        let _ = self.child.kill();
        self.wait(Duration::from_secs(5))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = wait_timeout(&mut self.child, Duration::from_secs(5));
        }
    }
}

/// `fdslot restore PLAN TASK --session S ARGS...` (add `--` and PROG yourself).
pub fn restore_cmd(plan: &Path, task: u16, session: &str, args: &[&str]) -> Command {
    let mut c = fdslot();
    c.arg("restore")
        .arg(plan)
        .arg(task.to_string())
        .arg("--session")
        .arg(session)
        .args(args);
    c
}

/// A SOCK_SEQPACKET socketpair, both ends close-on-exec.
pub fn seqpacket_pair() -> (OwnedFd, OwnedFd) {
    let mut sv = [0; 2];
    // SAFETY: sv has room for two fds.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            sv.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0, "socketpair: {}", io::Error::last_os_error());
    // SAFETY: fresh fds we own.
    unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) }
}

/// Makes `fd` appear as `target` (without FD_CLOEXEC) in the child started by `cmd`.
pub fn pass_fd(cmd: &mut Command, fd: RawFd, target: RawFd) {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if fd == target {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(fd, target) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Spawns a restore command with its end of a fresh seqpacket pair as fd `sync_fd`
/// (`--sync-fd sync_fd` must be in `cmd` already). Returns the process and the parent's end.
pub fn spawn_sync(mut cmd: Command, sync_fd: RawFd) -> (Spawned, OwnedFd) {
    let (mine, theirs) = seqpacket_pair();
    pass_fd(&mut cmd, theirs.as_raw_fd(), sync_fd);
    let s = Spawned::spawn(cmd);
    drop(theirs);
    (s, mine)
}

/// One packet from `fd`: Ok(Some(bytes)), Ok(None) on EOF, Err on timeout or error.
pub fn recv_packet(fd: &OwnedFd, cap: Duration) -> Result<Option<Vec<u8>>, String> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, cap.as_millis() as i32) };
    if r == 0 {
        return Err(format!("no message within {cap:?}"));
    }
    if r < 0 {
        return Err(format!("poll: {}", io::Error::last_os_error()));
    }
    let mut buf = vec![0u8; 65536];
    // SAFETY: buf is writable for its length.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ECONNRESET) {
            return Ok(None);
        }
        return Err(format!("recv: {e}"));
    }
    if n == 0 {
        return Ok(None);
    }
    buf.truncate(n as usize);
    Ok(Some(buf))
}

/// Sends one packet (errors are returned: the task may have died).
pub fn send_packet(fd: &OwnedFd, msg: &[u8]) -> io::Result<()> {
    // SAFETY: msg is readable for its length.
    let n = unsafe {
        libc::send(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Waits until `pid` runs `comm` (has exec'd it), up to `cap`.
pub fn wait_comm(pid: i32, comm: &str, cap: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < cap {
        if proc_comm(pid).as_deref() == Some(comm) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Waits until `pid` has exec'd /bin/sleep and sits in nanosleep (so its dynamic loader is
/// done opening and closing libraries), up to `cap`.
pub fn wait_sleeping(pid: i32, cap: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < cap {
        if matches!(proc_state(pid), None | Some('Z') | Some('X')) {
            return false; // it ended
        }
        if proc_comm(pid).as_deref() == Some("sleep") {
            let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
            let sys = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
            let nr = sys.split(' ').next().unwrap_or("");
            if wchan.contains("nanosleep")
                || (cfg!(target_arch = "x86_64") && (nr == "35" || nr == "230"))
            {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// After exec of `comm`, waits (up to `cap`) until the fd set settles on `want` (the dynamic
/// loader opens and closes files); returns whether it did.
pub fn wait_fds(pid: i32, want: &BTreeSet<u32>, cap: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < cap {
        if list_fds(pid).ok().as_ref() == Some(want) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// The fds a task keeps across exec: its planned non-cloexec ones (plus keep).
pub fn exec_fds(exp: &Expect, task: u16, keep: &[u32]) -> BTreeSet<u32> {
    exp[&task]
        .iter()
        .filter(|(_, s)| !s.cloexec)
        .map(|(&fd, _)| fd)
        .chain(keep.iter().copied())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Session names and rival sockets
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct Rx {
    pub task: u16,
    pub opener: u16,
    pub batch: u32,
    pub slot: u32,
    pub name: String,
}

#[derive(Clone, Debug, Default)]
pub struct Names {
    pub home: BTreeMap<u16, String>,
    /// Lines of kinds the contract does not list (`ctl T NAME`, ...), kept verbatim.
    pub other: Vec<String>,
    pub rx: Vec<Rx>,
}

/// `fdslot names PLAN --session S ARGS`, parsed (panics on any other output).
pub fn names(plan: &Path, session: &str, args: &[&str]) -> Names {
    let mut c = fdslot();
    c.arg("names")
        .arg(plan)
        .arg("--session")
        .arg(session)
        .args(args);
    let o = output(c);
    assert_eq!(o.code(), Some(0), "fdslot names failed: {o}");
    let mut n = Names::default();
    for l in o.stdout.lines() {
        let w: Vec<&str> = l.split(' ').collect();
        fn num<T: std::str::FromStr>(s: &str, l: &str, o: &Output) -> T {
            s.parse().unwrap_or_else(|_| {
                panic!("bad number {s:?} in line from fdslot names: {l:?}\n{o}")
            })
        }
        match w.as_slice() {
            ["home", t, name] => {
                if n.home.insert(num(t, l, &o), name.to_string()).is_some() {
                    panic!("home of a task printed twice: {l:?}\n{o}");
                }
            }
            ["rx", t, op, b, slot, name] => n.rx.push(Rx {
                task: num(t, l, &o),
                opener: num(op, l, &o),
                batch: num(b, l, &o),
                slot: num(slot, l, &o),
                name: name.to_string(),
            }),
            [kind, t, name]
                if kind.chars().all(|c| c.is_ascii_lowercase())
                    && t.parse::<u16>().is_ok()
                    && !name.is_empty() =>
            {
                n.other.push(l.to_string())
            }
            _ => panic!("bad line from fdslot names: {l:?}\n{o}"),
        }
    }
    n
}

/// An abstract AF_UNIX address for NAME (bound as "\0" + NAME).
pub fn abstract_addr(name: &str) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_un.
    let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    a.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let b = name.as_bytes();
    assert!(b.len() < a.sun_path.len(), "name too long");
    for (i, &c) in b.iter().enumerate() {
        a.sun_path[i + 1] = c as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + 1 + b.len();
    (a, len as libc::socklen_t)
}

pub fn socket(ty: i32) -> OwnedFd {
    // SAFETY: plain syscall.
    let fd = unsafe { libc::socket(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
    // SAFETY: fresh fd.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// A socket of type `ty` bound to abstract NAME (listening, for stream and seqpacket).
pub fn bind_abstract(ty: i32, name: &str) -> io::Result<OwnedFd> {
    let s = socket(ty);
    let (a, len) = abstract_addr(name);
    // SAFETY: a is a valid sockaddr_un of length len.
    if unsafe { libc::bind(s.as_raw_fd(), (&a as *const libc::sockaddr_un).cast(), len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    if ty != libc::SOCK_DGRAM {
        // SAFETY: plain syscall.
        if unsafe { libc::listen(s.as_raw_fd(), 16) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(s)
}

/// Whether a rival socket got anything: a datagram, or a connection. Ok(()) when nothing.
/// With `allow_plain`, datagrams without fds are only reported (eprintln), not refused.
pub fn rival_got_nothing(ty: i32, s: &OwnedFd, allow_plain: bool) -> Result<(), String> {
    loop {
        let mut buf = [0u8; 256];
        let (r, what) = if ty == libc::SOCK_DGRAM {
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            let mut cbuf = [0u64; 64];
            // SAFETY: all-zero msghdr is valid; its buffers outlive the call.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&cbuf);
            // SAFETY: msg is set up.
            let n = unsafe {
                libc::recvmsg(
                    s.as_raw_fd(),
                    &mut msg,
                    libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
                )
            };
            if n >= 0 {
                let mut fds = 0;
                // SAFETY: walking the control messages the kernel wrote.
                unsafe {
                    let mut c = libc::CMSG_FIRSTHDR(&msg);
                    while !c.is_null() {
                        if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS
                        {
                            let k = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                            for i in 0..k {
                                libc::close(std::ptr::read_unaligned(
                                    libc::CMSG_DATA(c).cast::<RawFd>().add(i),
                                ));
                            }
                            fds += k;
                        }
                        c = libc::CMSG_NXTHDR(&msg, c);
                    }
                }
                let what = format!(
                "rival socket (SOCK_DGRAM) received a {n}-byte datagram {:?} carrying {fds} fds (flags {:#x})",
                String::from_utf8_lossy(&buf[..n as usize]),
                msg.msg_flags
            );
                if allow_plain && fds == 0 {
                    eprintln!("note: {what}");
                    continue;
                }
                return Err(what);
            }
            (n as isize, "recvmsg")
        } else {
            // SAFETY: plain fcntl; the listener must not block accept.
            unsafe {
                let fl = libc::fcntl(s.as_raw_fd(), libc::F_GETFL);
                libc::fcntl(s.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
            }
            // SAFETY: null address is allowed.
            let fd = unsafe {
                libc::accept4(
                    s.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if fd >= 0 {
                // SAFETY: fresh fd.
                unsafe { libc::close(fd) };
            }
            (fd as isize, "accept")
        };
        if r >= 0 {
            return Err(format!(
                "rival socket ({}): {what} succeeded ({r}): it got something",
                ty_name(ty)
            ));
        }
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::EAGAIN) {
            Ok(())
        } else {
            Err(format!(
                "rival socket ({}): {what}: {e}, expected EAGAIN",
                ty_name(ty)
            ))
        };
    }
}

pub fn ty_name(ty: i32) -> &'static str {
    match ty {
        libc::SOCK_DGRAM => "SOCK_DGRAM",
        libc::SOCK_STREAM => "SOCK_STREAM",
        libc::SOCK_SEQPACKET => "SOCK_SEQPACKET",
        _ => "?",
    }
}

/// Sends one byte with SCM_RIGHTS carrying `fd` from socket `s` (connected or not) to abstract
/// NAME (None: to the connected peer).
pub fn send_fd(s: &OwnedFd, name: Option<&str>, fd: RawFd) -> io::Result<()> {
    let mut byte = [b'x'];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    // SAFETY: all-zero msghdr is valid; pointers set below stay alive for the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    let addr = name.map(abstract_addr);
    if let Some((a, len)) = &addr {
        msg.msg_name = (a as *const libc::sockaddr_un) as *mut libc::c_void;
        msg.msg_namelen = *len;
    }
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: the control buffer holds one cmsg of one fd.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd);
    }
    // SAFETY: msg is fully set up.
    let r = unsafe { libc::sendmsg(s.as_raw_fd(), &msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Connects `s` to abstract NAME.
pub fn connect_abstract(s: &OwnedFd, name: &str) -> io::Result<()> {
    let (a, len) = abstract_addr(name);
    // SAFETY: valid address.
    if unsafe { libc::connect(s.as_raw_fd(), (&a as *const libc::sockaddr_un).cast(), len) } < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Opens `path` close-on-exec (O_RDWR|O_CREAT).
pub fn open_rw(path: &Path) -> OwnedFd {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap()
        .into()
}

/// Counts per key.
pub fn count_by<K: Ord + Clone, T>(v: &[T], key: impl Fn(&T) -> K) -> BTreeMap<K, usize> {
    let mut m = BTreeMap::new();
    for x in v {
        *m.entry(key(x)).or_insert(0) += 1;
    }
    m
}

// ---------------------------------------------------------------------------------------------
// Helpers for the newer object kinds
// ---------------------------------------------------------------------------------------------

/// mkfifo(path, 0600).
pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: c is a valid C string.
    let r = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(
        r,
        0,
        "mkfifo {}: {}",
        path.display(),
        io::Error::last_os_error()
    );
}

/// A fresh pty: (master, slave path /dev/pts/N). The slave is not opened here.
pub fn pty_pair() -> (OwnedFd, PathBuf) {
    // SAFETY: plain libc calls on a fresh fd.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(m >= 0, "posix_openpt: {}", io::Error::last_os_error());
        let m = OwnedFd::from_raw_fd(m);
        assert_eq!(libc::grantpt(m.as_raw_fd()), 0, "grantpt");
        assert_eq!(libc::unlockpt(m.as_raw_fd()), 0, "unlockpt");
        let mut buf = [0 as libc::c_char; 128];
        assert_eq!(
            libc::ptsname_r(m.as_raw_fd(), buf.as_mut_ptr(), buf.len()),
            0,
            "ptsname_r"
        );
        let name = std::ffi::CStr::from_ptr(buf.as_ptr());
        (
            m,
            PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes())),
        )
    }
}

/// An AF_UNIX socketpair of type `ty`, both ends close-on-exec.
pub fn unix_pair(ty: i32) -> (OwnedFd, OwnedFd) {
    let mut sv = [0; 2];
    // SAFETY: sv has room for two fds.
    let r = unsafe { libc::socketpair(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) };
    assert_eq!(r, 0, "socketpair: {}", io::Error::last_os_error());
    // SAFETY: fresh fds we own.
    unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) }
}

/// A listening TCP socket on 127.0.0.1 (port chosen by the kernel), close-on-exec.
pub fn tcp_listener() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")
}

/// `fdslot check` of `text` must fail with exit 2 and one stderr line
/// `fdslot: PLAN line N: ...` for one of `lines`.
pub fn check_rejects_at(name: &str, text: &str, lines: &[u32]) -> Output {
    let d = TmpDir::new("rej");
    let plan = d.plan(text);
    let mut c = fdslot();
    c.arg("check").arg(&plan);
    let o = output(c);
    assert_eq!(
        o.code(),
        Some(2),
        "[{name}] check must exit 2:\n{text}\n{o}"
    );
    let got: Vec<&str> = o.stderr.lines().collect();
    let ok = got.len() == 1
        && lines.iter().any(|n| {
            let prefix = format!("fdslot: {} line {n}: ", plan.display());
            got[0].starts_with(&prefix) && got[0].len() > prefix.len()
        });
    assert!(
        ok,
        "[{name}] want one stderr line `fdslot: {} line N: ...` with N in {lines:?}; plan:\n{text}\n{o}",
        plan.display()
    );
    assert_eq!(o.stdout, "", "[{name}] nothing on stdout: {o}");
    o
}

/// `fdslot check` of `text` must succeed (exit 0, one summary line).
pub fn check_accepts(name: &str, text: &str) {
    let d = TmpDir::new("acc");
    let plan = d.plan(text);
    let mut c = fdslot();
    c.arg("check").arg(&plan);
    let o = output(c);
    assert_eq!(
        o.code(),
        Some(0),
        "[{name}] check must accept:\n{text}\n{o}"
    );
    assert_eq!(
        o.stdout.lines().count(),
        1,
        "[{name}] one summary line: {o}"
    );
}

/// Waits until every spawned task has exec'd its program (sleeping), and maps task -> pid;
/// panics with the task's output if one did not.
#[allow(dead_code)]
pub fn exec_pids(procs: &mut [(u16, Spawned)]) -> BTreeMap<u16, i32> {
    let mut pids = BTreeMap::new();
    for (t, pr) in procs.iter_mut() {
        if !wait_sleeping(pr.pid(), Duration::from_secs(15)) {
            panic!("task {t}: did not exec: {}", pr.wait(Duration::from_secs(1)));
        }
        pids.insert(*t, pr.pid());
    }
    pids
}


/// Runs `fdslot ARGS` (to its end) under `strace -f -e trace=CALLS` and returns what strace
/// logged. strace comes with `make test` (bench-deps).
pub fn strace_fdslot(calls: &str, args: &[&std::ffi::OsStr]) -> String {
    let d = TmpDir::new("strace");
    let log = d.path("strace.log");
    let st = Command::new("strace")
        .args(["-f", "-qq", "-e", &format!("trace={calls}"), "-e", "signal=none", "-o"])
        .arg(&log)
        .arg(bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("strace is needed for this test (make test installs it)");
    assert!(st.status.success(), "fdslot under strace: {}", String::from_utf8_lossy(&st.stderr));
    std::fs::read_to_string(&log).unwrap()
}

/// Makes `cmd` run as `nobody` (no capabilities: the kernel then caps the fds in flight per
/// user at RLIMIT_NOFILE, ETOOMANYREFS) with RLIMIT_NOFILE `nofile` (soft and hard).
pub fn as_nobody_with_nofile(cmd: &mut std::process::Command, nofile: u64) {
    cmd.uid(65534).gid(65534);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit { rlim_cur: nofile, rlim_max: nofile };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
