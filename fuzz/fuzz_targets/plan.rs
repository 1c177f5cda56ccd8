//! Fuzz target: any bytes through the plan parser and validator. Every input must end in a
//! valid plan (whose invariants are checked here, and whose roles are computed for both message
//! forms) or in one error line with a line number inside the text; never a panic or a hang.
#![no_main]

use fdslot::plan::{self, lex, parse, Plan, NR_OPEN};
use fdslot::restore::roles::Roles;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check_one(data);
    // SAFETY: nothing borrowed from the arenas outlives check_one.
    unsafe { fdslot::arena::release_all() };
});

fn check_one(data: &[u8]) {
    match parse::load(data) {
        Ok(p) => valid_plan(&p),
        Err(mut e) => {
            let lines = data.split(|&b| b == b'\n').count().max(1) as u32;
            assert!(e.line >= 1 && e.line <= lines, "error line {} outside 1..={lines}", e.line);
            let msg = e.msg.as_bytes();
            assert!(!msg.is_empty(), "an error says what is wrong");
            assert!(msg.iter().all(|&b| (0x20..0x7f).contains(&b)), "error is one printable line: {msg:?}");
        }
    }
}

fn valid_plan(p: &Plan<'_>) {
    let nt = p.tasks.len();
    assert!((1..=65535).contains(&nt));
    for (i, t) in p.tasks.iter().enumerate() {
        assert!(t.id >= 1);
        assert_eq!(p.task_by_id(t.id), Some(i));
        assert!((t.parent as usize) <= i, "a parent is declared before its child");
        assert!((t.owner as usize) < nt && p.tasks[t.owner as usize].files == 0);
        for a in p.span(t.exec).split(|&b| b == b',').filter(|_| t.exec.len > 0) {
            decoded_no_nul(a, usize::MAX);
        }
    }
    let mut has_target = vec![false; p.objects.len()];
    for w in p.targets.windows(2) {
        assert!((w[0].task, w[0].fd) < (w[1].task, w[1].fd), "targets sorted, each slot once");
    }
    for x in p.targets {
        assert!(x.fd < NR_OPEN);
        assert!((x.task as usize) < nt && p.tasks[x.task as usize].files == 0);
        let o = &p.objects[x.object as usize];
        assert!(x.end == 0 || plan::two_ended(o.kind));
        has_target[x.object as usize] = true;
        let owner = &p.tasks[x.task as usize];
        if owner.nofile != 0 {
            assert!(x.fd < owner.nofile);
        }
    }
    assert!(has_target.iter().all(|&h| h), "every object has a target");
    for t in 0..nt {
        for x in p.task_targets(t) {
            assert_eq!(x.task as usize, t);
        }
    }
    for o in p.objects {
        assert!((o.opener as usize) < nt && p.tasks[o.opener as usize].files == 0);
        if matches!(o.kind, plan::KIND_REG | plan::KIND_FIFO) {
            decoded_no_nul(p.span(o.path), plan::MAX_PATH);
        }
        if o.kind == plan::KIND_MEMFD {
            decoded_no_nul(p.span(o.path), plan::MAX_MEMFD_NAME);
        }
        if o.data.len > 0 {
            decoded_no_nul(p.span(o.data), plan::MAX_PATH);
        }
        if o.kind == plan::KIND_REOPEN {
            assert_eq!(p.objects[o.value as usize].kind, plan::KIND_PIPE);
        }
    }
    for batch in [1u16, 7, 253] {
        roles(p, batch);
    }
}

/// An encoded path or argument decodes, fits, and holds no NUL (the kernel would cut it there).
fn decoded_no_nul(enc: &[u8], max: usize) {
    let mut out = vec![0u8; enc.len()];
    let n = lex::decode_into(enc, &mut out).expect("a valid plan's strings decode");
    assert!(n <= max && !out[..n].contains(&0), "decoded {:?}", &out[..n]);
}

/// Roles as every task would compute them: batches of at most `size` reps from one opener to one
/// receiver, parked in the slot of their first file; every received rep is a target of its
/// receiver opened elsewhere.
fn roles(p: &Plan<'_>, size: u16) {
    let r = Roles::compute(p, size).expect("roles");
    let mut carried = 0usize;
    for t in 0..p.tasks.len() {
        for b in r.receives(t) {
            assert!(b.count >= 1 && b.count <= size);
            assert_eq!(b.receiver as usize, t);
            assert_ne!(b.opener as usize, t);
            let e = r.entries(b);
            assert_eq!(p.targets[e[0] as usize].fd, b.slot);
            for &x in e {
                let x = &p.targets[x as usize];
                assert_eq!(x.task as usize, t);
                assert_eq!(p.objects[x.object as usize].opener, b.opener);
            }
            carried += e.len();
        }
        for &k in r.sends(t) {
            assert_eq!(r.batches[k as usize].opener as usize, t);
        }
        for &o in r.opens(t) {
            assert_eq!(p.objects[o as usize].opener as usize, t);
        }
    }
    assert_eq!(carried, r.recv.len());
    assert!(carried <= p.targets.len());
}
