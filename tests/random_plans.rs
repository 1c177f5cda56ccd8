//! Seeded random plans over every kind (reg, fifo, pipe with data= and size=, socketpair of the
//! three types, eventfd, memfd, reopen, inherit), with dup'd fds, cloexec, random opener=,
//! random parent trees, some shared-table (files=) groups and some nofile= limits: 2..=12
//! tasks, up to 40 objects, fds in 0..200. Each of 400 seeds runs `run --stop` (alternating
//! `--batch 1`, the default and a random batch size) and the kernel checker. A failure names
//! the seed and prints its plan.
//!
//! - `FDSLOT_SEED=N cargo test --release --test random_plans one_seed` reruns one seed;
//! - `FDSLOT_RANDOM_SEEDS=N` runs N more seeds (`more_seeds`);
//! - `FDSLOT_RANDOM_NO_INHERIT=1` leaves inherit objects out, `FDSLOT_RANDOM_NO_FILES=1` the
//!   files= groups (to tell failures apart).
//!
//! Plus one bigger case: 100 tasks, each holding ends of pipes and socket pairs whose openers
//! are other tasks; and 120 seeds in restore mode (one `fdslot restore` per table owner).

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

/// Test-owned descriptions a plan may inherit: (fd number in the plan, our fd).
struct Inheritable {
    _keep: Vec<OwnedFd>,
    _listener: std::net::TcpListener,
    fds: Vec<(u32, i32)>,
}

impl Inheritable {
    fn new() -> Inheritable {
        let l = tcp_listener();
        let (a, b) = unix_pair(libc::SOCK_DGRAM);
        let (c, _d) = unix_pair(libc::SOCK_STREAM);
        let fds = vec![
            (230, l.as_raw_fd()),
            (231, b.as_raw_fd()),
            (232, c.as_raw_fd()),
        ];
        Inheritable {
            _keep: vec![a, b, c, _d],
            _listener: l,
            fds,
        }
    }
}

struct Gen<'a> {
    rng: Rng,
    dir: &'a TmpDir,
    p: Plan,
    /// table owner → fds used in it.
    used: BTreeMap<u16, BTreeSet<u32>>,
    ids: Vec<u16>,
    next_obj: u32,
    files: Vec<PathBuf>,
    fifos: Vec<PathBuf>,
    subdir: PathBuf,
    /// Inherited fds used by this plan (plan fd, our fd).
    inherited: Vec<(u32, i32)>,
}

impl<'a> Gen<'a> {
    fn chance(&mut self, n: u64) -> bool {
        self.rng.below(n) == 0
    }
    fn pick<T: Clone>(&mut self, v: &[T]) -> T {
        v[self.rng.below(v.len() as u64) as usize].clone()
    }
    fn task(&mut self) -> u16 {
        let ids = self.ids.clone();
        self.pick(&ids)
    }
    /// A free fd in task `t`'s table (None when the table is nearly full).
    fn fd(&mut self, t: u16) -> Option<u32> {
        let owner = self.p.table_owner(t);
        for _ in 0..100 {
            let fd = self.rng.below(200) as u32;
            if self.used.entry(owner).or_default().insert(fd) {
                return Some(fd);
            }
        }
        let used = self.used.entry(owner).or_default();
        let fd = (0..200).find(|fd| !used.contains(fd))?;
        used.insert(fd);
        Some(fd)
    }
    /// 1..=max targets of end `end` on the last object (each in a random task).
    fn targets(&mut self, end: u8, min: u64, max: u64) {
        let n = min + self.rng.below(max - min + 1);
        let mut placed = 0;
        for _ in 0..n {
            // Dups in one task now and then: the same task again.
            let prev = self.p.objs.last().unwrap().targets.last().map(|t| t.task);
            let t = match prev {
                Some(prev) if self.chance(3) => prev,
                _ => self.task(),
            };
            if let Some(fd) = self.fd(t) {
                let ce = self.chance(4);
                self.p.target(end, t, fd, ce);
                placed += 1;
            }
        }
        if placed == 0 && min > 0 {
            // The plan must stay valid: every object needs a target.
            let t = self.ids[0];
            let fd = self.fd(t).expect("task table full");
            self.p.target(end, t, fd, false);
        }
    }
    fn maybe_opener(&mut self) {
        if self.chance(3) {
            let t = self.task();
            self.p.opener(t);
        }
    }
    fn bytes(&mut self, max: u64) -> Vec<u8> {
        let n = self.rng.below(max + 1) as usize;
        let x = self.rng.next();
        (0..n)
            .map(|i| (x.wrapping_mul(i as u64 + 1) >> 24) as u8)
            .collect()
    }
    fn data_file(&mut self, bytes: &[u8]) -> PathBuf {
        let id = self.next_obj;
        self.dir.file(&format!("data{id}"), bytes)
    }

    fn build(&mut self) {
        // Tasks: random distinct ids, random parents among earlier tasks, some files= groups.
        let n = 2 + self.rng.below(11) as usize;
        let mut ids = BTreeSet::new();
        while ids.len() < n {
            let id = if self.chance(4) {
                1 + self.rng.below(65535) as u16
            } else {
                1 + self.rng.below(40) as u16
            };
            ids.insert(id);
        }
        let mut ids: Vec<u16> = ids.into_iter().collect();
        self.rng.shuffle(&mut ids);
        let mut parent_of: BTreeMap<u16, Option<u16>> = BTreeMap::new();
        for (k, &id) in ids.iter().enumerate() {
            let parent = if k > 0 && self.chance(2) {
                Some(ids[self.rng.below(k as u64) as usize])
            } else {
                None
            };
            match parent {
                Some(pp) => self.p.child(id, pp),
                None => self.p.task(id),
            };
            parent_of.insert(id, parent);
            if k > 0 && self.chance(5) && std::env::var_os("FDSLOT_RANDOM_NO_FILES").is_none() {
                // files=: the parent, or an earlier sibling (same parent, maybe none).
                let sibs: Vec<u16> = ids[..k]
                    .iter()
                    .copied()
                    .filter(|s| parent_of[s] == parent)
                    .collect();
                let with = match (parent, sibs.is_empty()) {
                    (Some(pp), true) => Some(pp),
                    (Some(pp), false) if self.chance(2) => Some(pp),
                    (_, false) => Some(self.pick(&sibs)),
                    (None, true) => None,
                };
                if let Some(w) = with {
                    self.p.files(id, w);
                }
            }
        }
        self.ids = ids;
        let nobj = 1 + self.rng.below(40);
        let mut pipes: Vec<(u32, bool, bool)> = Vec::new(); // (id, r planned, w planned)
        for _ in 0..nobj {
            self.next_obj += 1 + self.rng.below(3) as u32;
            let id = self.next_obj;
            match self.rng.below(16) {
                0..=2 => {
                    let (path, flags, pos) = match self.rng.below(8) {
                        0 => (self.subdir.clone(), "rdonly,directory", None),
                        1 => {
                            let f = self.files.clone();
                            (self.pick(&f), "path", None)
                        }
                        2 => (PathBuf::from("/dev/null"), "rdwr", None),
                        _ => {
                            let f = self.files.clone();
                            let fl = self.pick(&[
                                "rdonly",
                                "wronly",
                                "rdwr",
                                "wronly,append",
                                "rdwr,nonblock",
                                "rdonly,noatime",
                            ]);
                            let pos = if self.chance(2) {
                                Some(self.rng.below(100))
                            } else {
                                None
                            };
                            (self.pick(&f), fl, pos)
                        }
                    };
                    match pos {
                        Some(pos) => self.p.reg_pos(id, &path, flags, pos),
                        None => self.p.reg(id, &path, flags),
                    };
                    self.maybe_opener();
                    self.targets(0, 1, 4);
                }
                3 | 4 => {
                    let f = self.fifos.clone();
                    let path = self.pick(&f);
                    let mut fl = self.pick(&["rdonly", "wronly", "rdwr"]).to_string();
                    if self.chance(3) {
                        fl.push_str(",nonblock");
                    }
                    self.p.fifo(id, &path, &fl);
                    self.maybe_opener();
                    self.targets(0, 1, 3);
                }
                5..=7 => {
                    self.p.pipe(id);
                    let size = if self.chance(3) {
                        let s = self.pick(&[1u64, 4096, 5000, 8192, 16384, 65536, 100_000]);
                        self.p.pipe_size(s);
                        Some(s)
                    } else {
                        None
                    };
                    if self.chance(3) {
                        let cap = size.map_or(65536, pipe_capacity);
                        let max = if self.chance(8) { cap } else { cap.min(3000) };
                        let data = self.bytes(max);
                        let path = self.data_file(&data);
                        self.p.pipe_data(&path, &data);
                    }
                    self.maybe_opener();
                    self.targets(0, 0, 3);
                    let min_w = if self.p.objs.last().unwrap().targets.is_empty() {
                        1
                    } else {
                        0
                    };
                    self.targets(1, min_w, 3);
                    let o = self.p.objs.last().unwrap();
                    pipes.push((
                        id,
                        o.targets.iter().any(|t| t.end == 0),
                        o.targets.iter().any(|t| t.end == 1),
                    ));
                }
                8..=10 => {
                    let ty = self.pick(&["stream", "dgram", "seqpacket"]);
                    let fl = if self.chance(3) { "nonblock" } else { "" };
                    self.p.socketpair(id, ty, fl);
                    self.maybe_opener();
                    self.targets(0, 0, 3);
                    let min_b = if self.p.objs.last().unwrap().targets.is_empty() {
                        1
                    } else {
                        0
                    };
                    self.targets(1, min_b, 3);
                }
                11 => {
                    let count = match self.rng.below(4) {
                        0 => None,
                        1 => Some(0),
                        2 => Some(self.rng.below(1000)),
                        _ => Some(self.rng.next() % (u64::MAX - 1)),
                    };
                    let fl = self.pick(&["", "semaphore", "nonblock", "semaphore,nonblock"]);
                    self.p.eventfd(id, count, fl);
                    self.maybe_opener();
                    self.targets(0, 1, 4);
                }
                12 | 13 => {
                    let name_len = 1 + self.rng.below(20) as usize;
                    let name: Vec<u8> = (0..name_len)
                        .map(|_| self.pick(b"abcxyz019 %,#-_.\xe9"))
                        .collect();
                    let mut m = MemfdSpec {
                        name,
                        ..Default::default()
                    };
                    if self.chance(2) {
                        let data = self.bytes(9000);
                        let path = self.data_file(&data);
                        m.data = Some((path, data));
                    }
                    if self.chance(2) {
                        m.size = Some(self.rng.below(10_000));
                    }
                    if self.chance(2) {
                        let all = ["seal", "shrink", "grow", "write", "future_write"];
                        let s: Vec<&str> = all.iter().copied().filter(|_| self.chance(2)).collect();
                        m.seals = s.join(",");
                    }
                    m.flags = self
                        .pick(&["", "append", "nonblock", "append,nonblock"])
                        .to_string();
                    if self.chance(2) {
                        m.pos = Some(self.rng.below(20_000));
                    }
                    self.p.memfd(id, m);
                    self.maybe_opener();
                    self.targets(0, 1, 4);
                }
                14 => {
                    let ends: Vec<(u32, u8)> = pipes
                        .iter()
                        .flat_map(|&(pid, _, _)| {
                            // Either end, planned or not (a reopen of an end planned
                            // nowhere is then that end's only description).
                            vec![(pid, 0u8), (pid, 1u8)]
                        })
                        .collect();
                    if ends.is_empty() {
                        continue;
                    }
                    let (pipe, end) = self.pick(&ends);
                    let fl = if self.chance(2) { "nonblock" } else { "" };
                    self.p.reopen(id, pipe, end, fl);
                    self.targets(0, 1, 3);
                }
                _ => {
                    if std::env::var_os("FDSLOT_RANDOM_NO_INHERIT").is_some() {
                        continue;
                    }
                    let inh = INH.with(|i| i.fds.clone());
                    let (fd, src) = self.pick(&inh);
                    if self.inherited.iter().any(|&(f, _)| f == fd) {
                        continue;
                    }
                    self.inherited.push((fd, src));
                    self.p.inherit(id, fd, src);
                    self.maybe_opener();
                    self.targets(0, 1, 3);
                }
            }
        }
    }
}

thread_local! {
    static INH: Inheritable = Inheritable::new();
}

/// Builds seed `seed`'s plan in `dir`; returns it, its `run` args and its inherited fds.
fn plan_for(seed: u64, dir: &TmpDir) -> (Plan, Vec<String>, Vec<(u32, i32)>) {
    plan_with(seed, dir, false)
}

/// [`plan_for`], with `parents_files`: then 300 regular files more, which every table holds
/// (at fds 300 up), a run long enough for `run` to spread its opens over the tables.
fn plan_with(seed: u64, dir: &TmpDir, parents_files: bool) -> (Plan, Vec<String>, Vec<(u32, i32)>) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5eed_f00d_1234_5678);
    for _ in 0..4 {
        rng.next();
    }
    let subdir = dir.path("sub");
    std::fs::create_dir_all(&subdir).unwrap();
    let files = (0..3)
        .map(|i| {
            dir.file(
                &format!("file{i}"),
                format!("contents of file {i}, seed {seed}").as_bytes(),
            )
        })
        .collect();
    let fifos: Vec<PathBuf> = (0..2)
        .map(|i| {
            let f = dir.path(&format!("fifo{i}"));
            mkfifo(&f);
            f
        })
        .collect();
    let mut g = Gen {
        rng,
        dir,
        p: Plan::new(),
        used: BTreeMap::new(),
        ids: vec![],
        next_obj: 0,
        files,
        fifos,
        subdir,
        inherited: vec![],
    };
    g.build();
    if parents_files {
        let owners: BTreeSet<u16> = g.ids.iter().map(|&t| g.p.table_owner(t)).collect();
        for i in 0..300u32 {
            g.next_obj += 1;
            let f = g.files[(i % 3) as usize].clone();
            g.p.reg_pos(g.next_obj, &f, if i % 2 == 0 { "rdonly" } else { "rdwr" }, (i % 7) as u64);
            for &t in &owners {
                let ce = g.chance(4);
                g.p.target(0, t, 300 + i, ce);
                g.used.entry(t).or_default().insert(300 + i);
            }
        }
    }
    // nofile= on some tasks that have a table of their own: above their highest fd.
    let mut members: BTreeMap<u16, usize> = BTreeMap::new();
    for t in &g.p.tasks {
        *members.entry(g.p.table_owner(t.id)).or_default() += 1;
    }
    let ids = g.ids.clone();
    for t in ids {
        if members[&g.p.table_owner(t)] == 1 && g.chance(6) {
            let top = g
                .used
                .get(&t)
                .and_then(|s| s.iter().next_back().copied())
                .unwrap_or(0);
            let n = top as u64 + 1 + g.rng.below(300);
            g.p.nofile(t, n);
        }
    }
    let args = match seed % 3 {
        0 => vec!["--batch".to_string(), "1".to_string()],
        1 => vec![],
        _ => vec!["--batch".to_string(), (1 + g.rng.below(253)).to_string()],
    };
    (g.p, args, g.inherited)
}

/// Runs and checks one seed; Err(message with seed and plan).
fn run_seed(seed: u64) -> Result<(), String> {
    run_seed_with(seed, &[])
}

/// [`run_seed`] with `extra` run args after the seed's own.
fn run_seed_with(seed: u64, extra: &[&str]) -> Result<(), String> {
    run_plan_seed(seed, false, extra)
}

/// [`run_seed_with`], the plan with [`plan_with`]'s parent's files or not.
fn run_plan_seed(seed: u64, parents_files: bool, extra: &[&str]) -> Result<(), String> {
    let dir = TmpDir::new(&format!("rnd{seed}"));
    let (p, mut args, inherited) = plan_with(seed, &dir, parents_files);
    args.extend(extra.iter().map(|a| a.to_string()));
    let text = p.text();
    let path = dir.plan(&text);
    let mut cmd = run_stop_cmd(&path, &strs(&args));
    for &(fd, src) in &inherited {
        pass_fd(&mut cmd, src, fd as i32);
    }
    let fail = |what: String| {
        format!(
            "seed {seed} (`FDSLOT_SEED={seed} cargo test --release --test random_plans one_seed`), run args {args:?}: {what}\n--- plan ---\n{text}"
        )
    };
    let r = start_stopped(cmd).map_err(|o| fail(format!("run did not get to ready: {o}")))?;
    let mut errs = Vec::new();
    if r.order != p.task_ids() {
        errs.push(format!("tasks printed in order {:?}", r.order));
    }
    errs.extend(check_plan(
        &p,
        &r.pids,
        &CheckOpts {
            stopped: true,
            ..Default::default()
        },
    ));
    errs.extend(r.parent_errors(&p));
    for &pid in r.pids.values() {
        kill(pid, libc::SIGKILL);
    }
    let o = r.wait(CAP);
    if !o.note.is_empty() || o.code() != Some(0) {
        errs.push(format!("run after the tasks were killed: {o}"));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        let n = errs.len();
        errs.truncate(30);
        Err(fail(format!("{n} problems:\n  {}", errs.join("\n  "))))
    }
}

fn seeds(range: std::ops::Range<u64>) {
    let mut failed = Vec::new();
    for seed in range {
        if let Err(e) = run_seed(seed) {
            failed.push((seed, e));
        }
    }
    if !failed.is_empty() {
        let seeds: Vec<u64> = failed.iter().map(|f| f.0).collect();
        let shown: Vec<&str> = failed.iter().take(3).map(|f| f.1.as_str()).collect();
        panic!(
            "{} seeds failed: {seeds:?}\n\n{}",
            failed.len(),
            shown.join("\n\n")
        );
    }
}

macro_rules! seed_chunks {
    ($($name:ident = $lo:expr, $hi:expr;)+) => {
        $( #[test] fn $name() { seeds($lo..$hi) } )+
    };
}

seed_chunks! {
    seeds_000_039 = 0, 40;
    seeds_040_079 = 40, 80;
    seeds_080_119 = 80, 120;
    seeds_120_159 = 120, 160;
    seeds_160_199 = 160, 200;
    seeds_200_239 = 200, 240;
    seeds_240_279 = 240, 280;
    seeds_280_319 = 280, 320;
    seeds_320_359 = 320, 360;
    seeds_360_399 = 360, 400;
}

/// Every kind, `opener=`, shared tables and inherited fds with relays forced (1 to 3): the
/// objects two or more tables hold go through the relays, the rest keep their openers.
/// Seeds 0..60, or 0..$FDSLOT_RELAYED_SEEDS for a longer hunt.
#[test]
fn relayed_seeds() {
    let n = std::env::var("FDSLOT_RELAYED_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let mut failed = Vec::new();
    for seed in 0..n {
        let n = (1 + seed % 3).to_string();
        if let Err(e) = run_seed_with(seed, &["--relays", &n]) {
            failed.push(e);
        }
    }
    assert!(failed.is_empty(), "{} seeds failed with relays:\n\n{}", failed.len(), failed[..failed.len().min(3)].join("\n\n"));
}

/// Every kind, `opener=`, shared tables and inherited fds, with a parent's 300 files that
/// every table holds: `run` spreads their opens over the tables (no relays), and receivers
/// take batches lowest slot first among the rest. Seeds 0..60.
#[test]
fn seeds_with_a_parents_files() {
    let mut failed = Vec::new();
    for seed in 0..60 {
        if let Err(e) = run_plan_seed(seed, true, &["--relays", "0"]) {
            failed.push(e);
        }
    }
    assert!(failed.is_empty(), "{} seeds failed with a parent's files:\n\n{}", failed.len(), failed[..failed.len().min(3)].join("\n\n"));
}

/// Seeds 400..400+$FDSLOT_RANDOM_SEEDS (skipped without it): a longer hunt, in 2 threads.
#[test]
fn more_seeds() {
    let Some(n) = std::env::var("FDSLOT_RANDOM_SEEDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return;
    };
    let half = n / 2;
    let a = std::thread::spawn(move || std::panic::catch_unwind(|| seeds(400..400 + half)));
    let b = std::thread::spawn(move || std::panic::catch_unwind(|| seeds(400 + half..400 + n)));
    let (ra, rb) = (a.join().unwrap(), b.join().unwrap());
    assert!(ra.is_ok() && rb.is_ok(), "see the panics above");
}

/// One seed from $FDSLOT_SEED (skipped without it), printing its plan.
#[test]
fn one_seed() {
    let Some(seed) = std::env::var("FDSLOT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    else {
        return;
    };
    let dir = TmpDir::new("rndone");
    let (p, args, _) = plan_for(seed, &dir);
    eprintln!("seed {seed}, run args {args:?}\n{}", p.text());
    if let Err(e) = run_seed(seed) {
        panic!("{e}");
    }
}

/// The generator itself: every kind and feature shows up across the seeds, and every plan is
/// one `fdslot check` accepts (so a failing seed is the restore's fault, not the plan's).
#[test]
fn generator_covers_everything() {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let dir = TmpDir::new("rndgen");
    for seed in 0..400 {
        let d = TmpDir::new("rndg");
        let (p, _, _) = plan_for(seed, &d);
        for o in &p.objs {
            seen.insert(o.kind.keyword().to_string());
            if o.opener.is_some() {
                seen.insert("opener".into());
            }
            match &o.kind {
                Kind::Pipe { data: Some(_), .. } => {
                    seen.insert("pipe data".into());
                }
                Kind::Socketpair { ty, .. } => {
                    seen.insert(format!("socketpair {ty}"));
                }
                Kind::Memfd(m) if !m.seals.is_empty() => {
                    seen.insert("seals".into());
                }
                _ => {}
            }
            if o.kind.keyword() == "pipe" && o.targets.iter().all(|t| t.end == 1) {
                seen.insert("pipe end to nobody".into());
            }
            let mut per_task = BTreeSet::new();
            for t in &o.targets {
                if !per_task.insert((t.task, t.end)) {
                    seen.insert("dup".into());
                }
                if t.cloexec {
                    seen.insert("cloexec".into());
                }
            }
        }
        for t in &p.tasks {
            if t.files.is_some() {
                seen.insert("files".into());
            }
            if t.parent.is_some() {
                seen.insert("parent".into());
            }
            if t.nofile.is_some() {
                seen.insert("nofile".into());
            }
        }
        if seed < 40 {
            let plan = dir.plan(&p.text());
            let mut c = fdslot();
            c.arg("check").arg(&plan);
            let o = output(c);
            assert_eq!(
                o.code(),
                Some(0),
                "seed {seed}: generated plan rejected: {o}\n{}",
                p.text()
            );
        }
    }
    for want in [
        "reg",
        "fifo",
        "pipe",
        "socketpair",
        "eventfd",
        "memfd",
        "reopen",
        "inherit",
        "opener",
        "pipe data",
        "socketpair stream",
        "socketpair dgram",
        "socketpair seqpacket",
        "seals",
        "pipe end to nobody",
        "dup",
        "cloexec",
        "files",
        "parent",
        "nofile",
    ] {
        let off = (want == "inherit" && std::env::var_os("FDSLOT_RANDOM_NO_INHERIT").is_some())
            || (want == "files" && std::env::var_os("FDSLOT_RANDOM_NO_FILES").is_some());
        assert!(
            off || seen.contains(want),
            "no seed generates {want:?}; seen {seen:?}"
        );
    }
}

// --- 100 tasks --------------------------------------------------------------------------------

/// 100 tasks in a ring: task k holds the read end of pipe k and the write end of pipe k-1, end
/// a of socket pair k and end b of pair k-1; each object's opener is a task holding none of it
/// (half the ring away), so every task sends and receives at once.
fn hundred_tasks(batch: Option<u32>) {
    let d = TmpDir::new("hundred");
    let n: u16 = 100;
    let mut p = Plan::new();
    for t in 1..=n {
        if t > 1 && t % 4 == 0 {
            p.child(t, t / 2);
        } else {
            p.task(t);
        }
    }
    let next = |k: u16, by: u16| (k - 1 + by) % n + 1;
    let types = ["stream", "dgram", "seqpacket"];
    for k in 1..=n {
        let id = k as u32;
        p.pipe(id)
            .opener(next(k, 50))
            .r(k, 3)
            .w(next(k, 1), 4)
            .w_ce(next(k, 1), 10);
        p.socketpair(
            1000 + id,
            types[k as usize % 3],
            if k % 5 == 0 { "nonblock" } else { "" },
        )
        .opener(next(k, 37))
        .a(k, 5)
        .b(next(k, 1), 6);
        p.eventfd(2000 + id, Some(k as u64), "")
            .opener(next(k, 13))
            .at(k, 7)
            .at(next(k, 2), 8);
    }
    let args = batch_args(batch);
    if let Err(e) = try_run_and_check(&p, &d, &strs(&args)) {
        panic!("{e}");
    }
}

mod hundred_tasks {
    #[test]
    fn batch1() {
        super::hundred_tasks(Some(1))
    }
    #[test]
    fn batch_default() {
        super::hundred_tasks(None)
    }
}

// --- restore mode -----------------------------------------------------------------------------

/// Seed `seed` in restore mode: one `fdslot restore PLAN T -- /bin/sleep 100` per table owner
/// (tasks sharing a table take no part; the owner rebuilds the whole table), the barrier run
/// among the tasks themselves, every process given the inherited fds; checked after exec.
fn restore_seed(seed: u64) -> Result<(), String> {
    let dir = TmpDir::new(&format!("rrnd{seed}"));
    let (p, args, inherited) = plan_for(seed, &dir);
    let text = p.text();
    let path = dir.plan(&text);
    let s = session(&format!("rr{seed}"));
    let owners: Vec<u16> = p
        .task_ids()
        .into_iter()
        .filter(|&t| p.table_owner(t) == t)
        .collect();
    let fail =
        |what: String| format!("restore seed {seed}, args {args:?}: {what}\n--- plan ---\n{text}");
    let mut procs: Vec<(u16, Spawned)> = owners
        .iter()
        .map(|&t| {
            let mut a = vec!["--timeout".to_string(), "10".to_string()];
            a.extend(args.iter().cloned());
            let mut c = restore_cmd(&path, t, &s, &strs(&a));
            c.args(["--", "/bin/sleep", "100"]);
            for &(fd, src) in &inherited {
                pass_fd(&mut c, src, fd as i32);
            }
            (t, Spawned::spawn(c))
        })
        .collect();
    let mut pids = BTreeMap::new();
    let mut stuck = None;
    for (t, pr) in procs.iter() {
        if !wait_sleeping(pr.pid(), std::time::Duration::from_secs(15)) {
            stuck = Some(*t);
            break;
        }
        pids.insert(*t, pr.pid());
    }
    if let Some(t) = stuck {
        let outs: Vec<String> = procs
            .iter_mut()
            .map(|(u, q)| {
                format!(
                    "task {u}{}: {}",
                    if *u == t { " (did not exec)" } else { "" },
                    q.kill()
                )
            })
            .collect();
        return Err(fail(format!("task {t} did not exec:\n{}", outs.join("\n"))));
    }
    let mut exp = p.expect();
    exp.retain(|t, _| pids.contains_key(t));
    let mut errs = check_tables(
        &exp,
        &pids,
        &CheckOpts {
            after_exec: true,
            ..Default::default()
        },
    );
    for t in &p.tasks {
        if let (Some(n), Some(&pid)) = (t.nofile, pids.get(&t.id)) {
            match proc_nofile(pid) {
                Ok((a, b)) if a == n && b == n => {}
                r => errs.push(format!(
                    "task {}: Max open files {r:?}, planned nofile={n}",
                    t.id
                )),
            }
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        errs.truncate(30);
        Err(fail(format!("kernel check:\n  {}", errs.join("\n  "))))
    }
}

fn restore_seeds(range: std::ops::Range<u64>) {
    let failed: Vec<String> = range.filter_map(|s| restore_seed(s).err()).collect();
    assert!(
        failed.is_empty(),
        "{} seeds failed:\n\n{}",
        failed.len(),
        failed
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}

macro_rules! restore_chunks {
    ($($name:ident = $lo:expr, $hi:expr;)+) => {
        $( #[test] fn $name() { restore_seeds($lo..$hi) } )+
    };
}

restore_chunks! {
    restore_seeds_1000_1029 = 1000, 1030;
    restore_seeds_1030_1059 = 1030, 1060;
    restore_seeds_1060_1089 = 1060, 1090;
    restore_seeds_1090_1119 = 1090, 1120;
}
