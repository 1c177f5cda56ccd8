//! Tasks of one `restore` session must agree on the plan and the options that shape it. Names
//! are derived from the plan hash and --batch, so tasks that disagree cannot reach each other:
//! they fail within the timeout, naming the peer, and no file changes hands.

mod common;

use common::*;
use std::time::Duration;

fn two_tasks(d: &TmpDir, extra: u32) -> std::path::PathBuf {
    let mut p = Plan::new();
    p.task(1).task(2);
    p.reg(1, &d.file("a", b"a"), "rdonly").at(1, 3).at(2, 3);
    p.pipe(2).r(2, 4).w(1, 4);
    if extra > 0 {
        p.reg(extra, &d.file("b", b"b"), "rdonly").at(1, 9);
    }
    d.plan(&p.text())
}

fn both(plan1: &std::path::Path, args1: &[&str], plan2: &std::path::Path, args2: &[&str], tag: &str) -> (Output, Output) {
    let s = session(tag);
    let mut a = vec!["--timeout", "2"];
    a.extend_from_slice(args1);
    let mut b = vec!["--timeout", "2"];
    b.extend_from_slice(args2);
    let mut c1 = restore_cmd(plan1, 1, &s, &a);
    c1.args(["--", "/bin/true"]);
    let mut c2 = restore_cmd(plan2, 2, &s, &b);
    c2.args(["--", "/bin/true"]);
    let h = std::thread::spawn(move || output(c2));
    let o1 = output(c1);
    (o1, h.join().unwrap())
}

fn assert_disagree(o1: &Output, o2: &Output) {
    for (t, o, peer) in [(1, o1, "task 2"), (2, o2, "task 1")] {
        assert_eq!(o.code(), Some(3), "task {t} must fail as a peer failure: {o}");
        assert!(o.stderr.contains(peer), "task {t} must name its peer: {o}");
        assert!(o.elapsed < Duration::from_millis(3500), "within the timeout: {o}");
    }
}

#[test]
fn different_batch() {
    let d = TmpDir::new("agree-batch");
    let plan = two_tasks(&d, 0);
    let (o1, o2) = both(&plan, &["--batch", "1"], &plan, &[], "agree-batch");
    assert_disagree(&o1, &o2);
}

#[test]
fn different_plan() {
    let d = TmpDir::new("agree-plan");
    let plan1 = two_tasks(&d, 0);
    let d2 = TmpDir::new("agree-plan2");
    let plan2 = two_tasks(&d2, 7);
    let (o1, o2) = both(&plan1, &[], &plan2, &[], "agree-plan");
    assert_disagree(&o1, &o2);
}

/// The control: the same plan and options succeed.
#[test]
fn same_plan_and_options() {
    let d = TmpDir::new("agree-same");
    let plan = two_tasks(&d, 0);
    let (o1, o2) = both(&plan, &["--batch", "1"], &plan, &["--batch", "1"], "agree-same");
    assert_eq!(o1.code(), Some(0), "{o1}");
    assert_eq!(o2.code(), Some(0), "{o2}");
}
