//! `fdslot-probe`: the program the restored tasks of the initramfs boot test run, where there is
//! no shell and no libc. Built with fdslot's own runtime and link recipe (no libc, static PIE),
//! so the archive holds nothing a user of fdslot would not have.
//!
//! Each argument is one step, run in order; the last field of a step is the rest of the
//! argument, so TEXT and PREFIX may hold `:`:
//!
//! | step | does |
//! |---|---|
//! | `say:FD:TEXT` | writes `TEXT\n` to FD |
//! | `line:FROM:TO:PREFIX` | reads one line from FROM, writes `PREFIX` and the line to TO |
//! | `cat:FROM:TO` | copies FROM to TO until end of file |
//! | `eof:FD` | reads FD until end of file (every writer has closed it) |
//! | `fds:TO:PREFIX` | writes `PREFIX` and the open fds below 1024 (asked with F_GETFD) to TO |
//! | `offset:FD:TO:PREFIX` | writes `PREFIX` and FD's file offset (lseek SEEK_CUR) to TO |
//!
//! A failed step prints `fdslot-probe: STEP: ERRNO` on fd 2 and exits 1.
#![no_std]
#![no_main]

use fdslot::sys::{fd, Errno, Fd};
use fdslot::text::{c_str, parse_u64, Line};

/// One step's failure: what went wrong, for the error line.
enum Fail {
    Sys(Errno),
    Usage,
}

impl From<Errno> for Fail {
    fn from(e: Errno) -> Fail {
        Fail::Sys(e)
    }
}

/// Called by fdslot's `_start` after self-relocation.
///
/// # Safety
/// `argv` must be the kernel's argument array.
#[no_mangle]
pub unsafe extern "C" fn fdslot_main(argc: usize, argv: *const *const u8, _envp: *const *const u8) -> i32 {
    for i in 1..argc {
        // SAFETY: argv holds argc NUL-terminated strings, as the kernel laid them out.
        let step = unsafe { c_str(*argv.add(i)) };
        if let Err(f) = run_step(step) {
            let mut l = Line::<300>::new();
            l.str("fdslot-probe: ").push(step).str(": ");
            match f {
                Fail::Sys(e) => l.str(e.name().unwrap_or("error")),
                Fail::Usage => l.str("not a step (say, line, cat, eof, fds, offset)"),
            };
            l.str("\n");
            let _ = fd::write_all(2, l.as_bytes());
            return 1;
        }
    }
    0
}

/// Splits `step` into at most N fields at `:`; the last one keeps the rest.
fn fields<const N: usize>(step: &[u8]) -> Option<[&[u8]; N]> {
    let mut out = [&step[..0]; N];
    let mut rest = step;
    for slot in out.iter_mut().take(N - 1) {
        let at = rest.iter().position(|&b| b == b':')?;
        *slot = &rest[..at];
        rest = &rest[at + 1..];
    }
    out[N - 1] = rest;
    Some(out)
}

fn fd_arg(s: &[u8]) -> Result<Fd, Fail> {
    parse_u64(s).filter(|&v| v < i32::MAX as u64).map(|v| v as Fd).ok_or(Fail::Usage)
}

fn run_step(step: &[u8]) -> Result<(), Fail> {
    let name = step.split(|&b| b == b':').next().unwrap_or(b"");
    let mut out = Line::<4096>::new();
    match name {
        b"say" => {
            let [_, to, text] = fields::<3>(step).ok_or(Fail::Usage)?;
            out.push(text).str("\n");
            fd::write_all(fd_arg(to)?, out.as_bytes())?;
        }
        b"line" => {
            let [_, from, to, prefix] = fields::<4>(step).ok_or(Fail::Usage)?;
            let from = fd_arg(from)?;
            out.push(prefix);
            let mut byte = [0u8; 1];
            // One byte at a time: what follows the line stays in the file for the next reader.
            while read_retry(from, &mut byte)? == 1 && byte[0] != b'\n' {
                out.push(&byte);
            }
            out.str("\n");
            fd::write_all(fd_arg(to)?, out.as_bytes())?;
        }
        b"cat" => {
            let [_, from, to] = fields::<3>(step).ok_or(Fail::Usage)?;
            let (from, to) = (fd_arg(from)?, fd_arg(to)?);
            let mut buf = [0u8; 4096];
            loop {
                match read_retry(from, &mut buf)? {
                    0 => break,
                    n => fd::write_all(to, &buf[..n])?,
                }
            }
        }
        b"eof" => {
            let [_, from] = fields::<2>(step).ok_or(Fail::Usage)?;
            let from = fd_arg(from)?;
            let mut buf = [0u8; 512];
            while read_retry(from, &mut buf)? != 0 {}
        }
        b"fds" => {
            let [_, to, prefix] = fields::<3>(step).ok_or(Fail::Usage)?;
            out.push(prefix);
            for n in 0..1024 {
                if fd::fcntl(n, linux_raw_sys::general::F_GETFD, 0).is_ok() {
                    out.str(" ").num(n as u64);
                }
            }
            out.str("\n");
            fd::write_all(fd_arg(to)?, out.as_bytes())?;
        }
        b"offset" => {
            let [_, of, to, prefix] = fields::<4>(step).ok_or(Fail::Usage)?;
            let pos = fd::offset(fd_arg(of)?)?;
            out.push(prefix).str(" ").num(pos).str("\n");
            fd::write_all(fd_arg(to)?, out.as_bytes())?;
        }
        _ => return Err(Fail::Usage),
    }
    Ok(())
}

/// `read`, retried on EINTR.
fn read_retry(from: Fd, buf: &mut [u8]) -> Result<usize, Errno> {
    loop {
        match fd::read(from, buf) {
            Err(e) if e == Errno::INTR => {}
            other => return other,
        }
    }
}
