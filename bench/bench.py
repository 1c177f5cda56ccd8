#!/usr/bin/env python3
"""make bench: how long `fdslot run --stop` takes to rebuild fd tables, against its own floor.

Generates its plans (seeded), runs each several times, and reports medians:
  - the CRIU matrix: N files in the root, inherited by K children (every file in every task);
  - the floor for the same tasks and fds: every fd a private open in its own task (nothing sent);
  - many tasks with random sharing;
  - `fdslot inject` into running processes (one fd moved, reptyr-style; two processes made to
    share 1,000 files), wall time of the whole command.
Both transport forms (--batch 1 and the default 253). Time is wall time from exec of
`fdslot run --stop` until it prints `ready` (the restore only). Peak RSS is the tasks' VmHWM.

Writes bench/results/results.md and bench/results/per_fd.svg, and prints the table.
`--quick` runs the smallest sizes once (CI uses it so the benchmark never rots; times there are
not judged).
"""
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FDSLOT = os.environ.get("FDSLOT_BIN", os.path.join(TOP, "target", "release", "fdslot"))
BLOB = os.environ.get("FDSLOT_BLOB", os.path.join(TOP, "fdslot.blob"))
SEED_FLOOR = os.path.join(TOP, "target", "release", "examples", "seed_floor")
OUT = os.path.join(TOP, "bench", "results")
# CRIU 4.2 on these machines, whole restore of N files inherited by K children (median of 5).
CRIU_MS = {(1000, 4): 184.0, (10000, 1): 187.0, (10000, 4): 3965.0}


def shared_plan(path, files, children):
    lines = ["fdslot 1", "task 1"] + [f"task {t} parent=1" for t in range(2, children + 2)]
    for i in range(files):
        lines.append(f"reg {i + 1} {path} flags=rdonly")
        lines.extend(f"  at {t}:{i + 3}" for t in range(1, children + 2))
    return "\n".join(lines) + "\n"


def read_until_ready(p):
    """The task pids `run --stop` prints, up to its `ready` line."""
    pids = []
    for line in p.stdout:
        w = line.split()
        if w[:1] == [b"task"]:
            pids.append(int(w[3]))
        elif w == [b"ready"]:
            break
    return pids


def kill_all(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def tasks_only_plan(children):
    """The fork+exit floor: the same tasks with no fds at all."""
    return "\n".join(["fdslot 1", "task 1"] + [f"task {t} parent=1" for t in range(2, children + 2)]) + "\n"


# The forms a row is measured in: the seed's, the batched (with run's relays where it
# chooses them), and the batched without relays (for the many-task rows, where relays apply).
FORMS = {1: ["--batch", "1"], 253: ["--batch", "253"], "direct": ["--batch", "253", "--relays", "0"]}
FORM_LABEL = {1: "1", 253: "253", "direct": "253, --relays 0"}


def syscalls(plan_text, form, tmp):
    """Syscalls of one `run --stop` (run and every task), counted by strace -f -c; None when
    strace is not installed."""
    if not shutil.which("strace"):
        return None
    plan_file = os.path.join(tmp, "plan-strace")
    with open(plan_file, "w") as f:
        f.write(plan_text)
    out = os.path.join(tmp, "strace.out")
    p = subprocess.Popen(["strace", "-f", "-c", "-o", out, FDSLOT, "run", plan_file, "--stop", *FORMS[form],
                          "--timeout", "60"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    pids = read_until_ready(p)
    kill_all(pids)
    p.wait()
    with open(out) as f:
        for line in f:
            w = line.split()
            if w and w[-1] == "total":
                return int(w[3]) if len(w) >= 5 else int(w[2])
    return None


def private_plan(path, files, children):
    """The floor: the same tasks and fds, each fd its own object opened in its own task."""
    return private_tasks_plan(path, children + 1, files)


def private_tasks_plan(path, tasks, fds_per_task):
    """The floor of a many-tasks plan: the same tasks and fds per task, each fd a private open."""
    lines = ["fdslot 1", "task 1"] + [f"task {t} parent=1" for t in range(2, tasks + 1)]
    oid = 0
    for t in range(1, tasks + 1):
        for i in range(fds_per_task):
            oid += 1
            lines.append(f"reg {oid} {path} flags=rdonly")
            lines.append(f"  at {t}:{i + 3}")
    return "\n".join(lines) + "\n"


def beyond_plan_kib(pid, plan_file):
    """A task's resident memory outside the plan's own pages: all of VmRSS but the plan file's
    mapping and fdslot's anonymous arenas (every one of which is sized from the plan; fdslot
    has no heap). What stays is the image, the stack and the kernel's vdso."""
    total = plan = 0
    current = ""
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            w = line.split()
            if "-" in w[0] and len(w) >= 5:
                current = w[5] if len(w) > 5 else ""
            elif w[0] == "Rss:":
                kib = int(w[1])
                total += kib
                if current in ("", plan_file) or current == "/dev/zero":
                    plan += kib
    return total - plan


def random_plan(path, tasks, fds_per_task, seed):
    """Many tasks: each object is held by 1 to 4 random tasks at random fds."""
    rng = random.Random(seed)
    lines = ["fdslot 1", "task 1"] + [f"task {t} parent=1" for t in range(2, tasks + 1)]
    free = {t: list(range(3, fds_per_task + 3)) for t in range(1, tasks + 1)}
    for fl in free.values():
        rng.shuffle(fl)
    oid = 0
    while any(free.values()):
        holders = [t for t in rng.sample(range(1, tasks + 1), min(tasks, rng.randint(1, 4))) if free[t]]
        if not holders:
            continue
        oid += 1
        lines.append(f"reg {oid} {path} flags=rdonly")
        for t in holders:
            lines.append(f"  at {t}:{free[t].pop()}")
    return "\n".join(lines) + "\n", sum(fds_per_task for _ in range(tasks))


def plan_tasks(plan_text):
    """How many tasks a plan declares."""
    return sum(1 for line in plan_text.splitlines() if line.startswith("task "))


def plan_holders(plan_text):
    """The task ids declared, in plan order, and each object's holders (task ids, once each),
    in object order."""
    tasks, objects = [], []
    for line in plan_text.splitlines():
        if line.startswith("task "):
            tasks.append(int(line.split()[1]))
        elif line.startswith("reg "):
            objects.append([])
        elif line.startswith("  at "):
            t = int(line.split()[1].split(":")[0])
            if t not in objects[-1]:
                objects[-1].append(t)
    return tasks, objects


# src/restore/spread.rs and src/restore/mod.rs, as the model below needs them.
MIN_CHUNK, SMALLEST_CHUNK, MAX_BATCH, WINDOW, NAME_BUDGET, MIN_WINDOW = 128, 16, 253, 64, 4096, 8


def min_chunk(batch):
    return max(-(-MIN_CHUNK * batch // MAX_BATCH), SMALLEST_CHUNK)


def openers_of(plan_text, batch):
    """Each object's opener as `run` picks it for batches of `batch` (the generated plans name
    none, have no relays in the seed's form, and list tasks in id order): the lowest holder,
    unless `run` spreads a run of objects that the same tasks hold (src/restore/spread.rs: runs
    of two chunks or more, a chunk at least `min_chunk(batch)`, chunk c to the c-th holder; not
    where a receiver would take more batches from two or more openers than its window)."""
    tasks, objects = plan_holders(plan_text)
    rank = {t: i for i, t in enumerate(tasks)}
    plain = [min(h, key=rank.get) for h in objects]
    spread, a, any_spread = list(plain), 0, False
    while a < len(objects):
        b = a + 1
        key = sorted(objects[a], key=rank.get)
        while b < len(objects) and sorted(objects[b], key=rank.get) == key:
            b += 1
        n, chunks = b - a, min(len(key), (b - a) // min_chunk(batch))
        if len(key) >= 2 and chunks >= 2:
            any_spread = True
            for p in range(n):
                spread[a + p] = key[p * chunks // n]
        a = b
    if not any_spread:
        return plain
    window = min(max(NAME_BUDGET // max(len(tasks), 1), MIN_WINDOW), WINDOW)
    per = {}
    for holders, opener in zip(objects, spread):
        for t in holders:
            if t != opener:
                per.setdefault(t, {}).setdefault(opener, 0)
                per[t][opener] += 1
    for runs in per.values():
        if len(runs) >= 2 and sum(-(-c // batch) for c in runs.values()) > window:
            return plain
    return spread


def received_by_task(plan_text, batch=253):
    """Task id -> fds it receives: every holder of an object but its opener (`openers_of`)."""
    _, objects = plan_holders(plan_text)
    received = {}
    for holders, opener in zip(objects, openers_of(plan_text, batch)):
        for t in holders:
            if t != opener:
                received[t] = received.get(t, 0) + 1
    return received


def received_fds(plan_text):
    """Fds the plan's tasks receive from one another."""
    return sum(received_by_task(plan_text).values())


def seed_costs(target):
    """The kernel's own cost of the seed's form on this machine, in us per file: (receiver,
    open, send), from examples/seed_floor (one thread, no fdslot); None if it is not built."""
    if not os.path.exists(SEED_FLOOR):
        return None
    out = subprocess.run([SEED_FLOOR, target, "2000", "5"], stdout=subprocess.PIPE, check=True).stdout.split()
    return float(out[1]), float(out[3]), float(out[5])


def seed_floor_ms(plan_text, costs):
    """The least wall time the seed's form could take for the plan, from the kernel's costs
    alone: no receiver takes its files faster than one receiver's syscalls allow, and every
    task's syscalls (per received fd: the receiver's and one send; per object: one open) share
    the machine's cores. Openers as `run` picks them in the seed's form (`openers_of`)."""
    rx, open_us, send_us = costs
    received = received_by_task(plan_text, 1)
    objects = sum(1 for line in plan_text.splitlines() if line.startswith("reg "))
    total = sum(received.values())
    one_receiver = max(received.values(), default=0) * rx
    all_tasks = (total * (rx + send_us) + objects * open_us) / (os.cpu_count() or 1)
    return max(one_receiver, all_tasks) / 1000.0


def run_once(plan_file, form):
    start = time.perf_counter()
    p = subprocess.Popen([FDSLOT, "run", plan_file, "--stop", *FORMS[form], "--timeout", "60"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pids = read_until_ready(p)
    elapsed = time.perf_counter() - start
    if not pids:
        err = p.stderr.read().decode()
        p.wait()
        raise RuntimeError(f"fdslot run failed: {err}")
    rss = beyond = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for l in f:
                    if l.startswith("VmHWM:"):
                        rss = max(rss, int(l.split()[1]))
            beyond = max(beyond, beyond_plan_kib(pid, plan_file))
        except OSError:
            pass
    kill_all(pids)
    p.wait()
    return elapsed * 1000.0, rss, beyond


def measure_set(configs, reps, tmp):
    """Runs several (key, plan text, form) configurations in turn, `reps` rounds of all of
    them, so that a drift of the machine's speed hits every one alike (the ratios between them
    are what to read). Returns key -> (median ms, (max peak RSS, max RSS beyond the plan))."""
    files = {}
    for i, (key, text, _) in enumerate(configs):
        files[key] = os.path.join(tmp, f"plan-{i}")
        with open(files[key], "w") as f:
            f.write(text)
    runs = {key: [] for key, _, _ in configs}
    # One untimed round first: the first runs after a plan is written pay for cold caches.
    for key, _, form in configs:
        run_once(files[key], form)
    for _ in range(reps):
        for key, _, form in configs:
            runs[key].append(run_once(files[key], form))
    return {key: (statistics.median(r[0] for r in rs), (max(r[1] for r in rs), max(r[2] for r in rs))) for key, rs in runs.items()}


def start_stopped(plan_file):
    """fdslot run --stop: (the run process, the task pids in plan order) once ready."""
    p = subprocess.Popen([FDSLOT, "run", plan_file, "--stop", "--timeout", "60"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pids = read_until_ready(p)
    if not pids:
        err = p.stderr.read().decode()
        p.wait()
        raise RuntimeError(f"fdslot run failed: {err}")
    return p, pids


def measure_capture(plan_text, reps, tmp):
    """Restores a plan (run --stop), then times fdslot capture --tree of its root and fdslot
    verify of all its tasks (medians, ms)."""
    plan_file = os.path.join(tmp, "plan")
    with open(plan_file, "w") as f:
        f.write(plan_text)
    p, pids = start_stopped(plan_file)
    try:
        cap, ver = [], []
        for _ in range(reps):
            start = time.perf_counter()
            out = subprocess.run([FDSLOT, "capture", str(pids[0]), "--tree"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            cap.append((time.perf_counter() - start) * 1000.0)
            if out.returncode != 0:
                raise RuntimeError(f"fdslot capture failed: {out.stderr.decode()}")
            start = time.perf_counter()
            out = subprocess.run([FDSLOT, "verify", plan_file] + [f"{t + 1}={pid}" for t, pid in enumerate(pids)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            ver.append((time.perf_counter() - start) * 1000.0)
            if out.returncode != 0:
                raise RuntimeError(f"fdslot verify failed: {out.stderr.decode()}")
        return statistics.median(cap), statistics.median(ver)
    finally:
        kill_all(pids)
        p.wait()


def many_files_plan(tmp, tasks, fds_per_task, files, seed):
    """Like random_plan, but each object opens one of `files` different files."""
    text, fds = random_plan("PATH", tasks, fds_per_task, seed)
    paths = []
    for i in range(files):
        path = os.path.join(tmp, f"f{i}")
        with open(path, "w") as f:
            f.write("x")
        paths.append(path)
    out, k = [], 0
    for line in text.splitlines():
        if line.startswith("reg "):
            line = line.replace(" PATH ", f" {paths[k % files]} ")
            k += 1
        out.append(line)
    return "\n".join(out) + "\n", fds


def svg_plot(series, path):
    """Time per fd (us) against fds, log x, one line per series; no dependencies."""
    w, h, m = 640, 360, 50
    xs = sorted({x for pts in series.values() for x, _ in pts})
    ymax = max(y for pts in series.values() for _, y in pts) * 1.15
    import math
    lx = [math.log10(x) for x in xs]
    x0, x1 = min(lx), max(lx) if max(lx) > min(lx) else min(lx) + 1

    def px(x):
        return m + (math.log10(x) - x0) / (x1 - x0) * (w - 2 * m)

    def py(y):
        return h - m - y / ymax * (h - 2 * m)

    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<line x1="{m}" y1="{h - m}" x2="{w - m}" y2="{h - m}" stroke="black"/>',
           f'<line x1="{m}" y1="{m}" x2="{m}" y2="{h - m}" stroke="black"/>',
           f'<text x="{w / 2}" y="{h - 12}" text-anchor="middle">fds restored (log scale)</text>',
           f'<text x="14" y="{h / 2}" transform="rotate(-90 14 {h / 2})" text-anchor="middle">time per fd (us)</text>']
    for x in xs:
        out.append(f'<text x="{px(x):.0f}" y="{h - m + 14}" text-anchor="middle">{x}</text>')
    for i in range(5):
        y = ymax * i / 4
        out.append(f'<text x="{m - 4}" y="{py(y) + 4:.0f}" text-anchor="end">{y:.1f}</text>')
    for k, (name, pts) in enumerate(series.items()):
        c = colors[k % len(colors)]
        d = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in sorted(pts))
        out.append(f'<polyline points="{d}" fill="none" stroke="{c}" stroke-width="2"/>')
        out.append(f'<text x="{w - m - 150}" y="{m + 14 * k}" fill="{c}">{name}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def inject_ms(plan_text, ntasks, reps, tmp):
    """Median wall time of `fdslot inject` into `ntasks` fresh sleeping processes."""
    plan_file = os.path.join(tmp, "inject-plan")
    with open(plan_file, "w") as f:
        f.write(plan_text)
    times = []
    for _ in range(reps):
        procs = [subprocess.Popen(["sleep", "1000"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
                 for _ in range(ntasks)]
        time.sleep(0.05)
        args = [FDSLOT, "inject", plan_file, "--blob", BLOB, "--keep", "all"]
        args += [f"{i + 1}={p.pid}" for i, p in enumerate(procs)]
        start = time.perf_counter()
        r = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append((time.perf_counter() - start) * 1000.0)
        for p in procs:
            p.kill()
            p.wait()
        if r.returncode != 0:
            raise RuntimeError(f"fdslot inject failed: {r.stderr.decode()}")
    return statistics.median(times)


def main():
    quick = "--quick" in sys.argv
    reps = 1 if quick else 5
    sizes = [100] if quick else [100, 1000, 10000]
    os.makedirs(OUT, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="fdslot-bench-")
    target = os.path.join(tmp, "file")
    with open(target, "w") as f:
        f.write("x")
    rows, series = [], {}
    # Every fork+exit measurement of a task count; the net figures use their median.
    forks = {}
    # The seed's kernel costs, measured right after each set (the machine's speed drifts).
    measured_costs = []

    def add_rows(name, plan, fds, got, criu=None):
        forks.setdefault(plan_tasks(plan), []).append(got["fork"][0])
        costs = seed_costs(target)
        if costs:
            measured_costs.append(costs)
        floor_ms = got["floor"][0]
        for form in [f for f in FORMS if f in got]:
            ms, (rss, beyond) = got[form]
            calls = syscalls(plan, form, tmp)
            seed_floor = seed_floor_ms(plan, costs) if form == 1 and costs else None
            rows.append(dict(name=name, batch=FORM_LABEL[form], fds=fds, ms=ms, floor_ms=floor_ms, rss=rss, beyond=beyond,
                             criu=f"{criu / ms:.0f}x" if criu else "", calls=calls / fds if calls else None,
                             tasks=plan_tasks(plan), received=received_fds(plan), seed_floor=seed_floor))

    for children in (1, 4):
        for n in sizes:
            fds = n * (children + 1)
            plan = shared_plan(target, n, children)
            got = measure_set([("fork", tasks_only_plan(children), 253), ("floor", private_plan(target, n, children), 253),
                               (1, plan, 1), (253, plan, 253)], reps, tmp)
            add_rows(f"{n} files x {children + 1} tasks", plan, fds, got, CRIU_MS.get((n, children)))
            for batch in (1, 253):
                series.setdefault(f"K={children} batch={batch}", []).append((fds, got[batch][0] * 1000.0 / fds))
    many = [(10, 100)] if quick else [(100, 1000), (1000, 100)]
    for tasks, per in many:
        text, fds = random_plan(target, tasks, per, seed=tasks)
        many_reps = max(1, reps // 2 + 1)
        got = measure_set([("fork", tasks_only_plan(tasks - 1), 253), ("floor", private_tasks_plan(target, tasks, per), 253),
                           (1, text, 1), (253, text, 253), ("direct", text, "direct")], many_reps, tmp)
        add_rows(f"{tasks} tasks x {per} fds, random sharing", text, fds, got)
    fork_ms = {k: statistics.median(v) for k, v in forks.items()}

    def cost_range(i):
        v = sorted(c[i] for c in measured_costs)
        return f"{v[0]:.2f}" if v[0] == v[-1] else f"{v[0]:.2f} to {v[-1]:.2f}"
    inject_reps = 3 if quick else 21
    move = f"fdslot 1\ntask 1\nreg 1 {target} flags=wronly\n  at 1:1\n"
    shared = "fdslot 1\ntask 1\ntask 2\n" + "".join(
        f"reg {i + 1} {target} flags=rdonly\n  at 1:{10 + i}\n  at 2:{10 + i}\n" for i in range(1000))
    injects = [("1 process, 1 fd moved (reptyr-style)", inject_ms(move, 1, inject_reps, tmp)),
               ("2 processes sharing 1000 files", inject_ms(shared, 2, inject_reps, tmp))]
    # fdslot capture and verify of a restored tree (the worst case for grouping: one inode).
    cap_rows = []
    tasks, per = (10, 100) if quick else (10, 1000)
    for name, (text, fds) in [("one inode", random_plan(target, tasks, per, seed=7)),
                              ("1000 files", many_files_plan(tmp, tasks, per, 1000, seed=7))]:
        cap_ms, ver_ms = measure_capture(text, reps, tmp)
        cap_rows.append((f"{tasks} tasks x {per} fds, random sharing, {name}", fds, cap_ms, ver_ms))
    size = os.stat(FDSLOT).st_size
    blob_size = os.stat(BLOB).st_size
    lines = ["# fdslot run --stop: restore time (medians of %d; each row's plan, its floor and its fork+exit floor run in turn)" % reps, "",
             f"fdslot stripped size: {size} bytes; fdslot.blob: {blob_size} bytes", "",
             "| plan | --batch | fds | ms | us/fd | us/fd net | us/received fd | floor ms | vs floor | seed's kernel floor ms | syscalls/fd | peak RSS/task (KiB) | beyond plan (KiB) | vs CRIU 4.2 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ms, fds = r["ms"], r["fds"]
        net = (ms - fork_ms[r["tasks"]]) * 1000.0 / fds
        c = f"{r['calls']:.1f}" if r["calls"] else ""
        sf = f"{r['seed_floor']:.1f}" if r["seed_floor"] else ""
        lines.append(f"| {r['name']} | {r['batch']} | {fds} | {ms:.1f} | {ms * 1000.0 / fds:.2f} | {net:.2f} | "
                     f"{ms * 1000.0 / r['received']:.2f} | {r['floor_ms']:.1f} | {ms / r['floor_ms']:.2f} | {sf} | {c} | "
                     f"{r['rss']} | {r['beyond']} | {r['criu']} |")
    lines += ["", "--batch 253: run's default, with its relays where it chooses them (the many-task rows); "
              "253, --relays 0: the batched form without relays, one batch per (receiver, opener).",
              "us/fd net: (ms - the fork+exit floor of the same tasks) per fd, the part that grows with N.",
              "us/received fd: ms over the fds sent from one task to another (all but the opener's).",
              "beyond plan: a task's resident memory outside the plan's own pages (the plan file's",
              "mapping and the arenas sized from it): the image, the stack, the vdso.",
              "floor: the same tasks and fds, every fd a private open in its own task (nothing sent).",
              "fork+exit floor (the same tasks, no fds; median of every such run): " +
              ", ".join(f"{k} tasks: {v:.1f} ms" for k, v in fork_ms.items()) + ".",
              ("seed's kernel floor: the least time the seed's form (--batch 1) could take, from what its syscalls "
               "cost the kernel here, measured after each set (examples/seed_floor, one thread, no fdslot: per "
               "received fd %s us for the receiver's socket, connect, bind, recvmsg, dup3 and close, %s us for the "
               "opener's sendmsg; %s us per open): no receiver goes faster than its own syscalls, and all tasks' "
               "syscalls share %d cores." % (cost_range(0), cost_range(2), cost_range(1), os.cpu_count() or 1))
              if measured_costs else
              "seed's kernel floor: not measured (build it with cargo build --release --example seed_floor).",
              "syscalls/fd: every syscall of run and its tasks (strace -f -c), over the plan's fds.",
              "CRIU 4.2 times (same machine kind, whole restore): " +
              ", ".join(f"N={n} K={k}: {v:.0f} ms" for (n, k), v in CRIU_MS.items()) + "."]
    lines += ["", "## fdslot capture --tree and fdslot verify of the restored tasks (medians of %d)" % reps, "",
              "| tree | fds | capture ms | verify ms |", "|---|---|---|---|"]
    for name, fds, cap_ms, ver_ms in cap_rows:
        lines.append(f"| {name} | {fds} | {cap_ms:.1f} | {ver_ms:.1f} |")
    lines += ["", f"## fdslot inject (medians of {inject_reps}, whole command: seize, inject, restore, release)", "",
              "| case | ms |", "|---|---|"]
    lines += [f"| {name} | {ms:.2f} |" for name, ms in injects]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(OUT, "results.md"), "w") as f:
        f.write(text)
    svg_plot(series, os.path.join(OUT, "per_fd.svg"))
    print(text)
    print(f"written: {OUT}/results.md, {OUT}/per_fd.svg")


if __name__ == "__main__":
    main()
