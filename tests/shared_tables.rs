//! `task ID ... files=T`: tasks sharing one fd table (CLONE_FILES). In `run --stop` every
//! member is stopped, kcmp(KCMP_FILES) says the members share one table and that tasks of
//! different tables do not, and each member's /proc/PID/fd is the group's whole layout (the
//! union of the targets written on any member). `check` rejects sharing clone cannot create;
//! `restore` refuses a task that shares another's table.

#[macro_use]
mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

fn check(p: &Plan, d: &TmpDir, batch: Option<u32>) {
    let args = batch_args(batch);
    run_and_check(p, d, &strs(&args));
}

/// Puts a few objects of several kinds into the plan: some targets on each of `tasks`, openers
/// inside and outside the group, fds `base..`.
fn objects(p: &mut Plan, d: &TmpDir, tasks: &[u16], base: u32, id0: u32) {
    let n = tasks.len();
    let t = |i: usize| tasks[i % n];
    let f = d.file(&format!("f{id0}"), b"shared table");
    p.reg_pos(id0, &f, "rdonly", 3)
        .at(t(0), base)
        .at(t(1), base + 1);
    p.pipe(id0 + 1)
        .r(t(1), base + 2)
        .w(t(2), base + 3)
        .w(t(0), base + 4);
    p.socketpair(id0 + 2, "stream", "")
        .opener(t(2))
        .a(t(0), base + 5)
        .b(t(1), base + 6);
    p.eventfd(id0 + 3, Some(3), "semaphore")
        .at_ce(t(2), base + 7);
    p.memfd(
        id0 + 4,
        MemfdSpec {
            name: b"table".to_vec(),
            size: Some(100),
            ..Default::default()
        },
    )
    .opener(t(1))
    .at(t(0), base + 8);
}

/// Parent and child share (`parent=1 files=1`); task 3 has its own table and exchanges files
/// with the group both ways.
fn parent_child(batch: Option<u32>) {
    let d = TmpDir::new("shpc");
    let mut p = Plan::new();
    p.task(1).child(2, 1).task(3);
    p.files(2, 1);
    objects(&mut p, &d, &[1, 2, 3], 3, 1);
    objects(&mut p, &d, &[2, 3, 1], 20, 10);
    p.reg(30, &d.file("own", b"x"), "rdonly")
        .opener(3)
        .at(2, 40);
    check(&p, &d, batch);
}
forms!(parent_child: batch1 = Some(1), batch_default = None);

/// Siblings share (`parent=1 files=2`): created from task 2 with CLONE_PARENT, so still task
/// 1's child; task 1 and task 4 (another child of 1) have tables of their own.
fn siblings(batch: Option<u32>) {
    let d = TmpDir::new("shsib");
    let mut p = Plan::new();
    p.task(1).child(2, 1).child(3, 1).child(4, 1);
    p.files(3, 2);
    objects(&mut p, &d, &[2, 3, 1], 3, 1);
    objects(&mut p, &d, &[3, 4, 2], 30, 10);
    check(&p, &d, batch);
}
forms!(siblings: batch1 = Some(1), batch_default = None);

/// A chain: 2 shares 1's table (child), 3 shares 2's (sibling of 2): one table of three.
fn chain(batch: Option<u32>) {
    let d = TmpDir::new("shchain");
    let mut p = Plan::new();
    p.task(1).child(2, 1).child(3, 1).task(4);
    p.files(2, 1).files(3, 2);
    objects(&mut p, &d, &[3, 1, 2], 3, 1);
    objects(&mut p, &d, &[4, 3, 4], 30, 10);
    check(&p, &d, batch);
}
forms!(chain: batch1 = Some(1), batch_default = None);

/// Two groups and loners: {1, 2} (child), {3, 4} (siblings under 5), 5 and 6 alone.
fn two_groups(batch: Option<u32>) {
    let d = TmpDir::new("sh2g");
    let mut p = Plan::new();
    p.task(1)
        .child(2, 1)
        .task(5)
        .child(3, 5)
        .child(4, 5)
        .task(6);
    p.files(2, 1).files(4, 3);
    objects(&mut p, &d, &[1, 3, 5], 3, 1);
    objects(&mut p, &d, &[4, 2, 6], 20, 10);
    objects(&mut p, &d, &[6, 5, 2], 40, 20);
    check(&p, &d, batch);
}
forms!(two_groups: batch1 = Some(1), batch_default = None);

/// Two root tasks (both children of run) are siblings too: `task 2 files=1`.
#[test]
fn root_siblings() {
    let d = TmpDir::new("shroot");
    let mut p = Plan::new();
    p.task(1).task(2).task(3);
    p.files(2, 1);
    objects(&mut p, &d, &[2, 1, 3], 3, 1);
    check(&p, &d, None);
}

/// A group whose only targets are written on the sharer, the owner holding none directly.
#[test]
fn targets_only_on_sharer() {
    let d = TmpDir::new("shonly");
    let mut p = Plan::new();
    p.task(1).child(2, 1).task(3);
    p.files(2, 1);
    p.reg(1, &d.file("a", b"a"), "rdonly")
        .at(2, 3)
        .at(2, 4)
        .at(3, 3);
    p.pipe(2).opener(3).r(2, 0).w(3, 0);
    check(&p, &d, Some(1));
    check(&p, &d, None);
}

/// Stopped members share one table (KCMP_FILES) and list identical fds; explicitly, in
/// addition to the checker.
#[test]
fn members_list_the_same_fds() {
    let d = TmpDir::new("shsame");
    let mut p = Plan::new();
    p.task(1).child(2, 1).child(3, 1);
    p.files(3, 2);
    p.reg(1, &d.file("a", b"a"), "rdonly").at(2, 5);
    p.reg(2, &d.file("b", b"b"), "rdonly").at(3, 6).at(1, 6);
    let plan = d.plan(&p.text());
    let r = run_stop(&plan, &[]);
    assert_plan(
        &p,
        &r.pids,
        &CheckOpts {
            stopped: true,
            ..Default::default()
        },
    );
    let (p2, p3) = (r.pid(2), r.pid(3));
    assert_eq!(kcmp_files(p2, p3), Ok(0), "tasks 2 and 3 share one table");
    assert_ne!(kcmp_files(r.pid(1), p2), Ok(0));
    assert_eq!(list_fds(p2).unwrap(), BTreeSet::from([5, 6]));
    assert_eq!(list_fds(p3).unwrap(), BTreeSet::from([5, 6]));
    assert_eq!(list_fds(r.pid(1)).unwrap(), BTreeSet::from([6]));
    assert_eq!(
        proc_ppid(p3),
        Some(r.pid(1)),
        "the sibling is task 1's child (CLONE_PARENT)"
    );
    r.finish();
}

/// An exec ends the sharing: after resume both members exec sleep, and each then has its own
/// copy of the table without the cloexec fds.
#[test]
fn exec_ends_sharing() {
    let d = TmpDir::new("shexec");
    let mut p = Plan::new();
    p.task(1).child(2, 1);
    p.files(2, 1);
    p.exec(1, &["/bin/sleep", "100"]);
    p.exec(2, &["/bin/sleep", "100"]);
    p.reg(1, &d.file("a", b"a"), "rdonly").at(1, 3).at_ce(2, 4);
    p.pipe(2).r(2, 5).w_ce(1, 6);
    let plan = d.plan(&p.text());
    let r = run_stop(&plan, &[]);
    assert_plan(
        &p,
        &r.pids,
        &CheckOpts {
            stopped: true,
            ..Default::default()
        },
    );
    r.resume();
    for t in [1, 2] {
        assert!(
            wait_sleeping(r.pid(t), Duration::from_secs(10)),
            "task {t} did not exec sleep"
        );
        assert!(
            wait_fds(r.pid(t), &BTreeSet::from([3, 5]), Duration::from_secs(5)),
            "task {t} after exec: fds {:?}, want [3, 5]",
            list_fds(r.pid(t))
        );
    }
    assert_ne!(
        kcmp_files(r.pid(1), r.pid(2)),
        Ok(0),
        "after exec each has its own table"
    );
    assert_eq!(
        kcmp_file(r.pid(1), 3, r.pid(2), 3),
        Ok(0),
        "the copies still share the files"
    );
    r.finish();
}

// --- check errors -----------------------------------------------------------------------------

const H: &str = "fdslot 1\n";

#[test]
fn invalid_files() {
    let cases: &[(&str, &str, &[u32])] = &[
        ("grandchild", "task 1\ntask 2 parent=1\ntask 3 parent=2 files=1\nreg 1 /x\n  at 3:3\n", &[4]),
        ("unrelated root", "task 1\ntask 2\ntask 3 parent=1 files=2\nreg 1 /x\n  at 3:3\n", &[4]),
        ("cousin", "task 1\ntask 2 parent=1\ntask 3 parent=1\ntask 4 parent=2\ntask 5 parent=3 files=4\nreg 1 /x\n  at 5:3\n", &[6]),
        ("parent shares child's", "task 1 files=2\ntask 2 parent=1\nreg 1 /x\n  at 1:3\n", &[2]),
        ("self", "task 1\ntask 2 parent=1 files=2\nreg 1 /x\n  at 2:3\n", &[3]),
        ("self root", "task 1 files=1\nreg 1 /x\n  at 1:3\n", &[2]),
        ("undeclared", "task 1\ntask 2 parent=1 files=9\nreg 1 /x\n  at 2:3\n", &[3]),
        ("cycle", "task 1\ntask 2 parent=1 files=3\ntask 3 parent=1 files=2\nreg 1 /x\n  at 2:3\n", &[3, 4]),
        ("bad value", "task 1\ntask 2 parent=1 files=x\nreg 1 /x\n  at 2:3\n", &[3]),
        ("zero", "task 1\ntask 2 parent=1 files=0\nreg 1 /x\n  at 2:3\n", &[3]),
        ("repeated", "task 1\ntask 2 parent=1 files=1 files=1\nreg 1 /x\n  at 2:3\n", &[3]),
        ("empty", "task 1\ntask 2 parent=1 files=\nreg 1 /x\n  at 2:3\n", &[3]),
    ];
    for (name, body, lines) in cases {
        check_rejects_at(name, &format!("{H}{body}"), lines);
    }
}

#[test]
fn duplicate_fd_across_members() {
    // The same fd on two members names one slot of the one table: planned twice.
    check_rejects_at(
        "two objects",
        &format!("{H}task 1\ntask 2 parent=1 files=1\nreg 1 /x\n  at 1:3\nreg 2 /y\n  at 2:3\n"),
        &[7],
    );
    check_rejects_at(
        "one object",
        &format!("{H}task 1\ntask 2 parent=1 files=1\nreg 1 /x\n  at 1:3\n  at 2:3\n"),
        &[6],
    );
    check_rejects_at(
        "chain",
        &format!("{H}task 1\ntask 2 parent=1 files=1\ntask 3 parent=1 files=2\npipe 1\n  r 3:7\n  w 1:7\n"),
        &[7],
    );
    check_rejects_at(
        "pipe ends",
        &format!("{H}task 1\ntask 2 parent=1\ntask 3 parent=1 files=2\npipe 1\n  r 2:4\n  w 3:4\n"),
        &[7],
    );
    // Different tables: the same fd number is fine.
    check_accepts(
        "separate tables",
        &format!(
            "{H}task 1\ntask 2 parent=1 files=1\ntask 3 parent=1\nreg 1 /x\n  at 1:3\n  at 3:3\n"
        ),
    );
    check_accepts(
        "valid group",
        &format!("{H}task 1\ntask 2 parent=1 files=1\ntask 3 parent=1 files=2\nreg 1 /x\n  at 1:3\n  at 2:4\n  at 3:5\n"),
    );
}

// --- restore ----------------------------------------------------------------------------------

fn group_plan(d: &TmpDir, created: &Path) -> Plan {
    let mut p = Plan::new();
    p.task(1).child(2, 1).task(3);
    p.files(2, 1);
    p.reg(1, created, "wronly,creat").at(1, 3).at(3, 3);
    p.reg(2, &d.file("b", b"b"), "rdonly").at(2, 4).at(3, 4);
    p.pipe(3).r(2, 5).w(3, 5);
    p
}

/// `fdslot restore` of a task that shares another's table is refused (exit 2) before anything
/// is touched.
#[test]
fn restore_of_sharer_refused() {
    let d = TmpDir::new("shrest");
    let created = d.path("must-not-exist");
    let p = group_plan(&d, &created);
    let plan = d.plan(&p.text());
    let s = session("shrest");
    let mut c = restore_cmd(&plan, 2, &s, &["--timeout", "3"]);
    c.args(["--", "/bin/true"]);
    let o = output(c);
    assert_eq!(
        o.code(),
        Some(2),
        "restore of task 2 (files=1) must be refused: {o}"
    );
    assert_eq!(o.stderr.lines().count(), 1, "one error line: {o}");
    assert!(
        o.stderr.contains("task 2") || o.stderr.contains('2'),
        "names the task: {o}"
    );
    assert!(o.elapsed < Duration::from_secs(2), "refused at once: {o}");
    assert!(!created.exists(), "refused only after a change");
}

/// The owner's restore rebuilds the whole group's table (its own targets and the sharer's);
/// the sharer takes no part, and the barrier does not wait for it.
#[test]
fn restore_owner_gets_group_table() {
    let d = TmpDir::new("showner");
    let p = group_plan(&d, &d.path("created"));
    let plan = d.plan(&p.text());
    let s = session("showner");
    let mut procs: Vec<(u16, Spawned)> = [1u16, 3]
        .iter()
        .map(|&t| {
            let mut c = restore_cmd(&plan, t, &s, &["--timeout", "10"]);
            c.args(["--", "/bin/sleep", "100"]);
            (t, Spawned::spawn(c))
        })
        .collect();
    let mut pids = BTreeMap::new();
    for (t, pr) in procs.iter_mut() {
        if !wait_sleeping(pr.pid(), Duration::from_secs(15)) {
            panic!(
                "task {t}: did not exec: {}",
                pr.wait(Duration::from_secs(1))
            );
        }
        pids.insert(*t, pr.pid());
    }
    let mut exp = p.expect();
    exp.remove(&2);
    assert_eq!(
        exp[&1].keys().copied().collect::<Vec<_>>(),
        vec![3, 4, 5],
        "test bug: the owner's table is the union"
    );
    assert_tables(
        &exp,
        &pids,
        &CheckOpts {
            after_exec: true,
            ..Default::default()
        },
    );
}

// --- groups among other tasks of the tree -----------------------------------------------------

/// The owner also has a child that does not share: it is forked from a task whose table is
/// shared, and must still get (only) its own table.
fn owner_has_other_children(batch: Option<u32>) {
    let d = TmpDir::new("showc");
    let mut p = Plan::new();
    p.task(1).child(2, 1).child(3, 1);
    p.files(2, 1);
    objects(&mut p, &d, &[1, 3, 2], 3, 1);
    check(&p, &d, batch);
}
forms!(owner_has_other_children: batch1 = Some(1), batch_default = None);

/// A child of a sharer (its parent is task 2, which shares task 1's table).
fn child_of_sharer(batch: Option<u32>) {
    let d = TmpDir::new("shcos");
    let mut p = Plan::new();
    p.task(1).child(2, 1).child(3, 2);
    p.files(2, 1);
    objects(&mut p, &d, &[3, 2, 1], 3, 1);
    check(&p, &d, batch);
}
forms!(child_of_sharer: batch1 = Some(1), batch_default = None);

/// A sibling group below the root: 3 and 4 are children of 2 and share 3's table.
fn nested_sibling_group(batch: Option<u32>) {
    let d = TmpDir::new("shnest");
    let mut p = Plan::new();
    p.task(1).child(2, 1).child(3, 2).child(4, 2);
    p.files(4, 3);
    objects(&mut p, &d, &[1, 4, 3], 3, 1);
    objects(&mut p, &d, &[2, 3, 4], 20, 10);
    check(&p, &d, batch);
}
forms!(nested_sibling_group: batch1 = Some(1), batch_default = None);

/// Without --stop: groups in several positions of the tree; run exits 0 (no task has exec=).
#[test]
fn groups_without_stop() {
    let d = TmpDir::new("shnostop");
    // (task, parent, files=) per task.
    type Shape<'a> = &'a [(u16, Option<u16>, Option<u16>)];
    let shapes: &[Shape] = &[
        &[(1, None, None), (2, Some(1), Some(1))],
        &[(1, None, None), (2, Some(1), Some(1)), (3, Some(1), None)],
        &[(1, None, None), (2, Some(1), Some(1)), (3, Some(2), None)],
        &[
            (1, None, None),
            (2, Some(1), None),
            (3, Some(2), None),
            (4, Some(2), Some(3)),
        ],
        &[(1, None, None), (2, None, Some(1)), (3, Some(2), None)],
    ];
    let mut bad = Vec::new();
    for (i, shape) in shapes.iter().enumerate() {
        let mut p = Plan::new();
        for &(t, parent, files) in shape.iter() {
            match parent {
                Some(pp) => p.child(t, pp),
                None => p.task(t),
            };
            if let Some(f) = files {
                p.files(t, f);
            }
        }
        let ids = p.task_ids();
        objects(&mut p, &d, &ids, 3, 1);
        let plan = d.plan(&p.text());
        let mut fails = 0;
        let mut first = None;
        let rounds = 10;
        for round in 0..rounds {
            let mut c = fdslot();
            c.arg("run").arg(&plan).args(["--timeout", "5"]);
            if round % 2 == 1 {
                c.args(["--batch", "1"]);
            }
            let o = output(c);
            if o.code() != Some(0) {
                fails += 1;
                first.get_or_insert(format!("round {round}: {o}"));
            }
        }
        if let Some(f) = first {
            bad.push(format!(
                "shape {i}: {fails} of {rounds} runs failed; first: {f}--- plan ---\n{}",
                p.text()
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{} shapes failed:\n{}",
        bad.len(),
        bad.join("\n")
    );
}
