//! Small sorts: an in-place heapsort, a linear LSD radix sort and a merge sort, both through
//! caller-given scratch. `core`'s `sort_unstable` is fast but costs several kilobytes of code
//! per element type, which an image injected into other processes cannot afford.

/// Sorts `v` by `key`, in place, in O(n log n) without allocating; in O(n) when it already is
/// (received fds come in ascending order, objects mostly by id).
pub fn sort_by_key<T, K: Ord>(v: &mut [T], key: impl Fn(&T) -> K) {
    let n = v.len();
    if v.windows(2).all(|w| key(&w[0]) <= key(&w[1])) {
        return;
    }
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

/// Sorts `v` stably by the low `bits` bits of `key`, through `scratch` (at least as long as
/// `v`): an LSD radix sort, one pass per byte of key that is not the same in every element,
/// so linear in `v`'s length (the plan's targets and received files: tens of thousands).
pub fn radix_sort_by_key<T: Copy>(v: &mut [T], scratch: &mut [T], bits: u32, key: impl Fn(&T) -> u64) {
    let n = v.len();
    let scratch = &mut scratch[..n];
    let mut in_v = true;
    let mut shift = 0;
    while shift < bits {
        let (src, dst): (&[T], &mut [T]) = if in_v { (&*v, &mut *scratch) } else { (&*scratch, &mut *v) };
        let mut count = [0u32; 257];
        for x in src {
            count[((key(x) >> shift) & 0xff) as usize + 1] += 1;
        }
        shift += 8;
        // Every element has the same digit here: nothing moves.
        if count.iter().any(|&c| c as usize == n) {
            continue;
        }
        for d in 1..257 {
            count[d] += count[d - 1];
        }
        for x in src {
            let d = ((key(x) >> (shift - 8)) & 0xff) as usize;
            dst[count[d] as usize] = *x;
            count[d] += 1;
        }
        in_v = !in_v;
    }
    if !in_v {
        v.copy_from_slice(scratch);
    }
}

/// Sorts `v` by `less` with a merge sort through `scratch` (at least as long as `v`): about
/// n log2 n comparisons, half of heapsort's, for comparisons that cost a syscall (kcmp).
pub fn merge_sort_by<T: Copy>(v: &mut [T], scratch: &mut [T], mut less: impl FnMut(&T, &T) -> bool) {
    let n = v.len();
    let scratch = &mut scratch[..n];
    let mut width = 1;
    // Runs alternate between v and scratch; `in_v` says where the sorted runs are now.
    let mut in_v = true;
    while width < n {
        let (src, dst): (&[T], &mut [T]) = if in_v { (&*v, &mut *scratch) } else { (&*scratch, &mut *v) };
        let mut start = 0;
        while start < n {
            let mid = (start + width).min(n);
            let end = (start + 2 * width).min(n);
            merge(&src[start..mid], &src[mid..end], &mut dst[start..end], &mut less);
            start = end;
        }
        in_v = !in_v;
        width *= 2;
    }
    if !in_v {
        v.copy_from_slice(scratch);
    }
}

fn merge<T: Copy>(a: &[T], b: &[T], out: &mut [T], less: &mut impl FnMut(&T, &T) -> bool) {
    // Already in order: one comparison instead of a merge.
    if a.is_empty() || b.is_empty() || !less(&b[0], &a[a.len() - 1]) {
        out[..a.len()].copy_from_slice(a);
        out[a.len()..].copy_from_slice(b);
        return;
    }
    let (mut i, mut j, mut k) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        // Ties take from `a`: the sort is stable.
        if less(&b[j], &a[i]) {
            out[k] = b[j];
            j += 1;
        } else {
            out[k] = a[i];
            i += 1;
        }
        k += 1;
    }
    out[k..k + a.len() - i].copy_from_slice(&a[i..]);
    k += a.len() - i;
    out[k..].copy_from_slice(&b[j..]);
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
            let mut m = v.clone();
            let mut scratch = vec![0; n];
            let mut r = v.clone();
            let mut rs = vec![0; n];
            super::radix_sort_by_key(&mut r, &mut rs, 24, |&a| a);
            super::sort_by_key(&mut v, |&a| a);
            super::sort_by(&mut u, |a, b| a < b);
            super::merge_sort_by(&mut m, &mut scratch, |a, b| a < b);
            assert_eq!(v, w);
            assert_eq!(u, w);
            assert_eq!(m, w);
            assert_eq!(r, w);
        }
    }

    /// radix_sort_by_key is stable (roles rely on it: a run of one receiver and opener stays
    /// in fd order) and looks only at the low bytes of the key it is given.
    #[test]
    fn radix_is_stable_on_its_bits() {
        let mut x: u64 = 999;
        for n in [0usize, 1, 2, 3, 10, 31, 32, 33, 100, 1000] {
            let v: Vec<(u64, usize)> = (0..n)
                .map(|i| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    // Few distinct low 16 bits, noise above them.
                    ((x >> 20) & 0xffff_0000 | (x >> 60), i)
                })
                .collect();
            let mut want = v.clone();
            want.sort_by_key(|&(k, _)| k & 0xffff);
            let mut got = v.clone();
            let mut scratch = vec![(0, 0); n];
            super::radix_sort_by_key(&mut got, &mut scratch, 16, |&(k, _)| k);
            assert_eq!(got, want, "n = {n}");
        }
    }
}
