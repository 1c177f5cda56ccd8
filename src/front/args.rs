//! argv as byte strings, and the options several commands share.

use super::usage_error;
use crate::restore::roles::MAX_BATCH;
use crate::restore::MAX_KEEP;
use crate::text::{c_str, parse_radix, Line};

pub struct Args {
    argv: *const *const u8,
    argc: usize,
    next: usize,
}

impl Args {
    /// # Safety
    /// `argv` must hold `argc` NUL-terminated strings that live for the whole process.
    pub unsafe fn new(argc: usize, argv: *const *const u8) -> Args {
        Args { argv, argc, next: 1 }
    }

    fn at(&self, i: usize) -> &'static [u8] {
        // SAFETY: i < argc, and argv strings live for the process (see new).
        unsafe { c_str(*self.argv.add(i)) }
    }

    /// The next argument if it is not an option.
    pub fn positional(&mut self) -> Option<&'static [u8]> {
        if self.next < self.argc && !self.at(self.next).starts_with(b"--") {
            self.next()
        } else {
            None
        }
    }

    /// The next argument, left in place.
    pub fn peek(&self) -> Option<&'static [u8]> {
        (self.next < self.argc).then(|| self.at(self.next))
    }

    /// Whether `--help` appears anywhere before a `--` separator.
    pub fn wants_help(&self) -> bool {
        (self.next..self.argc).map(|i| self.at(i)).take_while(|a| *a != b"--").any(|a| a == b"--help" || a == b"-h")
    }

    /// Everything after a `--`, as the raw argv pointer array (NULL-terminated by the kernel).
    pub fn rest_ptr(&mut self) -> *const *const u8 {
        // SAFETY: next <= argc; argv[argc] is NULL.
        let p = unsafe { self.argv.add(self.next) };
        self.next = self.argc;
        p
    }

    fn value(&mut self, opt: &str) -> Result<&'static [u8], i32> {
        self.next().ok_or_else(|| {
            let mut l = Line::<100>::new();
            l.str(opt).str(" needs a value");
            usage_error(l.as_bytes())
        })
    }

    pub fn number(&mut self, opt: &str, min: u64, max: u64) -> Result<u64, i32> {
        let v = self.value(opt)?;
        parse_radix(v, 10).filter(|n| (min..=max).contains(n)).ok_or_else(|| {
            let mut l = Line::<200>::new();
            l.str(opt).str(" must be a number from ").num(min).str(" to ").num(max).str(", not '").push(v).str("'");
            usage_error(l.as_bytes())
        })
    }

    pub fn batch(&mut self) -> Result<u16, i32> {
        self.number("--batch", 1, MAX_BATCH as u64).map(|v| v as u16)
    }

    /// `--relays auto|N` (`run`; N from 0, never, to `MAX_RELAYS`).
    pub fn relays(&mut self) -> Result<crate::restore::relay::Choice, i32> {
        use crate::restore::relay::{Choice, MAX_RELAYS};
        let v = self.value("--relays")?;
        if v == b"auto" {
            return Ok(Choice::Auto);
        }
        parse_radix(v, 10).filter(|&n| n <= MAX_RELAYS as u64).map(|n| Choice::Count(n as usize)).ok_or_else(|| {
            let mut l = Line::<200>::new();
            l.str("--relays must be auto or a number from 0 to ").num(MAX_RELAYS as u64).str(", not '").push(v).str("'");
            usage_error(l.as_bytes())
        })
    }

    /// `--timeout SECS`: returns nanoseconds.
    pub fn timeout(&mut self) -> Result<u64, i32> {
        self.number("--timeout", 1, 86_400).map(|s| s * 1_000_000_000)
    }

    pub fn session(&mut self) -> Result<&'static [u8], i32> {
        let s = self.value("--session")?;
        if s.is_empty() || s.len() > 32 || !s.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-') {
            return Err(usage_error(b"--session must be 1 to 32 of A-Za-z0-9_-"));
        }
        Ok(s)
    }

    /// `--keep FD,...` into `out` (sorted, deduplicated).
    pub fn keep(&mut self, out: &mut heapless::Vec<u32, MAX_KEEP>) -> Result<(), i32> {
        let v = self.value("--keep")?;
        for part in v.split(|&b| b == b',') {
            let fd = parse_radix(part, 10).filter(|&n| n < crate::plan::NR_OPEN as u64).ok_or_else(|| {
                let mut l = Line::<200>::new();
                l.str("--keep: bad fd '").push(part).str("'");
                usage_error(l.as_bytes())
            })?;
            if !out.contains(&(fd as u32)) && out.push(fd as u32).is_err() {
                return Err(usage_error(b"--keep: at most 64 fds"));
            }
        }
        crate::sort::sort_by_key(out, |&f| f);
        Ok(())
    }
}

impl Iterator for Args {
    type Item = &'static [u8];

    fn next(&mut self) -> Option<&'static [u8]> {
        if self.next >= self.argc {
            return None;
        }
        self.next += 1;
        Some(self.at(self.next - 1))
    }
}

pub fn unexpected(arg: &[u8]) -> i32 {
    let mut l = Line::<200>::new();
    l.str("unexpected argument '").push(arg).str("'");
    usage_error(l.as_bytes())
}
