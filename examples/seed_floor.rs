//! The kernel's own cost of the seed's form (one socket per received fd), with no fdslot in
//! the way: one thread makes, per file, the syscalls a receiver and its opener must make, and
//! prints the median per-file times in microseconds, as `receiver R open O send S`.
//!
//!     cargo run --release --example seed_floor -- FILE [FILES] [ROUNDS]
//!
//! Receiver, per file: socket, connect (to the opener's home), bind (its name), recvmsg (the
//! file), dup3 (the file over the socket, which releases the socket), close (where it landed).
//! Opener: per object, openat by name below the file's directory, held open as fdslot holds a
//! run's, and fcntl(F_SETFL) (fdslot opens with O_NONBLOCK, then clears it);
//! per receiver, sendmsg with SCM_RIGHTS to the receiver's name. `make bench` turns these into
//! the least time the seed's form could take for each plan: no receiver takes files faster
//! than R each, and all tasks' syscalls share the machine's cores.

use std::ffi::CString;
use std::time::Instant;

/// An abstract AF_UNIX address: a NUL, then `name`.
fn abstract_addr(name: &[u8]) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    a.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (i, &b) in name.iter().enumerate() {
        a.sun_path[i + 1] = b as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + 1 + name.len();
    (a, len as libc::socklen_t)
}

fn check(what: &str, r: libc::c_long) -> libc::c_long {
    if r < 0 {
        eprintln!("seed_floor: {what}: {}", std::io::Error::last_os_error());
        std::process::exit(1);
    }
    r
}

fn dgram_socket() -> i32 {
    // SAFETY: socket takes integers only.
    check("socket", unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) } as _) as i32
}

/// Sends `fd` to `to` from `from`, as one SCM_RIGHTS message with a 28-byte payload (the size
/// of fdslot's header for one fd).
fn send_fd(from: i32, to: &(libc::sockaddr_un, libc::socklen_t), fd: i32) {
    let mut payload = [0u8; 28];
    let mut iov = libc::iovec { iov_base: payload.as_mut_ptr().cast(), iov_len: payload.len() };
    let mut control = [0u64; 4];
    // SAFETY: msghdr is plain data; the pointers set below outlive the sendmsg call, and the
    // control buffer (32 bytes, 8-aligned) holds CMSG_SPACE(4).
    unsafe {
        let mut m: libc::msghdr = std::mem::zeroed();
        m.msg_name = (&to.0 as *const libc::sockaddr_un).cast_mut().cast();
        m.msg_namelen = to.1;
        m.msg_iov = &mut iov;
        m.msg_iovlen = 1;
        m.msg_control = control.as_mut_ptr().cast();
        m.msg_controllen = libc::CMSG_SPACE(4) as _;
        let c = libc::CMSG_FIRSTHDR(&m);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(4) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<i32>(), fd);
        check("sendmsg", libc::sendmsg(from, &m, libc::MSG_DONTWAIT) as _);
    }
}

/// Receives one message with one fd on `s`, as fdslot's receiver does (the sender's address
/// asked for, a buffer with room for a batch); returns the fd.
fn recv_fd(s: i32) -> i32 {
    let mut payload = [0u8; 1048];
    let mut iov = libc::iovec { iov_base: payload.as_mut_ptr().cast(), iov_len: payload.len() };
    let mut control = [0u64; 16];
    // SAFETY: as in send_fd; the kernel writes at most msg_controllen bytes of control and
    // msg_namelen bytes of address.
    unsafe {
        let mut from: libc::sockaddr_un = std::mem::zeroed();
        let mut m: libc::msghdr = std::mem::zeroed();
        m.msg_name = (&mut from as *mut libc::sockaddr_un).cast();
        m.msg_namelen = std::mem::size_of::<libc::sockaddr_un>() as _;
        m.msg_iov = &mut iov;
        m.msg_iovlen = 1;
        m.msg_control = control.as_mut_ptr().cast();
        m.msg_controllen = std::mem::size_of_val(&control) as _;
        check("recvmsg", libc::recvmsg(s, &mut m, libc::MSG_DONTWAIT) as _);
        let c = libc::CMSG_FIRSTHDR(&m);
        if c.is_null() || (*c).cmsg_type != libc::SCM_RIGHTS {
            eprintln!("seed_floor: recvmsg: no fd came");
            std::process::exit(1);
        }
        std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<i32>())
    }
}

/// One round of `files` files: (receiver, open, send) per file, in microseconds.
fn round(path: &CString, files: usize, round: usize) -> (f64, f64, f64) {
    let bytes = path.as_bytes();
    let cut = bytes.iter().rposition(|&b| b == b'/').expect("FILE must be a path with a directory");
    let dir_path = CString::new(if cut == 0 { &b"/"[..] } else { &bytes[..cut] }).unwrap();
    let file_name = CString::new(&bytes[cut + 1..]).unwrap();
    // SAFETY: dir_path is NUL-terminated; integer arguments otherwise.
    let dir = check("open (directory)", unsafe { libc::open(dir_path.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) } as _) as i32;
    let home = dgram_socket();
    let home_name = format!("seed-floor-{}-{round}-home", std::process::id());
    let home_addr = abstract_addr(home_name.as_bytes());
    // SAFETY: the address is a valid sockaddr_un of the given length.
    check("bind", unsafe { libc::bind(home, (&home_addr.0 as *const libc::sockaddr_un).cast(), home_addr.1) } as _);
    let (mut receiver, mut open, mut send) = (0.0, 0.0, 0.0);
    let mut kept = Vec::with_capacity(files);
    for i in 0..files {
        let name = format!("seed-floor-{}-{round}-{i:x}", std::process::id());
        let addr = abstract_addr(name.as_bytes());
        let t0 = Instant::now();
        let s = dgram_socket();
        // SAFETY: valid addresses of the given lengths; integer arguments otherwise.
        unsafe {
            check("connect", libc::connect(s, (&home_addr.0 as *const libc::sockaddr_un).cast(), home_addr.1) as _);
            check("bind", libc::bind(s, (&addr.0 as *const libc::sockaddr_un).cast(), addr.1) as _);
        }
        let t1 = Instant::now();
        // SAFETY: path is NUL-terminated; integer arguments otherwise.
        let f = check("openat", unsafe { libc::openat(dir, file_name.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK) } as _) as i32;
        // SAFETY: integer arguments only.
        check("fcntl", unsafe { libc::fcntl(f, libc::F_SETFL, libc::O_RDONLY) } as _);
        let t1b = Instant::now();
        send_fd(home, &addr, f);
        let t2 = Instant::now();
        let got = recv_fd(s);
        // SAFETY: integer arguments only.
        unsafe {
            check("dup3", libc::dup3(got, s, 0) as _);
            check("close", libc::close(got) as _);
        }
        let t3 = Instant::now();
        receiver += (t1 - t0 + (t3 - t2)).as_secs_f64() * 1e6;
        open += (t1b - t1).as_secs_f64() * 1e6;
        send += (t2 - t1b).as_secs_f64() * 1e6;
        // The opener keeps its file (it sits in its own slot); the receiver's stays too.
        kept.push((f, s));
    }
    for (f, s) in kept {
        // SAFETY: integer arguments only; both fds are ours.
        unsafe {
            libc::close(f);
            libc::close(s);
        }
    }
    // SAFETY: as above.
    unsafe {
        libc::close(home);
        libc::close(dir);
    }
    let n = files as f64;
    (receiver / n, open / n, send / n)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: seed_floor FILE [FILES] [ROUNDS]");
        std::process::exit(2);
    };
    let files: usize = args.get(2).map_or(2000, |s| s.parse().expect("FILES: a number"));
    let rounds: usize = args.get(3).map_or(5, |s| s.parse().expect("ROUNDS: a number"));
    // Room for both sides' fds of a round.
    // SAFETY: rlimit is plain data, written by the kernel.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
    }
    let path = CString::new(path.as_str()).expect("FILE: no NUL");
    let (mut rx, mut op, mut tx) = (Vec::new(), Vec::new(), Vec::new());
    for k in 0..rounds {
        let (r, o, s) = round(&path, files, k);
        rx.push(r);
        op.push(o);
        tx.push(s);
    }
    println!("receiver {:.2} open {:.2} send {:.2}", median(rx), median(op), median(tx));
}
