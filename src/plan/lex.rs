//! Lines and tokens of plan format 1, and the percent-encoding of paths and argv.

/// Splits the plan into lines: (line number, content without comment, the first byte of the
/// content that may not stand raw), in one word-at-a-time pass over each line.
pub struct Lines<'a> {
    rest: &'a [u8],
    number: u32,
}

impl<'a> Lines<'a> {
    pub fn new(text: &'a [u8]) -> Self {
        Lines { rest: text, number: 0 }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = (u32, &'a [u8], Option<u8>);
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let (end, content_end, refused) = scan_line(self.rest);
        let content = &self.rest[..content_end];
        self.rest = if end < self.rest.len() { &self.rest[end + 1..] } else { &[] };
        self.number += 1;
        Some((self.number, content, refused))
    }
}

/// For the first line of `rest`: where it ends (its newline, or the end of `rest`), where its
/// content ends (a `#` starts a comment, which may hold any byte), and the content's first
/// byte that may not stand raw.
fn scan_line(rest: &[u8]) -> (usize, usize, Option<u8>) {
    let hash = ONES * b'#' as u64;
    let mut refused = None;
    let mut i = 0;
    loop {
        // Jump over printable bytes other than `#` a word at a time, to the first byte that
        // needs a look (the newline is not printable, so it is one).
        while i + 8 <= rest.len() {
            let x = word(rest, i);
            let look = not_printable_mask(x) | zero_mask(x ^ hash);
            if look != 0 {
                i += (look.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        if i >= rest.len() {
            return (rest.len(), rest.len(), refused);
        }
        let b = rest[i];
        if b == b'\n' {
            return (i, i, refused);
        }
        if b == b'#' {
            let end = i + find_byte(&rest[i..], b'\n').unwrap_or(rest.len() - i);
            return (end, i, refused);
        }
        if refused.is_none() && !raw_byte_ok(b) {
            refused = Some(b);
        }
        i += 1;
    }
}

// Word-at-a-time scanning: a plan of a million lines is scanned once for its newlines and
// once line by line, and the size-optimised build would otherwise test (and call out for)
// every byte.
const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The word at `bytes[i..i + 8]`; the caller has checked `i + 8 <= bytes.len()`.
#[inline(always)]
fn word(bytes: &[u8], i: usize) -> u64 {
    debug_assert!(i + 8 <= bytes.len());
    // SAFETY: the 8 bytes from i lie within `bytes` (checked by every caller's loop condition);
    // an unaligned read of plain bytes.
    u64::from_le(unsafe { core::ptr::read_unaligned(bytes.as_ptr().add(i) as *const u64) })
}

/// The high bit of every byte of `x` that is zero, and no other bit (no carry crosses a byte:
/// each adds at most 0x7f to at most 0x7f).
#[inline(always)]
fn zero_mask(x: u64) -> u64 {
    !(((x & !HIGHS).wrapping_add(!HIGHS)) | x) & HIGHS
}

/// The high bit of every byte of `x` outside 0x20..=0x7e, and no other bit: bytes with the
/// high bit set, low 7 bits below 0x20 (+0x60 stays below 0x80), or 0x7f (+1 reaches it).
#[inline(always)]
fn not_printable_mask(x: u64) -> u64 {
    let y = x & !HIGHS;
    (x | !(y.wrapping_add(ONES * 0x60)) | y.wrapping_add(ONES)) & HIGHS
}

/// The first index of `b` in `hay`.
pub fn find_byte(hay: &[u8], b: u8) -> Option<usize> {
    let splat = ONES * b as u64;
    let mut i = 0;
    while i + 8 <= hay.len() {
        if zero_mask(word(hay, i) ^ splat) != 0 {
            break;
        }
        i += 8;
    }
    while i < hay.len() {
        if hay[i] == b {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// A byte a plan line may hold raw: printable ASCII and the blanks between words.
// Plain comparisons: at opt-level "z", `RangeInclusive::contains` stays a call per byte.
#[allow(clippy::manual_range_contains)]
#[inline(always)]
pub fn raw_byte_ok(b: u8) -> bool {
    (b >= 0x20 && b <= 0x7e) || (b >= b'\t' && b <= b'\r' && b != b'\n')
}

/// The whitespace-separated tokens of one line's content, once `Lines` found no byte in it
/// that may not stand raw: then every byte up to 0x20 is a blank, and every other one is part
/// of a word.
pub struct Tokens<'a> {
    rest: &'a [u8],
}

impl<'a> Tokens<'a> {
    pub fn new(line: &'a [u8]) -> Self {
        Tokens { rest: line }
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        // Pattern slices, not indexes: at opt-level "z" every `&r[i..]` is a call.
        let mut r = self.rest;
        while let [b, tail @ ..] = r {
            if *b > b' ' {
                break;
            }
            r = tail;
        }
        if r.is_empty() {
            self.rest = r;
            return None;
        }
        let word = r;
        let mut len = 0;
        while let [b, tail @ ..] = r {
            if *b <= b' ' {
                break;
            }
            len += 1;
            r = tail;
        }
        self.rest = r;
        word.get(..len)
    }
}

/// How many bytes of `hay` are `b`, a word at a time.
pub fn count_byte(hay: &[u8], b: u8) -> usize {
    let splat = ONES * b as u64;
    let (mut n, mut i) = (0usize, 0usize);
    while i + 8 <= hay.len() {
        n += zero_mask(word(hay, i) ^ splat).count_ones() as usize;
        i += 8;
    }
    n + hay[i..].iter().filter(|&&x| x == b).count()
}

/// Why an encoded string is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum EncodingError {
    /// `%` not followed by two hex digits.
    Malformed,
    /// `%00`: a NUL cannot be passed to the kernel.
    Nul,
}

/// Decodes one percent-encoded element into `out`, returning its length. `out` must be at least
/// as long as `enc` (decoding never grows).
pub fn decode_into(enc: &[u8], out: &mut [u8]) -> Result<usize, EncodingError> {
    let (mut i, mut n) = (0, 0);
    while i < enc.len() {
        let b = if enc[i] == b'%' {
            let hi = enc.get(i + 1).and_then(|&c| hex_digit(c));
            let lo = enc.get(i + 2).and_then(|&c| hex_digit(c));
            match (hi, lo) {
                (Some(h), Some(l)) => {
                    i += 3;
                    let v = h * 16 + l;
                    if v == 0 {
                        return Err(EncodingError::Nul);
                    }
                    v
                }
                _ => return Err(EncodingError::Malformed),
            }
        } else {
            i += 1;
            enc[i - 1]
        };
        out[n] = b;
        n += 1;
    }
    Ok(n)
}

/// Checks an encoded element and returns its decoded length.
pub fn decoded_len(enc: &[u8]) -> Result<usize, EncodingError> {
    let (mut i, mut n) = (0, 0);
    while i < enc.len() {
        if enc[i] == b'%' {
            match (enc.get(i + 1).and_then(|&c| hex_digit(c)), enc.get(i + 2).and_then(|&c| hex_digit(c))) {
                (Some(0), Some(0)) => return Err(EncodingError::Nul),
                (Some(_), Some(_)) => i += 3,
                _ => return Err(EncodingError::Malformed),
            }
        } else {
            i += 1;
        }
        n += 1;
    }
    Ok(n)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Whether a writer must encode byte `b` in a path or argv element.
pub fn must_encode(b: u8) -> bool {
    !(0x21..=0x7e).contains(&b) || matches!(b, b'%' | b',' | b'#')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_tokens() {
        let text = b"fdslot 1 # magic\n\n  at 1:2\tcloexec\r\n# only a comment";
        let lines: Vec<_> = Lines::new(text).collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], (1, &b"fdslot 1 "[..], None));
        let toks: Vec<_> = Tokens::new(lines[2].1).collect();
        assert_eq!(toks, vec![&b"at"[..], b"1:2", b"cloexec"]);
        assert_eq!(Tokens::new(lines[3].1).count(), 0);
    }

    /// The word-at-a-time scans agree with a byte-by-byte reading: every byte value, at every
    /// position of lines up to 24 bytes long, over a background of ordinary bytes.
    #[test]
    fn word_scans_match_bytes() {
        for len in 0..24usize {
            for at in 0..len.max(1) {
                for b in 0..=255u8 {
                    let mut line = vec![b'a'; len];
                    if at < len {
                        line[at] = b;
                    }
                    let want = line.iter().position(|&x| x == b);
                    assert_eq!(find_byte(&line, b), want, "find {b:#x} in {line:?}");
                    assert_eq!(count_byte(&line, b), line.iter().filter(|&&x| x == b).count(), "count {b:#x} in {line:?}");
                    assert_eq!(count_byte(&line, b'a'), line.iter().filter(|&&x| x == b'a').count(), "count 'a' in {line:?}");
                    let ok = |x: u8| (0x20..=0x7e).contains(&x) || matches!(x, b'\t' | b'\r' | b'\x0b' | b'\x0c');
                    // One line's scan: its end, its comment, its first refused byte.
                    let end = line.iter().position(|&x| x == b'\n').unwrap_or(len);
                    let content = line[..end].iter().position(|&x| x == b'#').unwrap_or(end);
                    let refused = line[..content].iter().copied().find(|&x| !ok(x));
                    assert_eq!(scan_line(&line), (end, content, refused), "scan of {line:?}");
                    let mut two = line.clone();
                    two.extend_from_slice(b"\nnext line");
                    assert_eq!(scan_line(&two), (end, content, refused), "scan of {two:?}");
                }
            }
        }
    }

    #[test]
    fn percent() {
        let mut out = [0u8; 32];
        let n = decode_into(b"a%20b%2c%2C%ff", &mut out).unwrap();
        assert_eq!(&out[..n], b"a b,,\xff");
        assert_eq!(decode_into(b"%00", &mut out), Err(EncodingError::Nul));
        assert_eq!(decode_into(b"%0", &mut out), Err(EncodingError::Malformed));
        assert_eq!(decode_into(b"%zz", &mut out), Err(EncodingError::Malformed));
        assert_eq!(decoded_len(b"a%20b"), Ok(3));
        assert_eq!(decoded_len(b"%00"), Err(EncodingError::Nul));
        assert!(must_encode(b' ') && must_encode(b'%') && must_encode(0x80) && !must_encode(b'a'));
    }
}
