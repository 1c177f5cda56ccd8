//! Limits that bite only without privilege: as `nobody`, the kernel caps the fds in flight per
//! user at RLIMIT_NOFILE (ETOOMANYREFS). A sender that hits the cap must wait for receivers to
//! read, not fail, and the tables must still come out exactly as planned.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;

/// 60 files opened by task 1 and received by three tasks: 180 fds in flight at once if the
/// receivers lag, against a per-user cap of 70.
fn in_flight_cap(batch: Option<u32>) {
    let d = TmpDir::new("inflight");
    std::fs::set_permissions(&d.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut p = Plan::new();
    p.task(1).task(2).task(3).task(4);
    for i in 0..60u32 {
        let f = d.file(&format!("f{i}"), b"x");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        p.reg(i + 1, &f, "rdonly").at(1, 3 + i).at(2, 3 + i).at(3, 3 + i).at(4, 3 + i);
    }
    let plan = d.plan(&p.text());
    std::fs::set_permissions(&plan, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = run_stop_cmd(&plan, &strs(&batch_args(batch)));
    as_nobody_with_nofile(&mut cmd, 70);
    let r = start_stopped(cmd).unwrap_or_else(|o| panic!("run as nobody with RLIMIT_NOFILE 70 failed: {o}"));
    assert_tables(&p.expect(), &r.pids, &CheckOpts { stopped: true, ..Default::default() });
}

mod in_flight_cap {
    #[test]
    fn batch1() {
        super::in_flight_cap(Some(1))
    }
    #[test]
    fn batch_default() {
        super::in_flight_cap(None)
    }
}

/// Every planned fd is below RLIMIT_NOFILE, but the planned fds plus the restorer's own (its
/// channel to run, its sending socket, one spare) are not: refused before any change, naming
/// the limit.
#[test]
fn nofile_too_low_for_plan() {
    let d = TmpDir::new("toolow");
    std::fs::set_permissions(&d.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut p = Plan::new();
    p.task(1).task(2);
    for i in 0..30u32 {
        let f = d.file(&format!("f{i}"), b"x");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        // fds 0..=29, all below the limit of 32: only the restorer's own fds overflow it.
        p.reg(i + 1, &f, "rdonly").at(1, i).at(2, i);
    }
    let plan = d.plan(&p.text());
    std::fs::set_permissions(&plan, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = run_stop_cmd(&plan, &[]);
    as_nobody_with_nofile(&mut cmd, 32);
    let o = output(cmd);
    assert_eq!(o.code(), Some(1), "{o}");
    assert!(o.stderr.contains("RLIMIT_NOFILE") && o.stderr.contains("limit 32"), "names the limit: {o}");
    assert_eq!(o.stderr.lines().count(), 1, "one line: {o}");
}
