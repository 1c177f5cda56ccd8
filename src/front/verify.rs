//! `fdslot verify PLAN T=PID... [--keep FD,...]`: checks live processes against a plan and
//! prints what the kernel says, fd by fd.

use super::args::{self, Args};
use super::{eprint, load_plan, usage_error};
use crate::inspect::out::Out;
use crate::plan::Plan;
use crate::report::EXIT_RESTORE;
use crate::restore::MAX_KEEP;
use crate::text::{parse_radix, Line};

pub fn cmd_verify(a: &mut Args) -> i32 {
    let mut path = None;
    let mut keep = heapless::Vec::<u32, MAX_KEEP>::new();
    let mut pairs = heapless::Vec::<(u16, i32), 4096>::new();
    while let Some(arg) = a.next() {
        if arg == b"--keep" {
            if let Err(c) = a.keep(&mut keep) {
                return c;
            }
        } else if arg.starts_with(b"-") {
            return args::unexpected(arg);
        } else if path.is_none() {
            path = Some(arg);
        } else {
            let eq = arg.iter().position(|&b| b == b'=');
            let parsed = eq.and_then(|i| Some((parse_radix(&arg[..i], 10)?, parse_radix(&arg[i + 1..], 10)?)));
            match parsed {
                Some((t, p)) if (1..=65535).contains(&t) && (1..=i32::MAX as u64).contains(&p) => {
                    if pairs.push((t as u16, p as i32)).is_err() {
                        return usage_error(b"verify: at most 4096 TASK=PID pairs");
                    }
                }
                _ => {
                    let mut l = Line::<200>::new();
                    l.str("verify: expected TASK=PID, got '").push(arg).str("'");
                    return usage_error(l.peek());
                }
            }
        }
    }
    let Some(path) = path else { return usage_error(b"verify needs a PLAN and TASK=PID for each task") };
    let plan = match load_plan(path, false) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let pids = match pids_for(&plan, &pairs) {
        Ok(p) => p,
        Err(c) => return c,
    };
    run_verify(&plan, pids, &keep, true)
}

/// Each plan task's pid, in plan order, from TASK=PID pairs: every task exactly once.
fn pids_for(plan: &Plan<'_>, pairs: &[(u16, i32)]) -> Result<&'static [i32], i32> {
    let mut arena = crate::arena::Arena::map(crate::arena::bytes_for::<i32>(plan.tasks.len())).map_err(|_| usage_error(b"cannot map memory"))?;
    let pids = arena.take::<i32>(plan.tasks.len());
    for &(t, p) in pairs {
        let Some(i) = plan.task_by_id(t) else {
            let mut l = Line::<100>::new();
            l.str("verify: task ").num(t as u64).str(" is not in the plan");
            return Err(usage_error(l.peek()));
        };
        if pids[i] != 0 {
            let mut l = Line::<100>::new();
            l.str("verify: task ").num(t as u64).str(" given twice");
            return Err(usage_error(l.peek()));
        }
        pids[i] = p;
    }
    if let Some(i) = pids.iter().position(|&p| p == 0) {
        let mut l = Line::<100>::new();
        l.str("verify: task ").num(plan.tasks[i].id as u64).str(" has no PID (give ").num(plan.tasks[i].id as u64).str("=PID)");
        return Err(usage_error(l.peek()));
    }
    Ok(pids)
}

/// Verifies and reports: the table on stdout (`table`), or mismatch lines on stderr. Returns
/// 0 when the tables match, 1 otherwise.
pub fn run_verify(plan: &Plan<'_>, pids: &[i32], keep: &[u32], table: bool) -> i32 {
    let mut out = Out::new(if table { 1 } else { 2 });
    let opts = crate::verify::Options { keep, table };
    let r = crate::verify::verify(plan, pids, &opts, &mut out);
    out.flush();
    match r {
        Ok(v) if v.mismatches == 0 => 0,
        Ok(_) => EXIT_RESTORE as i32,
        Err(e) => {
            let mut l = Line::<300>::new();
            l.str("fdslot: verify: ");
            e.format(&mut l);
            l.str("\n");
            eprint(l.as_bytes());
            EXIT_RESTORE as i32
        }
    }
}
