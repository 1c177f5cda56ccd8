//! `fdslot capture PID... [--tree] [--skip-unsupported] [--data DIR]`: prints a plan of the
//! live processes' fd tables.

use super::args::{self, Args};
use super::usage_error;
use crate::capture::{self, Options};
use crate::inspect::out::Out;
use crate::report::EXIT_RESTORE;

/// The most pids on the command line.
const MAX_PIDS: usize = 4096;

pub fn cmd_capture(a: &mut Args) -> i32 {
    let mut pids = heapless::Vec::<i32, MAX_PIDS>::new();
    let mut opts = Options { tree: false, skip_unsupported: false, data_dir: None };
    while let Some(arg) = a.next() {
        match arg {
            b"--tree" => opts.tree = true,
            b"--skip-unsupported" => opts.skip_unsupported = true,
            b"--data" => match a.next() {
                Some(d) if !d.is_empty() => opts.data_dir = Some(d),
                _ => return usage_error(b"--data needs a directory"),
            },
            _ if !arg.starts_with(b"-") => {
                let Some(pid) = crate::text::parse_radix(arg, 10).filter(|&p| (1..=i32::MAX as u64).contains(&p)) else {
                    return args::unexpected(arg);
                };
                if pids.push(pid as i32).is_err() {
                    return usage_error(b"capture: at most 4096 pids");
                }
            }
            _ => return args::unexpected(arg),
        }
    }
    if pids.is_empty() {
        return usage_error(b"capture needs at least one PID");
    }
    let mut err = Out::new(2);
    let result = capture::collect_tasks(&pids, opts.tree).and_then(|tasks| {
        if tasks.len() > 65535 {
            let mut line = crate::text::Line::new();
            line.str("fdslot: capture: more than 65535 tasks (a plan's limit)");
            return Err(capture::CaptureError { line });
        }
        let mut out = Out::new(1);
        let r = capture::capture(tasks, &opts, &mut out, &mut err);
        out.flush();
        r
    });
    let code = match result {
        Ok(c) if c.unsupported > 0 && !opts.skip_unsupported => EXIT_RESTORE as i32,
        Ok(_) => 0,
        Err(mut e) => {
            e.line.str("\n");
            err.push(e.line.as_bytes());
            EXIT_RESTORE as i32
        }
    };
    err.flush();
    code
}
