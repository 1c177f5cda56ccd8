//! Byte-string helpers for messages: a fixed-size line buffer and number formatting.
//!
//! `core::fmt` is avoided on purpose: it would add kilobytes to an image injected into processes.

/// A line of at most `N` bytes; what does not fit is cut and marked with `...`.
pub struct Line<const N: usize> {
    buf: [u8; N],
    len: usize,
    cut: bool,
}

impl<const N: usize> Default for Line<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Line<N> {
    pub const fn new() -> Self {
        Line { buf: [0; N], len: 0, cut: false }
    }

    pub fn push(&mut self, bytes: &[u8]) -> &mut Self {
        self.cut |= append(&mut self.buf, &mut self.len, bytes);
        self
    }

    pub fn str(&mut self, s: &str) -> &mut Self {
        self.push(s.as_bytes())
    }

    pub fn num(&mut self, v: u64) -> &mut Self {
        let mut digits = [0u8; 20];
        let s = fmt_u64(v, &mut digits);
        self.push(s)
    }

    pub fn signed(&mut self, v: i64) -> &mut Self {
        if v < 0 {
            self.push(b"-");
        }
        self.num(v.unsigned_abs())
    }

    pub fn hex(&mut self, v: u64, width: usize) -> &mut Self {
        for i in (0..width).rev() {
            let d = ((v >> (i * 4)) & 0xf) as u8;
            self.push(&[if d < 10 { b'0' + d } else { b'a' + d - 10 }]);
        }
        self
    }

    /// The bytes, with a trailing `...` where something was cut.
    pub fn as_bytes(&mut self) -> &[u8] {
        if self.cut && N >= 3 {
            self.buf[N - 3..].copy_from_slice(b"...");
            self.cut = false;
        }
        &self.buf[..self.len]
    }

    /// The bytes so far, without the cut marker.
    pub fn peek(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.len = 0;
        self.cut = false;
    }
}

/// Appends what fits of `bytes` to `buf[..*len]`; true when something was cut. Not generic, so
/// every `Line<N>` shares one copy of the code.
#[inline(never)]
fn append(buf: &mut [u8], len: &mut usize, bytes: &[u8]) -> bool {
    let room = buf.len() - *len;
    let take = bytes.len().min(room);
    buf[*len..*len + take].copy_from_slice(&bytes[..take]);
    *len += take;
    take < bytes.len()
}

/// Formats `v` in decimal into `buf`, returning the digits.
pub fn fmt_u64(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Parses an unsigned number: decimal, `0x` hex or `0o` octal. `None` on junk or overflow.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    let (digits, radix) = match s {
        [b'0', b'x' | b'X', rest @ ..] => (rest, 16),
        [b'0', b'o' | b'O', rest @ ..] => (rest, 8),
        _ => (s, 10),
    };
    parse_radix(digits, radix)
}

/// Parses digits in `radix` (no prefix). `None` on an empty string, junk or overflow.
pub fn parse_radix(digits: &[u8], radix: u64) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    if radix == 10 && digits.len() <= 19 {
        // Every fd and task id of a plan: 19 digits cannot overflow, so no checks per digit.
        let mut v = 0u64;
        for &c in digits {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            v = v * 10 + d as u64;
        }
        return Some(v);
    }
    let mut v: u64 = 0;
    for &c in digits {
        let d = match c {
            b'0'..=b'9' => (c - b'0') as u64,
            b'a'..=b'f' => (c - b'a' + 10) as u64,
            b'A'..=b'F' => (c - b'A' + 10) as u64,
            _ => return None,
        };
        if d >= radix {
            return None;
        }
        v = v.checked_mul(radix)?.checked_add(d)?;
    }
    Some(v)
}

/// The length of a NUL-terminated C string.
///
/// # Safety
/// `p` must point to a NUL-terminated string.
pub unsafe fn c_strlen(p: *const u8) -> usize {
    let mut n = 0;
    // SAFETY: the caller promises a terminating NUL.
    while unsafe { *p.add(n) } != 0 {
        n += 1;
    }
    n
}

/// A C string as a byte slice (without the NUL).
///
/// # Safety
/// `p` must point to a NUL-terminated string that lives for `'a`.
pub unsafe fn c_str<'a>(p: *const u8) -> &'a [u8] {
    // SAFETY: see c_strlen.
    unsafe { core::slice::from_raw_parts(p, c_strlen(p)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_u64(b"0x1F"), Some(31));
        assert_eq!(parse_u64(b"0o17"), Some(15));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"12a"), None);
        // Decimal at and around the 19-digit fast path's edge.
        assert_eq!(parse_radix(b"9999999999999999999", 10), Some(9_999_999_999_999_999_999));
        assert_eq!(parse_radix(b"10000000000000000000", 10), Some(10_000_000_000_000_000_000));
        assert_eq!(parse_radix(b"99999999999999999999", 10), None);
        assert_eq!(parse_radix(b"1:", 10), None);
        assert_eq!(parse_radix(b"/", 10), None);
        assert_eq!(parse_radix(b"007", 10), Some(7));
        let mut l = Line::<8>::new();
        l.str("ab").num(12345678);
        assert_eq!(l.as_bytes(), b"ab123...");
    }
}
