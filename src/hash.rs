//! SipHash-2-4: the plan hash that tasks compare, and the keyed hash that turns a session into
//! unpredictable socket names.

/// A SipHash-2-4 state over a 128-bit key.
pub struct SipHasher {
    v: [u64; 4],
    tail: u64,
    ntail: usize,
    total: u64,
}

impl SipHasher {
    pub fn new(k0: u64, k1: u64) -> Self {
        SipHasher {
            v: [k0 ^ 0x736f6d6570736575, k1 ^ 0x646f72616e646f6d, k0 ^ 0x6c7967656e657261, k1 ^ 0x7465646279746573],
            tail: 0,
            ntail: 0,
            total: 0,
        }
    }

    #[inline(always)]
    fn round(&mut self) {
        let v = &mut self.v;
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }

    #[inline(always)]
    fn block(&mut self, m: u64) {
        self.v[3] ^= m;
        self.round();
        self.round();
        self.v[0] ^= m;
    }

    pub fn write(&mut self, bytes: &[u8]) -> &mut Self {
        let mut rest = bytes;
        self.total = self.total.wrapping_add(bytes.len() as u64);
        while self.ntail != 0 && !rest.is_empty() {
            self.tail |= (rest[0] as u64) << (8 * self.ntail);
            self.ntail = (self.ntail + 1) % 8;
            rest = &rest[1..];
            if self.ntail == 0 {
                let m = self.tail;
                self.tail = 0;
                self.block(m);
            }
        }
        while rest.len() >= 8 {
            let m = u64::from_le_bytes([rest[0], rest[1], rest[2], rest[3], rest[4], rest[5], rest[6], rest[7]]);
            self.block(m);
            rest = &rest[8..];
        }
        for &b in rest {
            self.tail |= (b as u64) << (8 * self.ntail);
            self.ntail += 1;
        }
        self
    }

    pub fn u64(&mut self, x: u64) -> &mut Self {
        if self.ntail != 0 {
            return self.write(&x.to_le_bytes());
        }
        // On a block boundary, the word is the block (names hash two of them per socket).
        self.total = self.total.wrapping_add(8);
        self.block(x);
        self
    }

    pub fn finish(&self) -> u64 {
        let mut s = SipHasher { v: self.v, tail: 0, ntail: 0, total: 0 };
        let m = self.tail | (self.total << 56);
        s.block(m);
        s.v[2] ^= 0xff;
        for _ in 0..4 {
            s.round();
        }
        s.v[0] ^ s.v[1] ^ s.v[2] ^ s.v[3]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_vector() {
        // The SipHash paper's test: key 00..0f, message 00..0e.
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let msg: Vec<u8> = (0..15).collect();
        assert_eq!(SipHasher::new(k0, k1).write(&msg).finish(), 0xa129ca6149be45e5);
        // Split writes give the same result.
        assert_eq!(SipHasher::new(k0, k1).write(&msg[..3]).write(&msg[3..]).finish(), 0xa129ca6149be45e5);
    }

    #[test]
    fn words_hash_as_their_bytes() {
        // On a block boundary (the fast path) and off it.
        let (a, b) = (0x0123_4567_89ab_cdefu64, 0xfedc_ba98_7654_3210u64);
        let mut bytes = a.to_le_bytes().to_vec();
        bytes.extend_from_slice(&b.to_le_bytes());
        assert_eq!(SipHasher::new(1, 2).u64(a).u64(b).finish(), SipHasher::new(1, 2).write(&bytes).finish());
        let mut off = vec![7u8];
        off.extend_from_slice(&bytes);
        assert_eq!(SipHasher::new(1, 2).write(&[7]).u64(a).u64(b).finish(), SipHasher::new(1, 2).write(&off).finish());
    }
}
