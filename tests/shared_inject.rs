//! Shared fd tables as zdtm's fdt_shared checks them: after the restore, a change that one
//! sharer makes to its table (dup2 onto a fixed fd) is seen by the other, and not by a task
//! with a table of its own. The change is made from outside: the test injects one dup2 syscall
//! into the stopped sharer with ptrace.

mod common;

use common::*;

/// Runs `dup2(old, new)` inside stopped process `pid`, at the `syscall` instruction it stopped
/// after (fdslot's tasks stop themselves with kill(SIGSTOP)). Returns the syscall's result.
fn inject_dup2(pid: i32, old: i32, new: i32) -> i64 {
    // SAFETY: plain ptrace calls on a process this test owns; registers are saved and restored.
    unsafe {
        assert_eq!(libc::ptrace(libc::PTRACE_SEIZE, pid, 0, 0), 0, "PTRACE_SEIZE: {}", std::io::Error::last_os_error());
        assert_eq!(libc::ptrace(libc::PTRACE_INTERRUPT, pid, 0, 0), 0);
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, libc::__WALL), pid);
        let mut saved: libc::user_regs_struct = std::mem::zeroed();
        assert_eq!(libc::ptrace(libc::PTRACE_GETREGS, pid, 0, &mut saved as *mut _), 0);
        let word = libc::ptrace(libc::PTRACE_PEEKTEXT, pid, (saved.rip - 2) as *mut libc::c_void, 0);
        assert_eq!(word as u64 & 0xffff, 0x050f, "the task must have stopped right after a syscall instruction");
        let mut regs = saved;
        regs.rip -= 2;
        regs.rax = libc::SYS_dup2 as u64;
        regs.orig_rax = u64::MAX;
        regs.rdi = old as u64;
        regs.rsi = new as u64;
        assert_eq!(libc::ptrace(libc::PTRACE_SETREGS, pid, 0, &regs as *const _), 0);
        // A task in group-stop may report that stop again before it takes the step.
        for _ in 0..10 {
            assert_eq!(libc::ptrace(libc::PTRACE_SINGLESTEP, pid, 0, 0), 0);
            assert_eq!(libc::waitpid(pid, &mut status, libc::__WALL), pid);
            if libc::WIFSTOPPED(status) && libc::WSTOPSIG(status) == libc::SIGTRAP {
                break;
            }
        }
        let mut after: libc::user_regs_struct = std::mem::zeroed();
        assert_eq!(libc::ptrace(libc::PTRACE_GETREGS, pid, 0, &mut after as *mut _), 0);
        assert_eq!(libc::ptrace(libc::PTRACE_SETREGS, pid, 0, &saved as *const _), 0);
        assert_eq!(libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0), 0);
        after.rax as i64
    }
}

fn check_sharing(plan_text: &str, sharer: u16, owner: u16, loner: u16) {
    let d = TmpDir::new("fdtshared");
    let f = d.file("f", b"shared");
    let plan = d.plan(&plan_text.replace("FILE", &pct(f.to_str().unwrap().as_bytes())));
    let r = run_stop(&plan, &[]);
    let (ps, po, pl) = (r.pid(sharer), r.pid(owner), r.pid(loner));
    assert_eq!(kcmp_files(ps, po), 0, "sharer and owner must share one table (KCMP_FILES)");
    assert_ne!(kcmp_files(ps, pl), 0, "a task with its own table must not share it");
    assert!(!list_fds(po).unwrap().contains(&42));
    assert_eq!(inject_dup2(ps, 3, 42), 42, "dup2 in the sharer");
    let owner_fds = list_fds(po).unwrap();
    assert!(owner_fds.contains(&42), "the owner must see the sharer's dup2: {owner_fds:?}");
    assert_eq!(kcmp_file(po, 42, po, 3), Ok(0), "fd 42 is a dup of fd 3 in the owner's view too");
    assert!(!list_fds(pl).unwrap().contains(&42), "the task with its own table must not");
}

fn kcmp_files(a: i32, b: i32) -> i64 {
    // SAFETY: kcmp reads nothing from our memory.
    unsafe { libc::syscall(libc::SYS_kcmp, a, b, 2 /* KCMP_FILES */, 0, 0) }
}

/// A child sharing its parent's table (plain CLONE_FILES).
#[test]
fn parent_and_child() {
    check_sharing(
        "fdslot 1\ntask 1\ntask 2 parent=1 files=1\ntask 3 parent=1\nreg 1 FILE\n  at 1:3\n  at 3:3\n",
        2,
        1,
        3,
    );
}

/// Siblings sharing one table (CLONE_FILES|CLONE_PARENT from the first sibling).
#[test]
fn siblings() {
    check_sharing(
        "fdslot 1\ntask 1\ntask 2 parent=1\ntask 3 parent=1 files=2\ntask 4 parent=1\nreg 1 FILE\n  at 2:3\n  at 4:3\n",
        3,
        2,
        4,
    );
}
