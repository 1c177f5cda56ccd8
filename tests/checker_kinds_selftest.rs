//! The kernel checker's probes for the newer kinds, without fdslot: a forked child builds a
//! known table (a pipe with buffered data and a set capacity, a reopen of its read end, socket
//! pairs, an eventfd, a sealed memfd, an inherited socket), sets RLIMIT_NOFILE and stops; the
//! checker must accept the true layout and catch each kind of wrong one.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

struct Stopped(i32);

impl Drop for Stopped {
    fn drop(&mut self) {
        kill(self.0, libc::SIGKILL);
        let mut st = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(self.0, &mut st, 0) };
    }
}

fn own(fd: RawFd) -> OwnedFd {
    assert!(fd >= 0, "{}", std::io::Error::last_os_error());
    // SAFETY: a fresh fd.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

struct Objects {
    pr: OwnedFd,
    pw: OwnedFd,
    rr: OwnedFd,
    s1a: OwnedFd,
    s1b: OwnedFd,
    s2a: OwnedFd,
    s2b: OwnedFd,
    s3a: OwnedFd,
    efd: OwnedFd,
    mfd: OwnedFd,
    data: std::path::PathBuf,
    mdata: std::path::PathBuf,
}

fn objects(d: &TmpDir) -> Objects {
    let mut p = [0; 2];
    // SAFETY: plain syscalls on fresh fds.
    unsafe {
        assert_eq!(libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC), 0);
        assert_eq!(libc::fcntl(p[0], libc::F_SETPIPE_SZ, 5000), 8192);
        assert_eq!(libc::write(p[1], b"hello".as_ptr().cast(), 5), 5);
    }
    let (pr, pw) = (own(p[0]), own(p[1]));
    let path = std::ffi::CString::new(format!("/proc/self/fd/{}", pr.as_raw_fd())).unwrap();
    // SAFETY: valid C string.
    let rr = own(unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    });
    let (s1a, s1b) = unix_pair(libc::SOCK_STREAM);
    let (s2a, s2b) = unix_pair(libc::SOCK_DGRAM);
    let (s3a, s3b) = unix_pair(libc::SOCK_SEQPACKET);
    drop(s3b);
    // SAFETY: plain syscalls.
    let efd = own(unsafe { libc::eventfd(7, libc::EFD_SEMAPHORE | libc::EFD_CLOEXEC) });
    let name = std::ffi::CString::new("selftest").unwrap();
    // SAFETY: valid C string.
    let mfd = own(unsafe {
        libc::memfd_create(name.as_ptr(), libc::MFD_ALLOW_SEALING | libc::MFD_CLOEXEC)
    });
    // SAFETY: plain syscalls.
    unsafe {
        assert_eq!(
            libc::write(mfd.as_raw_fd(), b"abcdef".as_ptr().cast(), 6),
            6
        );
        libc::lseek(mfd.as_raw_fd(), 0, libc::SEEK_SET);
        assert_eq!(
            libc::fcntl(mfd.as_raw_fd(), libc::F_ADD_SEALS, F_SEAL_GROW),
            0
        );
    }
    Objects {
        pr,
        pw,
        rr,
        s1a,
        s1b,
        s2a,
        s2b,
        s3a,
        efd,
        mfd,
        data: d.file("data", b"hello"),
        mdata: d.file("mdata", b"abcdef"),
    }
}

/// Forks a child holding: 3 pipe r, 4 pipe w, 5 reopen of r (nonblock), 6 and 12 socketpair
/// stream a, 7 its b, 8 a dgram end whose peer this test holds, 9 a seqpacket end whose peer
/// is closed, 10 eventfd (7, semaphore), 11 memfd "selftest" ("abcdef", sealed grow);
/// RLIMIT_NOFILE 50; stopped.
fn fork_table(o: &Objects) -> Stopped {
    let srcs: Vec<(RawFd, RawFd)> = vec![
        (o.pr.as_raw_fd(), 3),
        (o.pw.as_raw_fd(), 4),
        (o.rr.as_raw_fd(), 5),
        (o.s1a.as_raw_fd(), 6),
        (o.s1b.as_raw_fd(), 7),
        (o.s2a.as_raw_fd(), 8),
        (o.s3a.as_raw_fd(), 9),
        (o.efd.as_raw_fd(), 10),
        (o.mfd.as_raw_fd(), 11),
        (o.s1a.as_raw_fd(), 12),
    ];
    // SAFETY: the child makes only async-signal-safe calls, then stops and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: see above.
        unsafe {
            let mut high = [0; 16];
            for (i, &(s, _)) in srcs.iter().enumerate() {
                high[i] = libc::fcntl(s, libc::F_DUPFD, 500 + i as i32);
            }
            for (i, &(_, dst)) in srcs.iter().enumerate() {
                libc::dup2(high[i], dst);
            }
            libc::syscall(libc::SYS_close_range, 0u32, 2u32, 0u32);
            libc::syscall(libc::SYS_close_range, 13u32, u32::MAX, 0u32);
            let lim = libc::rlimit {
                rlim_cur: 50,
                rlim_max: 50,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::kill(libc::getpid(), libc::SIGSTOP);
            libc::_exit(0);
        }
    }
    let mut st = 0;
    // SAFETY: our child.
    let r = unsafe { libc::waitpid(pid, &mut st, libc::WUNTRACED) };
    assert!(r == pid && libc::WIFSTOPPED(st), "child did not stop");
    Stopped(pid)
}

/// The true layout, with hooks to make it wrong.
#[derive(Clone)]
struct L {
    data: Vec<u8>,
    size: u64,
    reopen_nb: bool,
    reopen_as_pipe_end: bool,
    reopen_other_pipe: bool,
    pair_ty: &'static str,
    pair_b_nowhere: bool,
    dgram_as_pair: bool,
    inherit_src_wrong: bool,
    efd_count: u64,
    efd_flags: &'static str,
    mname: &'static str,
    mdata: Vec<u8>,
    msize: Option<u64>,
    mseals: &'static str,
    nofile: u64,
}

fn good() -> L {
    L {
        data: b"hello".to_vec(),
        size: 5000,
        reopen_nb: true,
        reopen_as_pipe_end: false,
        reopen_other_pipe: false,
        pair_ty: "stream",
        pair_b_nowhere: false,
        dgram_as_pair: false,
        inherit_src_wrong: false,
        efd_count: 7,
        efd_flags: "semaphore",
        mname: "selftest",
        mdata: b"abcdef".to_vec(),
        msize: None,
        mseals: "grow",
        nofile: 50,
    }
}

fn plan(o: &Objects, l: &L) -> Plan {
    let mut p = Plan::new();
    p.task(1);
    p.nofile(1, l.nofile);
    p.pipe(1)
        .pipe_data(&o.data, &l.data)
        .pipe_size(l.size)
        .r(1, 3)
        .w(1, 4);
    if l.reopen_as_pipe_end {
        p.objs[0].targets.push(Tgt {
            end: 0,
            task: 1,
            fd: 5,
            cloexec: false,
        });
    } else if l.reopen_other_pipe {
        p.pipe(20).r(1, 5);
    } else {
        p.reopen(2, 1, 0, if l.reopen_nb { "nonblock" } else { "" })
            .at(1, 5);
    }
    p.socketpair(3, l.pair_ty, "").a(1, 6).a(1, 12);
    if l.pair_b_nowhere {
        p.socketpair(30, l.pair_ty, "").b(1, 7);
    } else {
        p.b(1, 7);
    }
    if l.dgram_as_pair {
        p.socketpair(4, "dgram", "").a(1, 8);
    } else {
        let src = if l.inherit_src_wrong {
            o.s2b.as_raw_fd()
        } else {
            o.s2a.as_raw_fd()
        };
        p.inherit(4, 8, src).at(1, 8);
    }
    p.socketpair(5, "seqpacket", "").a(1, 9);
    p.eventfd(6, Some(l.efd_count), l.efd_flags).at(1, 10);
    p.memfd(
        7,
        MemfdSpec {
            name: l.mname.as_bytes().to_vec(),
            data: Some((o.mdata.clone(), l.mdata.clone())),
            size: l.msize,
            seals: l.mseals.into(),
            ..Default::default()
        },
    )
    .at(1, 11);
    p
}

fn errors(p: &Plan, pids: &BTreeMap<u16, i32>) -> Vec<String> {
    check_plan(
        p,
        pids,
        &CheckOpts {
            stopped: true,
            ..Default::default()
        },
    )
}

#[test]
fn probes_accept_true_layout_and_catch_wrong_ones() {
    let d = TmpDir::new("kselftest");
    let o = objects(&d);
    let child = fork_table(&o);
    let pids = BTreeMap::from([(1u16, child.0)]);
    let g = good();
    assert_eq!(
        errors(&plan(&o, &g), &pids),
        Vec::<String>::new(),
        "the true layout must pass"
    );

    let cases: Vec<(&str, L, &str)> = vec![
        (
            "pipe bytes",
            L {
                data: b"hellx".to_vec(),
                ..good()
            },
            "buffered bytes are",
        ),
        (
            "pipe length",
            L {
                data: b"hello!".to_vec(),
                ..good()
            },
            "FIONREAD",
        ),
        (
            "pipe capacity",
            L {
                size: 4096,
                ..good()
            },
            "F_GETPIPE_SZ = 8192",
        ),
        (
            "reopen flags",
            L {
                reopen_nb: false,
                ..good()
            },
            "status flags rdonly,nonblock",
        ),
        (
            "reopen shares",
            L {
                reopen_as_pipe_end: true,
                ..good()
            },
            "must share one description",
        ),
        (
            "reopen other pipe",
            L {
                reopen_other_pipe: true,
                ..good()
            },
            "are the same pipe",
        ),
        (
            "socket type",
            L {
                pair_ty: "dgram",
                ..good()
            },
            "socket type SOCK_STREAM",
        ),
        (
            "not peers",
            L {
                pair_b_nowhere: true,
                ..good()
            },
            "must have no peer",
        ),
        (
            "peer alive",
            L {
                dgram_as_pair: true,
                ..good()
            },
            "must have no peer",
        ),
        (
            "inherit",
            L {
                inherit_src_wrong: true,
                ..good()
            },
            "must be the caller's own fd",
        ),
        (
            "eventfd count",
            L {
                efd_count: 8,
                ..good()
            },
            "eventfd-count Some(7), planned 8",
        ),
        (
            "eventfd semaphore",
            L {
                efd_flags: "",
                ..good()
            },
            "eventfd-semaphore 1, planned 0",
        ),
        (
            "memfd name",
            L {
                mname: "other",
                ..good()
            },
            "links to /memfd:selftest (deleted)",
        ),
        (
            "memfd contents",
            L {
                mdata: b"abcdeg".to_vec(),
                ..good()
            },
            "contents",
        ),
        (
            "memfd size",
            L {
                msize: Some(10),
                ..good()
            },
            "size 6, planned 10",
        ),
        (
            "memfd seals",
            L {
                mseals: "shrink",
                ..good()
            },
            "F_GET_SEALS = 0x4",
        ),
        (
            "nofile",
            L {
                nofile: 60,
                ..good()
            },
            "Max open files Ok((50, 50)), planned nofile=60",
        ),
    ];
    let mut bad = Vec::new();
    for (name, l, want) in &cases {
        let errs = errors(&plan(&o, l), &pids);
        if !errs.iter().any(|e| e.contains(want)) {
            bad.push(format!(
                "[{name}] expected an error containing {want:?}, got {errs:?}"
            ));
        }
    }
    // The probes left the objects as they were: the true layout still passes.
    assert_eq!(
        errors(&plan(&o, &g), &pids),
        Vec::<String>::new(),
        "the probes changed the objects"
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// KCMP_FILES: two processes with the same layout but separate tables, planned as one shared
/// table, are caught; planned separately they pass.
#[test]
fn shared_table_check_catches_separate_tables() {
    let d = TmpDir::new("kselftest2");
    let o = objects(&d);
    let a = fork_table(&o);
    let b = fork_table(&o);
    let pids = BTreeMap::from([(1u16, a.0), (2u16, b.0)]);
    let mut p = plan(&o, &good());
    // Task 2 shares task 1's table: it gets the whole layout (one description per object,
    // both children hold the same descriptions).
    p.child(2, 1).files(2, 1);
    let errs = errors(&p, &pids);
    assert!(
        errs.iter().any(|e| e.contains("must share one fd table")),
        "separate tables planned as one must be caught: {errs:?}"
    );
    assert_eq!(kcmp_files(a.0, a.0), Ok(0));
}
