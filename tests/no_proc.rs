//! Without /proc mounted (early boot, a bare container), fdslot still restores what needs no
//! /proc, and says so plainly for the one kind that does: `reopen` goes through /proc/self/fd.

mod common;

use common::*;

/// Runs `fdslot run PLAN` in a private mount namespace whose /proc is unmounted.
fn run_without_proc(plan: &std::path::Path) -> Output {
    let mut c = std::process::Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c", "umount -l /proc && exec \"$0\" run \"$1\""])
        .arg(bin())
        .arg(plan);
    output(c)
}

#[test]
fn reopen_says_proc_is_missing() {
    let d = TmpDir::new("noproc");
    let plan = d.plan("fdslot 1\ntask 1\npipe 1\n  r 1:3\n  w 1:4\nreopen 2 1 r flags=nonblock\n  at 1:5\n");
    let o = run_without_proc(&plan);
    assert_eq!(o.code(), Some(1), "{o}");
    assert!(o.stderr.contains("reopen 2") && o.stderr.contains("/proc mounted"), "names the object and the cause: {o}");
    assert_eq!(o.stderr.lines().count(), 1, "{o}");
}

/// The control: the same kinds without reopen restore fine with no /proc at all (the task's
/// exec checks its own table without /proc: fd 3 reads what fd 4 wrote).
#[test]
fn no_proc_needed_otherwise() {
    let d = TmpDir::new("noproc-ok");
    let out = d.path("out");
    let script = format!("echo through >&4; exec 4>&-; read l <&3; echo \"$l\" > {}", out.display());
    let plan = d.plan(&format!(
        "fdslot 1\ntask 1 exec=/bin/sh,-c,{}\npipe 1\n  r 1:3\n  w 1:4\n",
        pct(script.as_bytes())
    ));
    let o = run_without_proc(&plan);
    assert_eq!(o.code(), Some(0), "{o}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "through\n");
}
