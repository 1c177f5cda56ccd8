//! The rules that span lines: ids unique, every task named is declared, each (task, fd) at most
//! once, every object has targets; and the one decision every task must make alike, the opener.

use super::*;

fn err(line: u32) -> PlanError {
    PlanError::new(line, "")
}

pub(super) fn check(
    _text: &[u8],
    tasks: &[Task],
    objects: &mut [Object],
    targets: &mut [Target],
    task_first: &mut [u32],
    task_index: &[u16],
    scratch: &mut [u64],
) -> Result<(), PlanError> {
    // Task ids in targets and opener= become indices.
    for t in targets.iter_mut() {
        match task_index[t.task as usize] {
            0 => {
                let mut e = err(t.line);
                e.msg.str("task ").num(t.task as u64).str(" is not declared");
                return Err(e);
            }
            i => t.task = i - 1,
        }
    }
    // The opener: the lowest task id among an object's targets unless opener= says otherwise.
    const NONE: u16 = u16::MAX;
    for o in objects.iter_mut() {
        if o.explicit_opener != 0 {
            match task_index[o.opener as usize] {
                0 => {
                    let mut e = err(o.line);
                    e.msg.str("opener task ").num(o.opener as u64).str(" is not declared");
                    return Err(e);
                }
                i => o.opener = i - 1,
            }
        } else {
            o.opener = NONE;
        }
    }
    for t in targets.iter() {
        let o = &mut objects[t.object as usize];
        // `mode` is at most 0o7777, so its top bit can mark "has targets" until the check below.
        o.mode |= 1 << 31;
        if o.explicit_opener == 0 && (o.opener == NONE || tasks[t.task as usize].id < tasks[o.opener as usize].id) {
            o.opener = t.task;
        }
    }
    for o in objects.iter_mut() {
        if o.mode & (1 << 31) == 0 {
            let mut e = err(o.line);
            e.msg.str(if o.kind == KIND_REG { "reg " } else { "pipe " }).num(o.id as u64).str(" has no targets");
            return Err(e);
        }
        o.mode &= !(1 << 31);
    }
    check_unique_objects(objects, scratch)?;
    // Each (task, fd) at most once.
    crate::sort::sort_by_key(targets, |t| ((t.task as u64) << 32) | t.fd as u64);
    for w in targets.windows(2) {
        if w[0].task == w[1].task && w[0].fd == w[1].fd {
            let (a, b) = if w[0].line < w[1].line { (w[0].line, w[1].line) } else { (w[1].line, w[0].line) };
            let mut e = err(b);
            e.msg.str("task ").num(tasks[w[0].task as usize].id as u64).str(" fd ").num(w[0].fd as u64);
            e.msg.str(" is planned twice (lines ").num(a as u64).str(" and ").num(b as u64).str(")");
            return Err(e);
        }
    }
    // Per-task ranges of the sorted targets.
    let mut i = 0usize;
    for (t, first) in task_first.iter_mut().enumerate() {
        while i < targets.len() && (targets[i].task as usize) < t {
            i += 1;
        }
        *first = i as u32;
    }
    Ok(())
}

/// Object ids are unique: sort (id, line) pairs in scratch memory and compare neighbours.
fn check_unique_objects(objects: &[Object], scratch: &mut [u64]) -> Result<(), PlanError> {
    for (s, o) in scratch.iter_mut().zip(objects) {
        *s = ((o.id as u64) << 32) | o.line as u64;
    }
    crate::sort::sort_by_key(scratch, |&s| s);
    for w in scratch.windows(2) {
        if w[0] >> 32 == w[1] >> 32 {
            let mut e = err(w[1] as u32);
            e.msg.str("object id ").num(w[0] >> 32).str(" used twice (first at line ").num(w[0] & 0xffff_ffff).str(")");
            return Err(e);
        }
    }
    Ok(())
}
