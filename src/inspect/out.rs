//! A buffered writer to an fd for long reports (a captured plan, a verify table): no allocator,
//! one 64 KiB buffer, flushed as it fills.

use crate::plan::lex::must_encode;
use crate::sys::{fd, Fd};

pub struct Out {
    fd: Fd,
    buf: [u8; 1 << 16],
    len: usize,
    /// The first write error, if any (later writes are dropped).
    pub failed: bool,
}

impl Out {
    pub const fn new(fd: Fd) -> Out {
        Out { fd, buf: [0; 1 << 16], len: 0, failed: false }
    }

    pub fn flush(&mut self) {
        if self.len > 0 && !self.failed && fd::write_all(self.fd, &self.buf[..self.len]).is_err() {
            self.failed = true;
        }
        self.len = 0;
    }

    pub fn push(&mut self, bytes: &[u8]) -> &mut Self {
        for chunk in bytes.chunks(self.buf.len()) {
            if self.len + chunk.len() > self.buf.len() {
                self.flush();
            }
            self.buf[self.len..self.len + chunk.len()].copy_from_slice(chunk);
            self.len += chunk.len();
        }
        self
    }

    pub fn str(&mut self, s: &str) -> &mut Self {
        self.push(s.as_bytes())
    }

    pub fn num(&mut self, v: u64) -> &mut Self {
        let mut d = [0u8; 20];
        let digits = crate::text::fmt_u64(v, &mut d);
        self.push(digits)
    }

    pub fn octal(&mut self, mut v: u64) -> &mut Self {
        let mut d = [0u8; 24];
        let mut i = d.len();
        loop {
            i -= 1;
            d[i] = b'0' + (v & 7) as u8;
            v >>= 3;
            if v == 0 {
                break;
            }
        }
        self.push(&d[i..])
    }

    /// Pads with spaces to `width` bytes since `start` (a column of a table).
    pub fn pad_from(&mut self, start: usize, width: usize) -> &mut Self {
        let written = self.mark() - start;
        for _ in written..width {
            self.push(b" ");
        }
        self
    }

    /// A position to pad from: bytes written so far in the buffer (valid within one line).
    pub fn mark(&mut self) -> usize {
        if self.len > self.buf.len() - 8192 {
            self.flush();
        }
        self.len
    }

    /// Writes `bytes` percent-encoded as plan format 1 wants paths and argv elements; with
    /// `eq`, `=` too (a memfd name must not look like an option).
    pub fn encoded(&mut self, bytes: &[u8], eq: bool) -> &mut Self {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        for &b in bytes {
            if must_encode(b) || (eq && b == b'=') {
                self.push(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
            } else {
                self.push(&[b]);
            }
        }
        self
    }
}
