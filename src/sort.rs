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

/// Sorts `v` in place by `less`, a strict weak order that may be costly (a syscall such as
/// kcmp): heapsort makes O(n log n) calls and never compares an element with itself.
pub fn sort_by<T>(v: &mut [T], mut less: impl FnMut(&T, &T) -> bool) {
    let n = v.len();
    for start in (0..n / 2).rev() {
        sift_down_by(v, start, n, &mut less);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift_down_by(v, 0, end, &mut less);
    }
}

fn sift_down_by<T>(v: &mut [T], mut root: usize, end: usize, less: &mut impl FnMut(&T, &T) -> bool) {
    loop {
        let mut child = 2 * root + 1;
        if child >= end {
            return;
        }
        if child + 1 < end && less(&v[child], &v[child + 1]) {
            child += 1;
        }
        if !less(&v[root], &v[child]) {
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
            w.sort();
            let mut u = v.clone();
            super::sort_by_key(&mut v, |&a| a);
            super::sort_by(&mut u, |a, b| a < b);
            assert_eq!(v, w);
            assert_eq!(u, w);
        }
    }
}
