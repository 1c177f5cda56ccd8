//! A small in-place heapsort. `core`'s `sort_unstable` is fast but costs several kilobytes of
//! code per element type, which an image injected into other processes cannot afford.

/// Sorts `v` by `key`, in place, in O(n log n) without allocating.
pub fn sort_by_key<T, K: Ord>(v: &mut [T], key: impl Fn(&T) -> K) {
    let n = v.len();
    for start in (0..n / 2).rev() {
        sift_down(v, start, n, &key);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift_down(v, 0, end, &key);
    }
}

fn sift_down<T, K: Ord>(v: &mut [T], mut root: usize, end: usize, key: &impl Fn(&T) -> K) {
    loop {
        let mut child = 2 * root + 1;
        if child >= end {
            return;
        }
        if child + 1 < end && key(&v[child]) < key(&v[child + 1]) {
            child += 1;
        }
        if key(&v[root]) >= key(&v[child]) {
            return;
        }
        v.swap(root, child);
        root = child;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sorts() {
        let mut x: u64 = 12345;
        for n in [0usize, 1, 2, 3, 10, 1000] {
            let mut v: Vec<u64> = (0..n)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    x >> 40
                })
                .collect();
            let mut w = v.clone();
            super::sort_by_key(&mut v, |&a| a);
            w.sort();
            assert_eq!(v, w);
        }
    }
}
