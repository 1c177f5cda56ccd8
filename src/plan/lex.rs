//! Lines and tokens of plan format 1, and the percent-encoding of paths and argv.

/// Splits the plan into (line number, content without comment) pairs.
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
    type Item = (u32, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let end = self.rest.iter().position(|&b| b == b'\n').unwrap_or(self.rest.len());
        let line = &self.rest[..end];
        self.rest = if end < self.rest.len() { &self.rest[end + 1..] } else { &[] };
        self.number += 1;
        let content = match line.iter().position(|&b| b == b'#') {
            Some(i) => &line[..i],
            None => line,
        };
        Some((self.number, content))
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\x0b' | b'\x0c')
}

/// The whitespace-separated tokens of one line.
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
        let start = self.rest.iter().position(|&b| !is_space(b))?;
        let rest = &self.rest[start..];
        let end = rest.iter().position(|&b| is_space(b)).unwrap_or(rest.len());
        self.rest = &rest[end..];
        Some(&rest[..end])
    }
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
        assert_eq!(lines[0], (1, &b"fdslot 1 "[..]));
        let toks: Vec<_> = Tokens::new(lines[2].1).collect();
        assert_eq!(toks, vec![&b"at"[..], b"1:2", b"cloexec"]);
        assert_eq!(Tokens::new(lines[3].1).count(), 0);
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
