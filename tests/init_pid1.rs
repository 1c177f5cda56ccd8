//! fdslot as pid 1 (an initramfs's `/init`), in a new pid namespace: with no command word it
//! runs `$FDSLOT_PLAN` (else `/fdslot.plan`), reaps everything, prints one status line and
//! powers off. In a pid namespace, the kernel's power off kills the namespace's init with
//! SIGINT, so that signal is how a test sees that pid 1 reached `reboot(POWER_OFF)` rather than
//! exiting. `make boot-test` does the same in a real booted kernel.

mod common;

use common::*;
use std::os::unix::process::ExitStatusExt;

/// Runs fdslot as pid 1 of a new pid namespace (`unshare --pid --fork`), with `args` after
/// argv[0] and FDSLOT_PLAN set to `plan` if given.
fn as_pid1(plan: Option<&std::path::Path>, args: &[&str]) -> Output {
    let mut c = std::process::Command::new("unshare");
    c.args(["--pid", "--fork", "--kill-child"]).arg(bin()).args(args).env_remove("FDSLOT_PLAN");
    if let Some(p) = plan {
        c.env("FDSLOT_PLAN", p);
    }
    c.stdin(std::process::Stdio::null());
    output(c)
}

fn powered_off(o: &Output) -> bool {
    o.status.and_then(|s| s.signal()) == Some(libc::SIGINT)
}

/// The plan runs, its task's program runs, and pid 1 powers off only once every process is
/// gone: the task's background child, which writes through the restored fd after its parent
/// has exited, gets its line into the file.
#[test]
fn runs_the_plan_waits_for_every_process_then_powers_off() {
    let d = TmpDir::new("pid1");
    let out = d.path("out");
    let script = "echo restored >&3; (sleep 0.3; echo orphan >&3) &";
    let plan = d.plan(&format!(
        "fdslot 1\ntask 1 exec=/bin/sh,-c,{}\nreg 1 {} flags=wronly,creat,append mode=600\n  at 1:3\n",
        pct(script.as_bytes()),
        pct(out.as_os_str().as_encoded_bytes())
    ));
    let o = as_pid1(Some(&plan), &[]);
    assert!(powered_off(&o), "pid 1 powers off (SIGINT in a pid namespace): {o}");
    let p = plan.display();
    assert_eq!(o.stderr, format!("fdslot: init: running {p}\nfdslot: init: {p}: exit 0; powering off\n"), "{o}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "restored\norphan\n", "{o}");
}

/// Without FDSLOT_PLAN the plan is /fdslot.plan; words the kernel passes on (here `splash`) are
/// not commands. A missing plan is reported, and pid 1 still powers off instead of exiting.
#[test]
fn a_missing_plan_is_reported_then_powers_off() {
    assert!(!std::path::Path::new("/fdslot.plan").exists(), "this test needs /fdslot.plan absent");
    let o = as_pid1(None, &["splash"]);
    assert!(powered_off(&o), "{o}");
    assert_eq!(
        o.stderr,
        "fdslot: init: running /fdslot.plan\nfdslot: /fdslot.plan: open: ENOENT\nfdslot: init: /fdslot.plan: exit 2; powering off\n",
        "{o}"
    );
}

/// A plan that fails to restore: the run's error and exit code, then power off.
#[test]
fn a_failed_restore_is_reported_then_powers_off() {
    let d = TmpDir::new("pid1-fail");
    let plan = d.plan("fdslot 1\ntask 1\nreg 1 /nonexistent/file\n  at 1:3\n");
    let o = as_pid1(Some(&plan), &[]);
    assert!(powered_off(&o), "{o}");
    let p = plan.display();
    assert_eq!(
        o.stderr,
        format!("fdslot: init: running {p}\nfdslot: task 1 fd 3 (reg 1 /nonexistent/file): open: ENOENT\nfdslot: init: {p}: exit 1; powering off\n"),
        "{o}"
    );
}

/// As pid 1 with a command (a container's entry point), fdslot is the usual command line: it
/// exits with its code and does not power off.
#[test]
fn a_command_as_pid1_exits_as_usual() {
    let d = TmpDir::new("pid1-cmd");
    let plan = d.plan("fdslot 1\ntask 1\npipe 1\n  r 1:3\n  w 1:4\n");
    let o = as_pid1(None, &["check", plan.to_str().unwrap()]);
    assert_eq!(o.code(), Some(0), "{o}");
    assert_eq!(o.stdout, format!("{}: ok: 1 tasks, 1 objects, 2 fds\n", plan.display()), "{o}");
}
