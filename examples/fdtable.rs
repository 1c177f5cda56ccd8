//! Prints the fd tables of processes, with a "share" letter per open file description:
//! fds with the same letter share one description (found with kcmp(KCMP_FILE) across all pids).
//!
//!     cargo run --release --example fdtable -- PID...

use std::fs;

const KCMP_FILE: libc::c_long = 0;

struct Fd {
    pid: i32,
    fd: u32,
    target: String,
    pos: String,
    flags: u32,
}

/// kcmp ordering of two fds: 0 same description, 1 / 2 less / greater, -1 error.
fn kcmp(a: &Fd, b: &Fd) -> i64 {
    // SAFETY: kcmp takes integers only.
    unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            a.pid as libc::c_long,
            b.pid as libc::c_long,
            KCMP_FILE,
            a.fd as libc::c_ulong,
            b.fd as libc::c_ulong,
        )
    }
}

fn flag_names(f: u32) -> String {
    let mut v = vec![match f & 3 {
        0 => "rdonly",
        1 => "wronly",
        _ => "rdwr",
    }];
    for (bit, name) in [
        (libc::O_APPEND, "append"),
        (libc::O_NONBLOCK, "nonblock"),
        (libc::O_SYNC, "sync"),
        (libc::O_DSYNC, "dsync"),
        (libc::O_DIRECTORY, "directory"),
        (libc::O_NOFOLLOW, "nofollow"),
        (libc::O_NOATIME, "noatime"),
        (libc::O_PATH, "path"),
        (libc::O_DIRECT, "direct"),
    ] {
        let bit = bit as u32;
        if f & bit == bit {
            v.push(name);
        }
    }
    if f & libc::O_SYNC as u32 == libc::O_SYNC as u32 {
        v.retain(|n| *n != "dsync");
    }
    v.join(",")
}

fn read_fds(pid: i32) -> std::io::Result<Vec<Fd>> {
    let mut fds: Vec<u32> = fs::read_dir(format!("/proc/{pid}/fd"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort();
    Ok(fds
        .into_iter()
        .map(|fd| {
            let target = fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                .map(|p| p.display().to_string())
                .unwrap_or_else(|e| format!("<{e}>"));
            let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
            let field = |k: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(k))
                    .map(|v| v.trim().to_string())
            };
            let pos = field("pos:").unwrap_or_else(|| "?".into());
            let flags = field("flags:")
                .and_then(|v| u32::from_str_radix(&v, 8).ok())
                .unwrap_or(0);
            Fd {
                pid,
                fd,
                target,
                pos,
                flags,
            }
        })
        .collect())
}

/// "A".."Z", then "AA", "AB", ...
fn letter(mut i: usize) -> String {
    let mut s = Vec::new();
    loop {
        s.push(b'A' + (i % 26) as u8);
        if i < 26 {
            break;
        }
        i = i / 26 - 1;
    }
    s.reverse();
    String::from_utf8(s).unwrap()
}

fn main() {
    let pids: Vec<i32> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap_or_else(|_| panic!("not a pid: {a}")))
        .collect();
    if pids.is_empty() {
        eprintln!("usage: fdtable PID...");
        std::process::exit(2);
    }
    let mut all = Vec::new();
    for &pid in &pids {
        match read_fds(pid) {
            Ok(v) => all.extend(v),
            Err(e) => eprintln!("fdtable: pid {pid}: {e}"),
        }
    }
    // Sort indices by kcmp order: fds of one description become neighbours; give each run of
    // equal ones a letter, in order of first appearance in the table.
    let mut order: Vec<usize> = (0..all.len()).collect();
    order.sort_by(|&a, &b| match kcmp(&all[a], &all[b]) {
        1 => std::cmp::Ordering::Less,
        2 => std::cmp::Ordering::Greater,
        _ => std::cmp::Ordering::Equal,
    });
    let mut group = vec![0usize; all.len()];
    let mut g = 0;
    for (k, w) in order.iter().enumerate() {
        if k > 0 && kcmp(&all[order[k - 1]], &all[*w]) != 0 {
            g += 1;
        }
        group[*w] = g;
    }
    let mut names = std::collections::HashMap::new();
    let share: Vec<String> = group
        .iter()
        .map(|g| {
            let n = names.len();
            names.entry(*g).or_insert_with(|| letter(n)).clone()
        })
        .collect();
    let mut last = None;
    for (i, f) in all.iter().enumerate() {
        if last != Some(f.pid) {
            println!("{}pid {}", if last.is_some() { "\n" } else { "" }, f.pid);
            println!(
                "{:>7}  {:<5}  {:>10}  {:<28}  {:<7}  target",
                "fd", "share", "pos", "flags", "cloexec"
            );
            last = Some(f.pid);
        }
        let cloexec = if f.flags & libc::O_CLOEXEC as u32 != 0 {
            "yes"
        } else {
            "no"
        };
        println!(
            "{:>7}  {:<5}  {:>10}  {:<28}  {:<7}  {}",
            f.fd,
            share[i],
            f.pos,
            flag_names(f.flags),
            cloexec,
            f.target
        );
    }
}
