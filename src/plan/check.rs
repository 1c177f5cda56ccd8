//! The rules that span lines: ids unique, every task named is declared, each (task, fd) at most
//! once, every object has targets, shared fd tables only as clone can make them; and the one
//! decision every task must make alike, the opener.

use super::*;

fn err(line: u32) -> PlanError {
    PlanError::new(line, "")
}

pub(super) fn check(
    tasks: &mut [Task],
    objects: &mut [Object],
    targets: &mut [Target],
    task_first: &mut [u32],
    task_index: &[u16],
    scratch: &mut [u64],
    target_scratch: &mut [Target],
) -> Result<(), PlanError> {
    check_tables(tasks)?;
    // Task ids in targets become the index of the task that owns that fd table.
    for t in targets.iter_mut() {
        match task_index[t.task as usize] {
            0 => {
                let mut e = err(t.line);
                e.msg.str("task ").num(t.task as u64).str(" is not declared");
                return Err(e);
            }
            i => t.task = tasks[i as usize - 1].owner,
        }
    }
    check_unique_objects(objects, scratch)?;
    // The opener: the lowest task id among an object's targets unless opener= says otherwise;
    // always a table's owner, since the opener's table is where the object is opened.
    const NONE: u16 = u16::MAX;
    for o in objects.iter_mut() {
        if o.explicit_opener != 0 {
            match task_index[o.opener as usize] {
                0 => {
                    let mut e = err(o.line);
                    e.msg.str("opener task ").num(o.opener as u64).str(" is not declared");
                    return Err(e);
                }
                i => o.opener = tasks[i as usize - 1].owner,
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
            e.msg.str(kind_name(o.kind)).str(" ").num(o.id as u64).str(" has no targets");
            return Err(e);
        }
        o.mode &= !(1 << 31);
    }
    resolve_reopens(objects, scratch)?;
    // Each (table, fd) at most once.
    // fds are below NR_OPEN (2^20), task indices below 2^16.
    crate::sort::radix_sort_by_key(targets, target_scratch, 40, |t| ((t.task as u64) << 24) | t.fd as u64);
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
    // nofile= must leave room for every fd of the task's table.
    for task in tasks.iter() {
        let owner = task.owner as usize;
        let (a, b) = (task_first[owner] as usize, task_first[owner + 1] as usize);
        if task.nofile != 0 && b > a && targets[b - 1].fd >= task.nofile {
            let mut e = err(task.line);
            e.msg.str("task ").num(task.id as u64).str(": fd ").num(targets[b - 1].fd as u64);
            e.msg.str(" (line ").num(targets[b - 1].line as u64).str(") is not below nofile=").num(task.nofile as u64);
            return Err(e);
        }
    }
    Ok(())
}

/// `files=`: only sharing that clone(CLONE_FILES) can create: with the parent, or with a
/// sibling (CLONE_PARENT). Sets every task's table owner and each owner's sharer count.
fn check_tables(tasks: &mut [Task]) -> Result<(), PlanError> {
    for i in 0..tasks.len() {
        let t = tasks[i];
        if t.files == 0 {
            tasks[i].owner = i as u16;
            continue;
        }
        let x = t.files as usize - 1;
        if t.files != t.parent && tasks[x].parent != t.parent {
            let mut e = err(t.line);
            e.msg.str("files=").num(tasks[x].id as u64).str(": task ").num(tasks[x].id as u64);
            e.msg.str(" is neither the parent nor a sibling of task ").num(t.id as u64).str(", so clone cannot share its table");
            return Err(e);
        }
        let owner = tasks[x].owner;
        tasks[i].owner = owner;
        tasks[owner as usize].sharers += 1;
    }
    Ok(())
}

/// Object ids are unique: sort (id, index) pairs in scratch memory and compare neighbours.
/// The sorted pairs stay in `scratch` for lookups by id.
fn check_unique_objects(objects: &[Object], scratch: &mut [u64]) -> Result<(), PlanError> {
    for (i, (s, o)) in scratch.iter_mut().zip(objects).enumerate() {
        *s = ((o.id as u64) << 32) | i as u64;
    }
    crate::sort::sort_by_key(scratch, |&s| s);
    for w in scratch.windows(2) {
        if w[0] >> 32 == w[1] >> 32 {
            let (a, b) = (&objects[(w[0] & 0xffff_ffff) as usize], &objects[(w[1] & 0xffff_ffff) as usize]);
            let (first, second) = if a.line < b.line { (a, b) } else { (b, a) };
            let mut e = err(second.line);
            e.msg.str("object id ").num(w[0] >> 32).str(" used twice (first at line ").num(first.line as u64).str(")");
            return Err(e);
        }
    }
    Ok(())
}

/// A reopen names a pipe declared before it; its opener is the pipe's (the reopen goes through
/// that task's /proc/self/fd).
fn resolve_reopens(objects: &mut [Object], by_id: &[u64]) -> Result<(), PlanError> {
    for i in 0..objects.len() {
        if objects[i].kind != KIND_REOPEN {
            continue;
        }
        let want = objects[i].value;
        let found = by_id.binary_search_by_key(&want, |&s| s >> 32).ok().map(|k| (by_id[k] & 0xffff_ffff) as usize);
        match found {
            Some(b) if b < i && objects[b].kind == KIND_PIPE => {
                objects[i].value = b as u64;
                objects[i].opener = objects[b].opener;
            }
            _ => {
                let mut e = err(objects[i].line);
                e.msg.str("reopen ").num(objects[i].id as u64).str(": pipe ").num(want).str(" is not declared before it");
                return Err(e);
            }
        }
    }
    Ok(())
}
