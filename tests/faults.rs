//! Faults during a restore: paths that would block an open (a FIFO planned as `reg`, a FIFO
//! as `data=`), refused permissions, limits too low; and tasks killed at each stage of the
//! restore, with `run` and with `restore`. Nothing may hang; every error is one line naming the
//! task, the fd and the object; `run` leaves no process behind.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::time::Duration;

const H: &str = "fdslot 1\n";

/// `fdslot run PLAN --timeout 5`, expected to fail quickly: one error line, exit 1.
fn run_fails_fast(plan: &std::path::Path, want: &[&str]) -> Output {
    let mut c = fdslot();
    c.arg("run").arg(plan).args(["--timeout", "5"]);
    let o = output(c);
    assert!(o.note.is_empty(), "must not hang: {o}");
    assert!(o.elapsed < Duration::from_secs(4), "must fail at once, not wait for the deadline: {o}");
    assert_eq!(o.code(), Some(1), "{o}");
    assert_eq!(o.stderr.lines().count(), 1, "one line: {o}");
    for w in want {
        assert!(o.stderr.contains(w), "the error names {w:?}: {o}");
    }
    o
}

// --- opens that could block ---------------------------------------------------------------

/// A FIFO planned as `reg`, read-only, with no writer: a blocking open would wait forever. It
/// is opened non-blocking, and the description has the planned flags (no O_NONBLOCK).
#[test]
fn fifo_planned_as_reg_for_reading_does_not_block() {
    let d = TmpDir::new("regfifo");
    let f = d.path("fifo");
    mkfifo(&f);
    let mut p = Plan::new();
    p.task(1).task(2);
    p.reg(1, &f, "rdonly").at(1, 3).at(2, 5);
    let plan = d.plan(&p.text());
    let r = start_stopped(run_stop_cmd(&plan, &["--timeout", "5"])).unwrap_or_else(|o| panic!("{o}"));
    for (t, fd) in [(1u16, 3u32), (2, 5)] {
        let (_, flags) = fdinfo(r.pid(t), fd).unwrap();
        assert_eq!(flags & libc::O_NONBLOCK as u32, 0, "task {t} fd {fd}: O_NONBLOCK was not planned: {flags:o}");
        assert_eq!(flags & libc::O_ACCMODE as u32, libc::O_RDONLY as u32);
        assert!(fd_target(r.pid(t), fd).ends_with("/fifo"), "{}", fd_target(r.pid(t), fd));
    }
    assert_eq!(kcmp_file(r.pid(1), 3, r.pid(2), 5), Ok(0), "one description");
    assert_plan(&p, &r.pids, &CheckOpts { stopped: true, ..Default::default() });
    r.finish();
}

/// The same FIFO planned `reg` write-only, with no reader: fails at once (ENXIO), naming task,
/// fd and object, instead of blocking in open(2).
#[test]
fn fifo_planned_as_reg_for_writing_fails_at_once() {
    let d = TmpDir::new("regfifow");
    let f = d.path("fifo");
    mkfifo(&f);
    let plan = d.plan(&format!("{H}task 1\ntask 2\nreg 7 {} flags=wronly\n  at 2:4\n  at 1:6\n", pct(f.as_os_str().as_encoded_bytes())));
    run_fails_fast(&plan, &["task 1 fd 6", "reg 7", "ENXIO", "fifo"]);
}

/// `data=` naming a FIFO (pipe and memfd): refused at once (not a regular file) rather than
/// waiting for a writer forever; likewise a device with no end.
#[test]
fn data_must_be_a_regular_file() {
    let d = TmpDir::new("datafifo");
    let f = d.path("fifo");
    mkfifo(&f);
    let fe = pct(f.as_os_str().as_encoded_bytes());
    let plan = d.plan(&format!("{H}task 1\ntask 2\npipe 3 data={fe}\n  r 2:3\n  w 1:3\n"));
    run_fails_fast(&plan, &["task 1", "pipe 3", "data= is not a regular file"]);
    let plan = d.plan(&format!("{H}task 1\ntask 2\nmemfd 4 m data={fe}\n  at 2:3\n  at 1:5\n"));
    run_fails_fast(&plan, &["task 1 fd 5", "memfd 4", "data= is not a regular file"]);
    let plan = d.plan(&format!("{H}task 1\nmemfd 4 m data=/dev/zero\n  at 1:5\n"));
    run_fails_fast(&plan, &["task 1 fd 5", "memfd 4", "data= is not a regular file"]);
}

/// A regular file opened non-blocking for safety gets its planned status flags back: without
/// `nonblock` no O_NONBLOCK, with it O_NONBLOCK (checked in /proc/PID/fdinfo).
#[test]
fn regular_files_keep_their_planned_nonblock_bit() {
    let d = TmpDir::new("regnb");
    let mut p = Plan::new();
    p.task(1);
    p.reg(1, &d.file("a", b"a"), "rdwr").at(1, 3);
    p.reg(2, &d.file("b", b"b"), "rdonly,nonblock").at(1, 4);
    p.reg(3, &d.0, "rdonly,directory").at(1, 5);
    p.reg(4, &d.file("c", b"c"), "path").at(1, 6);
    let plan = d.plan(&p.text());
    let r = start_stopped(run_stop_cmd(&plan, &[])).unwrap_or_else(|o| panic!("{o}"));
    let nb = |fd| fdinfo(r.pid(1), fd).unwrap().1 & libc::O_NONBLOCK as u32 != 0;
    assert!(!nb(3) && nb(4) && !nb(5) && !nb(6), "nonblock bits as planned");
    assert_plan(&p, &r.pids, &CheckOpts { stopped: true, ..Default::default() });
    r.finish();
}

// --- permissions and limits ---------------------------------------------------------------

fn as_nobody(cmd: &mut std::process::Command, nofile: Option<u64>) {
    cmd.uid(65534).gid(65534);
    if let Some(n) = nofile {
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit { rlim_cur: n, rlim_max: n };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

fn world_readable(d: &TmpDir) {
    std::fs::set_permissions(&d.0, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A permission refused (EACCES): as `nobody`, a file only root may read. One line naming the
/// task, the fd, the object and the errno; exit 1; nothing hangs.
#[test]
fn permission_refused_names_task_fd_object() {
    let d = TmpDir::new("eacces");
    world_readable(&d);
    let secret = d.file("secret", b"s");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let open = d.file("open", b"o");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut p = Plan::new();
    p.task(1).task(2);
    p.reg(1, &open, "rdonly").at(1, 3).at(2, 3);
    p.reg(2, &secret, "rdonly").at(2, 4).at(1, 9);
    let plan = d.plan(&p.text());
    std::fs::set_permissions(&plan, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut c = fdslot();
    c.arg("run").arg(&plan).args(["--timeout", "5"]);
    as_nobody(&mut c, None);
    let o = output(c);
    assert_eq!(o.code(), Some(1), "{o}");
    assert!(o.elapsed < Duration::from_secs(4), "{o}");
    assert_eq!(o.stderr.lines().count(), 1, "{o}");
    for w in ["task 1 fd 9", "reg 2", "/secret", "open: EACCES"] {
        assert!(o.stderr.contains(w), "names {w:?}: {o}");
    }
}

/// A planned fd at or above the task's RLIMIT_NOFILE soft limit: refused before any change,
/// naming the task, the fd, the object and the limit. Just below it (with room for the
/// restorer's own fds), the same plan restores.
#[test]
fn fd_at_or_above_rlimit_nofile() {
    let d = TmpDir::new("nofilefd");
    world_readable(&d);
    let f = d.file("f", b"f");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    for (fd, ok) in [(64u32, false), (100, false), (63, true)] {
        let mut p = Plan::new();
        p.task(1).task(2);
        p.reg(1, &f, "rdonly").at(1, 3).at(2, fd);
        let plan = d.plan(&p.text());
        std::fs::set_permissions(&plan, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut c = run_stop_cmd(&plan, &["--timeout", "5"]);
        as_nobody(&mut c, Some(64));
        if ok {
            let r = start_stopped(c).unwrap_or_else(|o| panic!("fd {fd} under a limit of 64: {o}"));
            assert_plan(&p, &r.pids, &CheckOpts { stopped: true, ..Default::default() });
            r.finish();
            continue;
        }
        let o = output(c);
        assert_eq!(o.code(), Some(1), "fd {fd}: {o}");
        assert_eq!(o.stderr.lines().count(), 1, "{o}");
        let want = format!("task 2 fd {fd} (reg 1 ");
        assert!(o.stderr.contains(&want) && o.stderr.contains("RLIMIT_NOFILE") && o.stderr.contains("64"), "fd {fd}: names {want:?} and the limit: {o}");
    }
}

// --- tasks killed mid-restore ---------------------------------------------------------------

/// Where the victim is killed, by syscall (seen through ptrace, so the moment is exact).
#[derive(Clone, Copy, Debug)]
enum Stage {
    /// On entry to its first bind(2): it has no name yet.
    BeforeBind,
    /// Right after its n-th successful bind(2): every name it binds is bound.
    AfterBind(usize),
    /// Right after its first recvmsg(2) that got a batch: some files are in its table.
    AfterReceiving,
}

/// Which process is the victim: the n-th process `run` forks (tasks without a parent are forked
/// in plan order), or the traced command itself.
#[derive(Clone, Copy, Debug)]
enum Victim {
    RunsChild(usize),
    Itself,
}

struct Traced {
    /// Exit code, or 128 + signal.
    status: Option<i32>,
    stderr: String,
    /// Every process seen: the command and all it forked.
    pids: Vec<i32>,
    killed: Option<i32>,
    elapsed: Duration,
    note: String,
}

const SYS_BIND: u64 = 49;
const SYS_RECVMSG: u64 = 47;

/// PTRACE_GET_SYSCALL_INFO: (op, nr or return value). op 1 entry, 2 exit.
fn syscall_info(pid: i32) -> Option<(u8, u64)> {
    let mut buf = [0u64; 12];
    // SAFETY: the kernel writes at most size_of_val(buf) bytes into buf.
    let r = unsafe { libc::ptrace(libc::PTRACE_GET_SYSCALL_INFO, pid, std::mem::size_of_val(&buf), buf.as_mut_ptr()) };
    (r > 0).then(|| ((buf[0] & 0xff) as u8, buf[3]))
}

/// Runs `cmd` under a ptrace tracer (this thread) that follows its forks and SIGKILLs the victim
/// at `stage`; waits until every traced process has ended, for at most `cap`.
fn run_traced(mut cmd: std::process::Command, dir: &TmpDir, victim: Victim, stage: Stage, cap: Duration) -> Traced {
    let err_path = dir.path("traced.stderr");
    cmd.stdout(std::process::Stdio::null()).stderr(std::fs::File::create(&err_path).unwrap());
    // SAFETY: ptrace(PTRACE_TRACEME) is async-signal-safe; the exec then stops the child.
    unsafe {
        cmd.pre_exec(|| {
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let start = std::time::Instant::now();
    let child = cmd.spawn().expect("spawn traced");
    let top = child.id() as i32;
    let mut st = 0;
    // SAFETY: waiting for our own child, stopped at its exec.
    assert_eq!(unsafe { libc::waitpid(top, &mut st, libc::__WALL) }, top);
    let opts = libc::PTRACE_O_TRACESYSGOOD | libc::PTRACE_O_TRACEFORK | libc::PTRACE_O_TRACECLONE | libc::PTRACE_O_TRACEVFORK | libc::PTRACE_O_EXITKILL;
    // SAFETY: our stopped tracee.
    unsafe {
        libc::ptrace(libc::PTRACE_SETOPTIONS, top, 0, opts);
        libc::ptrace(libc::PTRACE_SYSCALL, top, 0, 0);
    }
    let mut pids = vec![top];
    let mut runs_children = Vec::new();
    let mut started = std::collections::BTreeSet::from([top]);
    let (mut binds, mut killed, mut status, mut note) = (0usize, None, None, String::new());
    let mut live = 1usize;
    let mut alive = vec![top];
    let victim_pid = |children: &Vec<i32>| match victim {
        Victim::Itself => Some(top),
        Victim::RunsChild(k) => children.get(k).copied(),
    };
    while live > 0 {
        if start.elapsed() > cap && note.is_empty() {
            note = format!("still running after {cap:?}: killed");
            for &p in &pids {
                kill(p, libc::SIGKILL);
            }
        }
        // Only our own tracees, by pid: waiting for any child would take other tests' children.
        let mut r = 0;
        for &p in alive.iter() {
            // SAFETY: waiting for a tracee of this thread.
            let w = unsafe { libc::waitpid(p, &mut st, libc::__WALL | libc::WNOHANG) };
            if w == p || (w < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD)) {
                r = p;
                if w < 0 {
                    st = 0; // gone without a report: count it as exited
                }
                break;
            }
        }
        if r == 0 {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        if libc::WIFEXITED(st) || libc::WIFSIGNALED(st) {
            alive.retain(|&p| p != r);
            live -= 1;
            if r == top {
                status = Some(if libc::WIFEXITED(st) { libc::WEXITSTATUS(st) } else { 128 + libc::WTERMSIG(st) });
            }
            continue;
        }
        let sig = libc::WSTOPSIG(st);
        let event = st >> 16;
        let mut deliver = 0;
        if sig == libc::SIGTRAP | 0x80 {
            if killed.is_none() && victim_pid(&runs_children) == Some(r) {
                let hit = match (stage, syscall_info(r)) {
                    (Stage::BeforeBind, Some((1, SYS_BIND))) => true,
                    (Stage::AfterBind(n), Some((2, rval))) if last_nr(r) == Some(SYS_BIND) && rval == 0 => {
                        binds += 1;
                        binds == n
                    }
                    (Stage::AfterReceiving, Some((2, rval))) => last_nr(r) == Some(SYS_RECVMSG) && (rval as i64) > 0,
                    _ => false,
                };
                remember_nr(r);
                if hit {
                    kill(r, libc::SIGKILL);
                    killed = Some(r);
                }
            }
        } else if sig == libc::SIGTRAP && event != 0 {
            if [libc::PTRACE_EVENT_FORK, libc::PTRACE_EVENT_VFORK, libc::PTRACE_EVENT_CLONE].contains(&event) {
                let mut new = 0 as libc::c_ulong;
                // SAFETY: our stopped tracee reports the new pid.
                unsafe { libc::ptrace(libc::PTRACE_GETEVENTMSG, r, 0, &mut new) };
                let new = new as i32;
                if !pids.contains(&new) {
                    pids.push(new);
                    alive.push(new);
                    live += 1;
                }
                if r == top {
                    runs_children.push(new);
                }
            }
        } else if sig == libc::SIGSTOP && started.insert(r) {
            // A new tracee's first stop: not a signal to deliver.
        } else {
            deliver = sig;
        }
        // SAFETY: resuming our stopped tracee (ESRCH for one that was just killed is fine).
        unsafe { libc::ptrace(libc::PTRACE_SYSCALL, r, 0, deliver) };
    }
    let mut child = child;
    let _ = child.try_wait();
    Traced { status, stderr: std::fs::read_to_string(&err_path).unwrap_or_default(), pids, killed, elapsed: start.elapsed(), note }
}

thread_local! {
    /// The syscall number each tracee last entered (a syscall-exit stop reports only the value).
    static LAST_NR: std::cell::RefCell<BTreeMap<i32, u64>> = const { std::cell::RefCell::new(BTreeMap::new()) };
}

fn remember_nr(pid: i32) {
    if let Some((1, nr)) = syscall_info(pid) {
        LAST_NR.with(|m| m.borrow_mut().insert(pid, nr));
    }
}

fn last_nr(pid: i32) -> Option<u64> {
    LAST_NR.with(|m| m.borrow().get(&pid).copied())
}

use std::collections::BTreeMap;

/// Three tasks; each opens files that both others receive, one socket per fd (`--batch 1`), so
/// every task binds, sends and receives several batches.
fn three_way_plan(d: &TmpDir) -> Plan {
    let mut p = Plan::new();
    p.task(1).task(2).task(3);
    for i in 0..9u32 {
        let opener = 1 + (i % 3) as u16;
        p.reg(10 + i, &d.file(&format!("f{i}"), b"f"), "rdonly");
        for t in 1..=3u16 {
            p.at(t, if t == opener { 3 + i } else { 20 + i });
        }
    }
    p
}

/// How many names task `t` binds under `run` (its home and receiving sockets).
fn binds_of(plan: &std::path::Path, t: u16, args: &[&str]) -> usize {
    let n = names(plan, "count", args);
    n.home.keys().filter(|&&k| k == t).count() + n.rx.iter().filter(|r| r.task == t).count()
}

/// `run`, with task 2 killed at `stage`: run reports the dead task in one line (exit 3) at once,
/// well before the deadline, and leaves no process behind: none stopped, none a zombie.
fn run_with_a_task_killed(stage: Stage) {
    let d = TmpDir::new("killrun");
    let p = three_way_plan(&d);
    let plan = d.plan(&p.text());
    let stage = match stage {
        Stage::AfterBind(_) => Stage::AfterBind(binds_of(&plan, 2, &["--batch", "1"])),
        s => s,
    };
    let mut c = fdslot();
    c.arg("run").arg(&plan).args(["--timeout", "5", "--batch", "1"]);
    let r = run_traced(c, &d, Victim::RunsChild(1), stage, Duration::from_secs(20));
    let report = format!("{stage:?}: status {:?} after {:?}, killed {:?}, pids {:?}\n{}{}", r.status, r.elapsed, r.killed, r.pids, r.stderr, r.note);
    assert!(r.note.is_empty(), "{report}");
    assert!(r.killed.is_some(), "the victim must have reached the stage: {report}");
    assert_eq!(r.status, Some(3), "a task died: exit 3: {report}");
    assert!(r.elapsed < Duration::from_secs(4), "run notices at once, not at the deadline: {report}");
    assert_eq!(r.stderr.lines().count(), 1, "one line: {report}");
    assert!(r.stderr.contains("task 2"), "the line names the dead task: {report}");
    eprintln!("{report}");
    for &pid in &r.pids {
        assert_eq!(proc_state(pid), None, "pid {pid} is left behind ({:?}): {report}", proc_state(pid));
    }
}

#[test]
fn run_task_killed_before_bind() {
    run_with_a_task_killed(Stage::BeforeBind);
}
#[test]
fn run_task_killed_after_bind() {
    run_with_a_task_killed(Stage::AfterBind(0));
}
#[test]
fn run_task_killed_after_receiving_some_files() {
    run_with_a_task_killed(Stage::AfterReceiving);
}

/// `restore` with the tasks' own barrier, task 2 killed at `stage`: every other task ends
/// within the deadline with one line naming task 2 (exit 3), or, where it already had all its
/// files, execs with exactly its planned table.
fn restore_with_a_task_killed(stage: Stage) {
    let d = TmpDir::new("killrs");
    let p = three_way_plan(&d);
    let plan = d.plan(&p.text());
    let s = session("killrs");
    let stage = match stage {
        Stage::AfterBind(_) => {
            let n = names(&plan, &s, &["--batch", "1"]);
            // Its barrier socket, its home and its receiving sockets.
            Stage::AfterBind(1 + n.home.keys().filter(|&&k| k == 2).count() + n.rx.iter().filter(|r| r.task == 2).count())
        }
        s => s,
    };
    let args = ["--timeout", "3", "--batch", "1"];
    let mut others: Vec<(u16, Spawned)> = [1u16, 3]
        .iter()
        .map(|&t| {
            let mut c = restore_cmd(&plan, t, &s, &args);
            c.args(["--", "/bin/sleep", "100"]);
            (t, Spawned::spawn(c))
        })
        .collect();
    let mut c = restore_cmd(&plan, 2, &s, &args);
    c.args(["--", "/bin/sleep", "100"]);
    let r = run_traced(c, &d, Victim::Itself, stage, Duration::from_secs(20));
    assert!(r.note.is_empty() && r.killed.is_some(), "{stage:?}: the victim must reach the stage: {:?} {}{}", r.status, r.stderr, r.note);
    let exp = p.expect();
    for (t, pr) in others.iter_mut() {
        if wait_sleeping(pr.pid(), Duration::from_secs(6)) {
            // It had every file before task 2 died: its table must be complete and exact.
            let pids = BTreeMap::from([(*t, pr.pid())]);
            let errs = check_tables(&exp, &pids, &CheckOpts { after_exec: true, ..Default::default() });
            // Only this task's own table is judged (the others are dead or failed).
            let mine = [format!("task {t}:"), format!("task {t} ")];
            let errs: Vec<_> = errs.into_iter().filter(|e| mine.iter().any(|m| e.starts_with(m.as_str())) && !e.contains("task 2")).collect();
            assert!(errs.is_empty(), "{stage:?}: task {t} exec'd with a wrong table: {errs:?}");
            continue;
        }
        let o = pr.wait(Duration::from_secs(2));
        assert!(o.note.is_empty(), "{stage:?}: task {t} must end: {o}");
        assert_eq!(o.code(), Some(3), "{stage:?}: task {t} fails because a peer did: {o}");
        assert!(o.elapsed < Duration::from_secs(6), "{stage:?}: task {t} ends within the deadline: {o}");
        assert_eq!(o.stderr.lines().count(), 1, "{stage:?}: task {t}: {o}");
        assert!(o.stderr.contains("task 2"), "{stage:?}: task {t} names the dead task: {o}");
    }
}

#[test]
fn restore_task_killed_before_bind() {
    restore_with_a_task_killed(Stage::BeforeBind);
}
#[test]
fn restore_task_killed_after_bind() {
    restore_with_a_task_killed(Stage::AfterBind(0));
}
#[test]
fn restore_task_killed_after_receiving_some_files() {
    restore_with_a_task_killed(Stage::AfterReceiving);
}

// --- the system out of files (ENFILE) ------------------------------------------------------

/// Runs `fdslot restore - 1` (the plan on stdin, so that fdslot itself opens nothing before the
/// restore) with a seccomp filter that fails every `nr` syscall with ENFILE, as the kernel does
/// once fs.file-max is reached (a system-wide limit no test may lower on a shared machine).
fn restore_with_enfile(plan: &str, nr: libc::c_long) -> Output {
    let d = TmpDir::new("enfile");
    let path = d.plan(plan);
    let mut c = fdslot();
    c.args(["restore", "-", "1", "--session", &session("enfile"), "--timeout", "5"]);
    c.stdin(std::fs::File::open(&path).unwrap());
    let filter = [
        // Load the syscall number; if it is `nr`, fail with ENFILE, else allow.
        libc::sock_filter { code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16, jt: 0, jf: 0, k: 0 },
        libc::sock_filter { code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16, jt: 0, jf: 1, k: nr as u32 },
        libc::sock_filter { code: (libc::BPF_RET | libc::BPF_K) as u16, jt: 0, jf: 0, k: libc::SECCOMP_RET_ERRNO | libc::ENFILE as u32 },
        libc::sock_filter { code: (libc::BPF_RET | libc::BPF_K) as u16, jt: 0, jf: 0, k: libc::SECCOMP_RET_ALLOW },
    ];
    // SAFETY: prctl is async-signal-safe; the filter outlives the call (it is copied in).
    unsafe {
        c.pre_exec(move || {
            let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut _ };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const libc::sock_fprog) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    output(c)
}

/// No file left in the system for an open: the error names the task, fd, object and ENFILE.
#[test]
fn system_out_of_files_at_open() {
    let o = restore_with_enfile(&format!("{H}task 1\nreg 1 /etc/hostname flags=rdonly\n  at 1:3\n"), libc::SYS_openat);
    assert_eq!(o.code(), Some(1), "{o}");
    assert_eq!(o.stderr.trim(), "fdslot: task 1 fd 3 (reg 1 /etc/hostname): open: ENFILE", "{o}");
}

/// No file left for a socket: the restore fails at once with one line naming the call.
#[test]
fn system_out_of_files_at_socket() {
    let o = restore_with_enfile(&format!("{H}task 1\nreg 1 /etc/hostname flags=rdonly\n  at 1:3\n"), libc::SYS_socket);
    assert_eq!(o.code(), Some(1), "{o}");
    assert!(o.stderr.lines().count() == 1 && o.stderr.contains("task 1") && o.stderr.contains("socket: ENFILE"), "{o}");
}
