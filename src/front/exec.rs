//! Turning a restored task into its program: the plan's `exec=` argv, or `-- PROG ARGS`.

use crate::arena::{bytes_for, Arena};
use crate::plan::{lex, Plan, Span};
use crate::sys::{proc, Errno};
use crate::text::c_str;

/// Decodes an `exec=` value and execs it; returns only on failure.
///
/// # Safety
/// `envp` must be a NULL-terminated array of NUL-terminated strings.
pub unsafe fn exec_plan_argv(plan: &Plan<'_>, exec: Span, envp: *const *const u8) -> Errno {
    let enc = plan.span(exec);
    let nargs = enc.split(|&b| b == b',').count();
    let mut arena = match Arena::map(bytes_for::<u8>(enc.len() + nargs) + bytes_for::<usize>(nargs + 1)) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let bytes = arena.take::<u8>(enc.len() + nargs);
    let ptrs = arena.take::<usize>(nargs + 1);
    let mut at = 0;
    for (i, part) in enc.split(|&b| b == b',').enumerate() {
        // The plan was validated: every element decodes.
        let n = lex::decode_into(part, &mut bytes[at..]).unwrap_or(0);
        ptrs[i] = bytes[at..].as_ptr() as usize;
        at += n;
        bytes[at] = 0;
        at += 1;
    }
    ptrs[nargs] = 0;
    // SAFETY: ptrs is a NULL-terminated array of NUL-terminated strings in our mapping; the
    // caller vouches for envp.
    unsafe { proc::execve(ptrs[0] as *const u8, ptrs.as_ptr() as *const *const u8, envp) }
}

/// Execs `argv[0]`, searching PATH when it has no slash; returns only on failure.
///
/// # Safety
/// `argv` and `envp` must be NULL-terminated arrays of NUL-terminated strings.
pub unsafe fn exec_argv(argv: *const *const u8, envp: *const *const u8) -> Errno {
    // SAFETY: argv[0] exists (the caller checked it is not NULL).
    let prog = unsafe { c_str(*argv) };
    if prog.contains(&b'/') {
        // SAFETY: forwarded.
        return unsafe { proc::execve(*argv, argv, envp) };
    }
    // SAFETY: forwarded from the caller.
    let path = unsafe { env_value(envp, b"PATH") }.unwrap_or(b"/usr/local/bin:/usr/bin:/bin");
    let mut last = Errno::NOENT;
    let mut buf = [0u8; crate::plan::MAX_PATH + 1];
    for dir in path.split(|&b| b == b':') {
        let dir = if dir.is_empty() { &b"."[..] } else { dir };
        if dir.len() + 1 + prog.len() >= buf.len() {
            continue;
        }
        buf[..dir.len()].copy_from_slice(dir);
        buf[dir.len()] = b'/';
        buf[dir.len() + 1..dir.len() + 1 + prog.len()].copy_from_slice(prog);
        buf[dir.len() + 1 + prog.len()] = 0;
        // SAFETY: buf is NUL-terminated; argv and envp forwarded.
        let e = unsafe { proc::execve(buf.as_ptr(), argv, envp) };
        if e != Errno::NOENT && e != Errno(linux_raw_sys::errno::ENOTDIR as u16) {
            last = e;
        }
    }
    last
}

/// The value of environment variable `name`, if set.
///
/// # Safety
/// `envp` must be NULL or a NULL-terminated array of NUL-terminated strings that live for the
/// whole process.
pub unsafe fn env_value(envp: *const *const u8, name: &[u8]) -> Option<&'static [u8]> {
    if envp.is_null() {
        return None;
    }
    let mut i = 0;
    loop {
        // SAFETY: envp is NULL-terminated (from the kernel).
        let p = unsafe { *envp.add(i) };
        if p.is_null() {
            return None;
        }
        // SAFETY: each entry is a NUL-terminated string that lives for the process.
        let kv = unsafe { c_str(p) };
        if kv.len() > name.len() && kv.starts_with(name) && kv[name.len()] == b'=' {
            return Some(&kv[name.len() + 1..]);
        }
        i += 1;
    }
}
