//! `fdslot check`: valid plans get one summary line and exit 0; a plan breaking a rule gets
//! `fdslot: PLAN line N: what is wrong` on stderr and exit 2, with the right N. Plus usage errors.

mod common;

use common::*;

/// `fdslot check` on `text`; returns (plan path, output).
fn check_text(d: &TmpDir, text: &str) -> (std::path::PathBuf, Output) {
    let plan = d.plan(text);
    let mut c = fdslot();
    c.arg("check").arg(&plan);
    (plan, output(c))
}

/// Asserts `fdslot check` rejects `text` at line `line`.
fn rejects(name: &str, text: &str, line: u32) {
    let d = TmpDir::new("bad");
    let (plan, o) = check_text(&d, text);
    let prefix = format!("fdslot: {} line {line}: ", plan.display());
    assert_eq!(
        o.code(),
        Some(2),
        "[{name}] check must exit 2:\n{text}\n{o}"
    );
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with(&prefix) && lines[0].len() > prefix.len(),
        "[{name}] want one stderr line starting {prefix:?} and saying what is wrong; plan:\n{text}\n{o}"
    );
    assert_eq!(o.stdout, "", "[{name}] nothing on stdout: {o}");
}

/// Asserts `fdslot check` accepts `text`: exit 0, exactly one line on stdout.
fn accepts(name: &str, text: &str) {
    let d = TmpDir::new("good");
    let (_, o) = check_text(&d, text);
    assert_eq!(
        o.code(),
        Some(0),
        "[{name}] check must accept:\n{text}\n{o}"
    );
    assert_eq!(
        o.stdout.lines().count(),
        1,
        "[{name}] one summary line: {o}"
    );
    assert!(o.stdout.ends_with('\n'), "[{name}] {o}");
}

const H: &str = "fdslot 1\n";

#[test]
fn valid_plans() {
    accepts("minimal", "fdslot 1\ntask 1\nreg 1 /dev/null\n  at 1:0\n");
    accepts(
        "contract example",
        "# comments run to the end of a line; blank lines are ignored\n\
         fdslot 1                                  # first line\n\
         task 1\n\
         task 2 parent=1 exec=/bin/sh,-c,exec%20sleep%20100   # argv\n\
         \n\
         reg 1 /var/log/app.log flags=wronly,append pos=4096\n\
         \x20 at 1:1 cloexec\n\
         \x20 at 2:1\n\
         reg 2 /var/log/app.log flags=rdonly\n\
         \x20 at 2:7\n\
         pipe 3\n\
         \x20 r 1:0\n\
         \x20 w 2:5\n\
         \x20 w 2:6 cloexec\n",
    );
    accepts(
        "task without targets",
        "fdslot 1\ntask 1\ntask 2\nreg 1 /x\n  at 1:3\n",
    );
    accepts(
        "all keys",
        "fdslot 1\ntask 1\ntask 2\nreg 7 /x flags=rdwr,creat mode=644 pos=10 opener=2\n  at 1:3\npipe 8 opener=1\n  w 2:4\n",
    );
    accepts(
        "numeric flags",
        "fdslot 1\ntask 1\nreg 1 /x flags=2\n  at 1:3\n",
    );
    accepts(
        "max ids and fd",
        "fdslot 1\ntask 65535\nreg 4294967295 /x\n  at 65535:1048575\n",
    );
    accepts(
        "encoded path",
        "fdslot 1\ntask 1\nreg 1 /a%20b%25c%2Cd%23e%C3%A9\n  at 1:3\n",
    );
    accepts(
        "fd 0 and tabs",
        "fdslot 1\ntask\t1\nreg 1 /x\n\tat 1:0\t# c\n",
    );
    // Ids need not be in order.
    accepts(
        "unordered ids",
        "fdslot 1\ntask 9\ntask 3 parent=9\nreg 5 /x\n  at 3:1\nreg 2 /y\n  at 9:1\n",
    );
}

#[test]
fn bad_header() {
    rejects("version 2", "fdslot 2\ntask 1\nreg 1 /x\n  at 1:3\n", 1);
    rejects("wrong magic", "fdsloth 1\ntask 1\nreg 1 /x\n  at 1:3\n", 1);
    rejects("no header", "task 1\nreg 1 /x\n  at 1:3\n", 1);
    rejects(
        "header with junk",
        "fdslot 1 extra\ntask 1\nreg 1 /x\n  at 1:3\n",
        1,
    );
    rejects(
        "header repeated",
        "fdslot 1\ntask 1\nfdslot 1\nreg 1 /x\n  at 1:3\n",
        3,
    );
}

#[test]
fn empty_plan() {
    let d = TmpDir::new("empty");
    for text in ["", "\n\n# only a comment\n"] {
        let (plan, o) = check_text(&d, text);
        assert_eq!(o.code(), Some(2), "empty plan {text:?}: {o}");
        assert!(
            o.stderr
                .starts_with(&format!("fdslot: {} ", plan.display())),
            "{o}"
        );
    }
}

#[test]
fn unknown_keyword() {
    rejects("file", &format!("{H}task 1\nfile 1 /x\n  at 1:3\n"), 3);
    rejects("at-typo", &format!("{H}task 1\nreg 1 /x\n  att 1:3\n"), 4);
}

#[test]
fn duplicate_task() {
    rejects(
        "dup task",
        &format!("{H}task 1\ntask 2\ntask 1\nreg 1 /x\n  at 1:3\n"),
        4,
    );
}

#[test]
fn duplicate_object_id() {
    rejects(
        "dup reg",
        &format!("{H}task 1\nreg 1 /x\n  at 1:3\nreg 1 /y\n  at 1:4\n"),
        5,
    );
    rejects(
        "reg and pipe",
        &format!("{H}task 1\npipe 4\n  r 1:3\nreg 4 /y\n  at 1:4\n"),
        5,
    );
}

#[test]
fn duplicate_task_fd() {
    rejects(
        "two objects",
        &format!("{H}task 1\nreg 1 /x\n  at 1:3\nreg 2 /y\n  at 1:3\n"),
        6,
    );
    rejects(
        "same object",
        &format!("{H}task 1\nreg 1 /x\n  at 1:3\n  at 1:3\n"),
        5,
    );
    rejects(
        "pipe ends",
        &format!("{H}task 1\npipe 1\n  r 1:3\n  w 1:3\n"),
        5,
    );
}

#[test]
fn target_in_undeclared_task() {
    rejects(
        "task 5",
        &format!("{H}task 1\nreg 1 /x\n  at 1:3\n  at 5:3\n"),
        5,
    );
    rejects(
        "opener",
        &format!("{H}task 1\nreg 1 /x opener=2\n  at 1:3\n"),
        3,
    );
}

#[test]
fn target_before_any_object() {
    rejects(
        "at first",
        &format!("{H}task 1\n  at 1:3\nreg 1 /x\n  at 1:4\n"),
        3,
    );
}

#[test]
fn wrong_target_kind() {
    rejects("r under reg", &format!("{H}task 1\nreg 1 /x\n  r 1:3\n"), 4);
    rejects(
        "w under reg",
        &format!("{H}task 1\nreg 1 /x\n  at 1:4\n  w 1:3\n"),
        5,
    );
    rejects(
        "at under pipe",
        &format!("{H}task 1\npipe 1\n  at 1:3\n"),
        4,
    );
}

#[test]
fn bad_fd() {
    rejects(
        "1048576",
        &format!("{H}task 1\nreg 1 /x\n  at 1:1048576\n"),
        4,
    );
    rejects("negative", &format!("{H}task 1\nreg 1 /x\n  at 1:-1\n"), 4);
    rejects(
        "not a number",
        &format!("{H}task 1\nreg 1 /x\n  at 1:three\n"),
        4,
    );
    rejects("missing", &format!("{H}task 1\nreg 1 /x\n  at 1:\n"), 4);
    rejects("no colon", &format!("{H}task 1\nreg 1 /x\n  at 13\n"), 4);
    rejects(
        "huge",
        &format!("{H}task 1\nreg 1 /x\n  at 1:99999999999999999999999\n"),
        4,
    );
}

#[test]
fn bad_task_id() {
    rejects("task 0", &format!("{H}task 0\nreg 1 /x\n  at 0:3\n"), 2);
    rejects(
        "task 65536",
        &format!("{H}task 65536\nreg 1 /x\n  at 1:3\n"),
        2,
    );
    rejects(
        "target task 0",
        &format!("{H}task 1\nreg 1 /x\n  at 0:3\n"),
        4,
    );
    rejects(
        "target task 65536",
        &format!("{H}task 1\nreg 1 /x\n  at 65536:3\n"),
        4,
    );
    rejects(
        "parent 0",
        &format!("{H}task 1\ntask 2 parent=0\nreg 1 /x\n  at 1:3\n"),
        3,
    );
}

#[test]
fn bad_object_id() {
    rejects("id 0", &format!("{H}task 1\nreg 0 /x\n  at 1:3\n"), 3);
    rejects(
        "id 2^32",
        &format!("{H}task 1\npipe 4294967296\n  r 1:3\n"),
        3,
    );
    rejects("no id", &format!("{H}task 1\npipe\n  r 1:3\n"), 3);
}

#[test]
fn unknown_key() {
    rejects(
        "reg colour",
        &format!("{H}task 1\nreg 1 /x colour=red\n  at 1:3\n"),
        3,
    );
    rejects(
        "task key",
        &format!("{H}task 1 nice=5\nreg 1 /x\n  at 1:3\n"),
        2,
    );
    rejects(
        "pipe flags",
        &format!("{H}task 1\npipe 1 flags=rdonly\n  r 1:3\n"),
        3,
    );
    rejects(
        "target word",
        &format!("{H}task 1\nreg 1 /x\n  at 1:3 cloexex\n"),
        4,
    );
    rejects(
        "unknown flag",
        &format!("{H}task 1\nreg 1 /x flags=rdonly,bogus\n  at 1:3\n"),
        3,
    );
}

#[test]
fn repeated_key() {
    rejects(
        "pos twice",
        &format!("{H}task 1\nreg 1 /x pos=1 pos=2\n  at 1:3\n"),
        3,
    );
    rejects(
        "parent twice",
        &format!("{H}task 1\ntask 2 parent=1 parent=1\nreg 1 /x\n  at 1:3\n"),
        3,
    );
    rejects(
        "exec twice",
        &format!("{H}task 1 exec=/bin/true exec=/bin/true\nreg 1 /x\n  at 1:3\n"),
        2,
    );
    rejects(
        "opener twice",
        &format!("{H}task 1\npipe 1 opener=1 opener=1\n  r 1:3\n"),
        3,
    );
}

#[test]
fn bad_values() {
    rejects(
        "pos",
        &format!("{H}task 1\nreg 1 /x pos=abc\n  at 1:3\n"),
        3,
    );
    rejects(
        "mode 9",
        &format!("{H}task 1\nreg 1 /x mode=9\n  at 1:3\n"),
        3,
    );
}

#[test]
fn nul_in_path() {
    rejects(
        "%00 path",
        &format!("{H}task 1\nreg 1 /x%00y\n  at 1:3\n"),
        3,
    );
    rejects(
        "%00 exec",
        &format!("{H}task 1 exec=/bin/echo,a%00b\nreg 1 /x\n  at 1:3\n"),
        2,
    );
}

#[test]
fn malformed_percent() {
    rejects("%zz", &format!("{H}task 1\nreg 1 /x%zz\n  at 1:3\n"), 3);
    rejects("% at end", &format!("{H}task 1\nreg 1 /x%\n  at 1:3\n"), 3);
    rejects(
        "%2 at end",
        &format!("{H}task 1\nreg 1 /x%2\n  at 1:3\n"),
        3,
    );
    rejects("%G0", &format!("{H}task 1\nreg 1 /%G0\n  at 1:3\n"), 3);
    rejects(
        "exec %4",
        &format!("{H}task 1 exec=/bin/echo,%4\nreg 1 /x\n  at 1:3\n"),
        2,
    );
}

#[test]
fn object_without_targets() {
    rejects(
        "reg at end",
        &format!("{H}task 1\nreg 1 /x\n  at 1:3\nreg 2 /y\n"),
        5,
    );
    rejects(
        "pipe in middle",
        &format!("{H}task 1\npipe 1\nreg 2 /y\n  at 1:3\n"),
        3,
    );
}

#[test]
fn parent_not_declared_before() {
    rejects(
        "later",
        &format!("{H}task 1 parent=2\ntask 2\nreg 1 /x\n  at 1:3\n"),
        2,
    );
    rejects(
        "never",
        &format!("{H}task 1\ntask 2 parent=3\nreg 1 /x\n  at 1:3\n"),
        3,
    );
    rejects(
        "self",
        &format!("{H}task 1\ntask 2 parent=2\nreg 1 /x\n  at 1:3\n"),
        3,
    );
}

#[test]
fn line_numbers_count_comments_and_blanks() {
    rejects(
        "after comments",
        &format!("# c\n\n{H}\n# more\ntask 1\n\nreg 1 /x bad=1\n  at 1:3\n"),
        8,
    );
}

/// `run` and `restore` reject a bad plan the same way (exit 2, line N), before starting anything.
#[test]
fn run_and_restore_reject_bad_plan() {
    let d = TmpDir::new("badrun");
    let plan = d.plan(&format!("{H}task 1\nreg 1 /x\n  at 1:3\n  at 1:3\n"));
    let prefix = format!("fdslot: {} line 5: ", plan.display());
    for args in [vec!["run"], vec!["run", "--stop"]] {
        let mut c = fdslot();
        c.arg(args[0]).arg(&plan).args(&args[1..]);
        let o = output(c);
        assert_eq!(o.code(), Some(2), "{args:?}: {o}");
        assert!(
            o.stderr.starts_with(&prefix),
            "{args:?}: want {prefix:?}: {o}"
        );
    }
    let s = session("badplan");
    let o = output(restore_cmd(&plan, 1, &s, &[]));
    assert_eq!(o.code(), Some(2), "restore: {o}");
    assert!(
        o.stderr.starts_with(&prefix),
        "restore: want {prefix:?}: {o}"
    );
}

// --- usage ------------------------------------------------------------------------------------

fn usage(args: &[&str]) -> Output {
    let mut c = fdslot();
    c.args(args);
    output(c)
}

#[test]
fn version() {
    let o = usage(&["--version"]);
    assert_eq!(o.code(), Some(0), "{o}");
    assert!(!o.stdout.trim().is_empty(), "{o}");
}

#[test]
fn usage_errors_exit_2() {
    let d = TmpDir::new("usage");
    let plan = d.plan("fdslot 1\ntask 1\ntask 2\nreg 1 /dev/null\n  at 1:3\n  at 2:3\n");
    let p = plan.to_str().unwrap();
    let missing = d.path("no-such-plan");
    let m = missing.to_str().unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["frobnicate"],
        vec!["check"],
        vec!["run"],
        vec!["run", p, "--batch", "0"],
        vec!["run", p, "--batch", "254"],
        vec!["run", p, "--batch", "seven"],
        vec!["run", p, "--batch"],
        vec!["run", p, "--bogus"],
        vec!["run", p, "--timeout", "x"],
        vec!["run", p, "--keep", "x"],
        vec!["restore", p, "1"],
        vec!["restore", p, "1", "--session", ""],
        vec!["restore", p, "1", "--session", "has.dot"],
        vec![
            "restore",
            p,
            "1",
            "--session",
            "a-session-name-longer-than-32-chx",
            "--timeout",
            "1",
        ],
        vec!["restore", p, "3", "--session", "ok"],
        vec!["restore", p, "0", "--session", "ok"],
        vec!["restore", p, "1", "--session", "ok", "--sync-fd", "x"],
        vec!["names", p],
        vec!["names", p, "--session", "bad name"],
        vec!["check", m],
    ];
    let mut bad = Vec::new();
    for args in cases {
        let o = usage(&args);
        // No arguments at all may print the usage text (on either stream); anything else must
        // say what is wrong on stderr.
        if o.code() != Some(2) || (!args.is_empty() && !o.stderr.starts_with("fdslot: ")) {
            bad.push(format!(
                "fdslot {args:?}: want exit 2 and 'fdslot: ...' on stderr, got {o}"
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    // The longest session name (32 chars) is fine.
    let o = usage(&["names", p, "--session", "abcdefghijklmnopqrstuvwxyz_-0123"]);
    assert_eq!(o.code(), Some(0), "32-char session: {o}");
}
