//! Plan format 1 -> arrays. One pass over the text fills the arrays and checks each line on its
//! own, in line order; the arena is sized from the number of lines (a bound on every count:
//! pages past what is filled are never touched). Where that much address space is refused, a
//! first pass counts lines by keyword to size it exactly. Rules that span lines are in `check`.

use super::lex::{decoded_len, EncodingError, Lines, Tokens};
use super::*;
use crate::arena::{bytes_for, Arena};
use crate::text::{parse_radix, parse_u64};
use linux_raw_sys::general as g;

/// Status and open-time flag names accepted by `flags=`.
const FLAG_NAMES: &[(&str, u32)] = &[
    ("rdonly", g::O_RDONLY),
    ("wronly", g::O_WRONLY),
    ("rdwr", g::O_RDWR),
    ("append", g::O_APPEND),
    ("nonblock", g::O_NONBLOCK),
    ("creat", g::O_CREAT),
    ("excl", g::O_EXCL),
    ("trunc", g::O_TRUNC),
    ("directory", g::O_DIRECTORY),
    ("path", g::O_PATH),
    ("noatime", g::O_NOATIME),
    ("sync", g::O_SYNC),
    ("dsync", g::O_DSYNC),
    ("nofollow", g::O_NOFOLLOW),
    ("noctty", g::O_NOCTTY),
];

const NONBLOCK: &[(&str, u32)] = &[("nonblock", g::O_NONBLOCK)];
const EVENTFD_FLAGS: &[(&str, u32)] = &[("semaphore", 1), ("nonblock", g::O_NONBLOCK)];
const MEMFD_FLAGS: &[(&str, u32)] = &[("append", g::O_APPEND), ("nonblock", g::O_NONBLOCK)];
const SEAL_NAMES: &[(&str, u32)] = &[("seal", 1), ("shrink", 2), ("grow", 4), ("write", 8), ("future_write", 16)];

struct Counts {
    tasks: usize,
    objects: usize,
    targets: usize,
}

fn err(line: u32, what: &str) -> PlanError {
    PlanError::new(line, what)
}

/// `WHAT 'TOKEN'`, the token cut to 60 bytes. Tokens hold only printable ASCII (`count`
/// refuses any other byte), so the line is safe to print as it is.
fn err_tok(line: u32, what: &str, tok: &[u8]) -> PlanError {
    let mut e = PlanError::new(line, what);
    e.msg.str(" '").push(&tok[..tok.len().min(60)]).str("'");
    e
}


fn err_raw_byte(line: u32, b: u8) -> PlanError {
    let mut e = PlanError::new(line, "byte 0x");
    e.msg.hex(b as u64, 2).str(" is not printable ASCII: write it as %").hex(b as u64, 2);
    e
}

/// Parses and validates a whole plan. The arrays live in one anonymous mapping.
pub fn load(text: &[u8]) -> Result<Plan<'_>, PlanError> {
    if text.len() > MAX_PLAN_BYTES {
        return Err(err(1, "plan is larger than 1 GiB"));
    }
    let lines = count_lines(text);
    let bound = Counts { tasks: lines.min(65535), objects: lines, targets: lines };
    // Read-only once checked, and shared with `run`'s forks.
    let (mut arena, counts) = match Arena::map_for_forks(arena_size(&bound)) {
        Ok(a) => (a, bound),
        Err(_) => {
            let exact = count(text);
            (Arena::map_for_forks(arena_size(&exact)).map_err(|_| err(1, "cannot map memory for the plan"))?, exact)
        }
    };
    let tasks = arena.take::<Task>(counts.tasks);
    let objects = arena.take::<Object>(counts.objects);
    let targets = arena.take::<Target>(counts.targets);
    let task_index = arena.take::<u16>(65536);
    let (nt, no, nx) = fill(text, tasks, objects, targets, task_index)?;
    let (tasks, objects, targets) = (&mut tasks[..nt], &mut objects[..no], &mut targets[..nx]);
    let task_first = arena.take::<u32>(nt + 1);
    let scratch = arena.take::<u64>(no);
    let target_scratch = arena.take::<Target>(nx);
    super::check::check(tasks, objects, targets, task_first, task_index, scratch, target_scratch)?;
    Ok(Plan { text, tasks, objects, targets, task_first, task_index })
}

/// Bytes of arena for plans of up to these counts.
fn arena_size(c: &Counts) -> usize {
    bytes_for::<Task>(c.tasks)
        + bytes_for::<Object>(c.objects)
        + bytes_for::<Target>(c.targets)
        + bytes_for::<u16>(65536)
        + bytes_for::<u32>(c.tasks + 1)
        + bytes_for::<u64>(c.objects)
        + bytes_for::<Target>(c.targets)
}

/// How many lines `text` has (a last line without its newline counts).
fn count_lines(text: &[u8]) -> usize {
    super::lex::count_byte(text, b'\n') + (!text.is_empty() && !text.ends_with(b"\n")) as usize
}

/// How many task, object and target lines there are (when the arena cannot be sized by
/// lines). Nothing is checked here: `fill` checks every line, in line order, as it would have
/// with an arena sized by lines, so both paths report the same first error.
fn count(text: &[u8]) -> Counts {
    let mut c = Counts { tasks: 0, objects: 0, targets: 0 };
    for (_, content, _) in Lines::new(text) {
        match Tokens::new(content).next() {
            Some(b"task") => c.tasks += 1,
            Some(b"reg" | b"pipe" | b"fifo" | b"socketpair" | b"eventfd" | b"memfd" | b"reopen" | b"inherit") => c.objects += 1,
            Some(b"at" | b"r" | b"w" | b"a" | b"b") => c.targets += 1,
            _ => {}
        }
    }
    // `fill` stops at the 65536th task.
    c.tasks = c.tasks.min(65535);
    c
}

/// One `key=value` option, each key at most once per line.
struct Options<'a> {
    seen: u32,
    line: u32,
    _t: core::marker::PhantomData<&'a ()>,
}

impl<'a> Options<'a> {
    fn new(line: u32) -> Self {
        Options { seen: 0, line, _t: core::marker::PhantomData }
    }

    /// Splits `tok` into (key index, value), refusing unknown and repeated keys.
    fn split(&mut self, tok: &'a [u8], keys: &[&str]) -> Result<(usize, &'a [u8]), PlanError> {
        let eq = tok.iter().position(|&b| b == b'=').ok_or_else(|| err_tok(self.line, "expected key=value, got", tok))?;
        let (key, value) = (&tok[..eq], &tok[eq + 1..]);
        let k = keys.iter().position(|k| k.as_bytes() == key).ok_or_else(|| err_tok(self.line, "unknown key", key))?;
        if self.seen & (1 << k) != 0 {
            return Err(err_tok(self.line, "repeated key", key));
        }
        self.seen |= 1 << k;
        Ok((k, value))
    }
}

fn task_id(line: u32, s: &[u8], what: &str) -> Result<u16, PlanError> {
    match parse_radix(s, 10) {
        Some(v) if (1..=65535).contains(&v) => Ok(v as u16),
        _ => Err(err_tok(line, what, s)),
    }
}

/// A well-formed `at TASK:FD [cloexec]` line, as the general path would read it: (task id,
/// fd, cloexec). None for any other line, and for numbers longer than any valid one (5 and 7
/// digits, leading zeros included) or out of range, which the general path then reads or
/// refuses.
fn quick_target(content: &[u8]) -> Option<(u16, u32, u8)> {
    /// Decimal digits at the start of `r`, at least one and at most `max`: (value, rest).
    #[inline(always)]
    fn number(mut r: &[u8], max: usize) -> Option<(u32, &[u8])> {
        let (mut v, mut n) = (0u32, 0usize);
        while let [b, tail @ ..] = r {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            if n == max {
                // Longer than any valid number (and past what a u32 holds): the general path.
                return None;
            }
            v = v * 10 + d as u32;
            n += 1;
            r = tail;
        }
        (n >= 1).then_some((v, r))
    }
    /// `r` past its leading blanks (every byte up to 0x20, once `Lines` refused none).
    #[inline(always)]
    fn blanks(mut r: &[u8]) -> &[u8] {
        while let [b, tail @ ..] = r {
            if *b > b' ' {
                break;
            }
            r = tail;
        }
        r
    }
    let [b'a', b't', b, r @ ..] = blanks(content) else { return None };
    if *b > b' ' {
        return None;
    }
    let (task, r) = number(blanks(r), 5)?;
    let [b':', r @ ..] = r else { return None };
    let (fd, r) = number(r, 7)?;
    let cloexec = match blanks(r) {
        [] => 0,
        [b'c', b'l', b'o', b'e', b'x', b'e', b'c', r @ ..] if blanks(r).is_empty() => 1,
        _ => return None,
    };
    // `at 1:3cloexec` is one word to the general path, a bad fd.
    if r.first().is_some_and(|&b| b > b' ') || !(1..=65535).contains(&task) || fd >= NR_OPEN {
        return None;
    }
    Some((task as u16, fd, cloexec))
}

/// A well-formed `reg ID PATH [flags=...]` line whose path needs no decoding (no `%`), as the
/// general path would read it. None for any other line (other options, escapes, anything the
/// general path would refuse or word differently), which then takes the general path.
fn quick_reg(text: &[u8], line: u32, content: &[u8]) -> Option<Object> {
    /// The next word of `r` (bytes above 0x20) and what follows it.
    #[inline(always)]
    fn word(r: &[u8]) -> (&[u8], &[u8]) {
        let n = r.iter().position(|&b| b <= b' ').unwrap_or(r.len());
        r.split_at(n)
    }
    #[inline(always)]
    fn blanks(r: &[u8]) -> &[u8] {
        let n = r.iter().position(|&b| b > b' ').unwrap_or(r.len());
        &r[n..]
    }
    let [b'r', b'e', b'g', b, r @ ..] = blanks(content) else { return None };
    if *b > b' ' {
        return None;
    }
    let (id, r) = word(blanks(r));
    if id.is_empty() || id.len() > 10 || !id.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let id = id.iter().fold(0u64, |v, &d| v * 10 + (d - b'0') as u64);
    if !(1..=u32::MAX as u64).contains(&id) {
        return None;
    }
    // Raw bytes are printable (`Lines` refused the rest): without `%` the decoded path is the
    // word itself. A `=` is left to the general path's check for options in its place.
    let r = blanks(r);
    let mut n = 0;
    while let Some(&b) = r.get(n) {
        if b <= b' ' {
            break;
        }
        if b == b'%' || b == b'=' {
            return None;
        }
        n += 1;
    }
    let (path, r) = r.split_at(n);
    if path.is_empty() || path.len() > MAX_PATH {
        return None;
    }
    let mut o = Object { id: id as u32, kind: KIND_REG, line, path: span_of(text, path), ..Object::default() };
    let (opt, r) = word(blanks(r));
    if !blanks(r).is_empty() {
        return None;
    }
    if !opt.is_empty() {
        // The access modes alone, the common case, without the general reader's lookups.
        o.flags = match opt.strip_prefix(b"flags=")? {
            b"rdonly" => g::O_RDONLY,
            b"wronly" => g::O_WRONLY,
            b"rdwr" => g::O_RDWR,
            v => parse_flags(line, v, FLAG_NAMES, true).ok()?,
        };
    }
    Some(o)
}

fn encoded(line: u32, s: &[u8], what: &str) -> Result<usize, PlanError> {
    decoded_len(s).map_err(|e| match e {
        EncodingError::Nul => err_tok(line, "%00 (NUL) is not allowed in", s),
        EncodingError::Malformed => {
            let mut e = err_tok(line, "malformed %-escape in", s);
            e.msg.str(" (").str(what).str(")");
            e
        }
    })
}

fn span_of(text: &[u8], s: &[u8]) -> Span {
    Span { off: (s.as_ptr() as usize - text.as_ptr() as usize) as u32, len: s.len() as u32 }
}

/// Parses `flags=`: names from `names`, or (where `numeric`) one number.
fn parse_flags(line: u32, v: &[u8], names: &[(&str, u32)], numeric: bool) -> Result<u32, PlanError> {
    if numeric && v.first().is_some_and(|b| b.is_ascii_digit()) {
        let n = parse_u64(v).filter(|&n| n <= u32::MAX as u64).ok_or_else(|| err_tok(line, "bad flags number", v))?;
        return Ok(n as u32);
    }
    let (mut flags, mut access) = (0u32, None);
    for name in v.split(|&b| b == b',') {
        let &(_, bit) = names.iter().find(|(n, _)| n.as_bytes() == name).ok_or_else(|| err_tok(line, "unknown or unsupported flag", name))?;
        if matches!(name, b"rdonly" | b"wronly" | b"rdwr") {
            if access.is_some_and(|a| a != bit) {
                return Err(err(line, "conflicting access modes in flags="));
            }
            access = Some(bit);
        }
        flags |= bit;
    }
    Ok(flags)
}

/// Every line into its array, checked on its own: only printable ASCII, the header first, known
/// keywords, ids unique, targets after an object of their kind. The arrays are long enough
/// for every line. Returns how many tasks, objects and targets were filled.
fn fill(
    text: &[u8],
    tasks: &mut [Task],
    objects: &mut [Object],
    targets: &mut [Target],
    task_index: &mut [u16],
) -> Result<(usize, usize, usize), PlanError> {
    let (mut nt, mut no, mut nx) = (0usize, 0usize, 0usize);
    let (mut header, mut header_line, mut last_line) = (false, 1, 1);
    for (line, content, refused) in Lines::new(text) {
        last_line = line;
        // Only printable ASCII and the blanks between words stand raw. Anything else (a NUL,
        // which the kernel would take for the end of a path; control bytes; UTF-8) must be
        // percent-encoded, so that every path means what it says and every error line prints
        // safely.
        if let Some(b) = refused {
            return Err(err_raw_byte(line, b));
        }
        // Nearly every line of a large plan is `at TASK:FD`: read in one pass when it is well
        // formed and its object takes `at`. Any other line, well formed or not, takes the
        // general path below, which also words every error.
        if let (true, Some(o)) = (header, no.checked_sub(1).map(|i| &objects[i])) {
            if o.kind != KIND_PIPE && o.kind != KIND_SOCKETPAIR {
                if let Some((task, fd, cloexec)) = quick_target(content) {
                    targets[nx] = Target { fd, object: (no - 1) as u32, task, end: 0, cloexec, line };
                    nx += 1;
                    continue;
                }
            }
        }
        // Most object lines of a large plan are `reg ID PATH [flags=...]`: in one pass too.
        if header {
            if let Some(o) = quick_reg(text, line, content) {
                objects[no] = o;
                no += 1;
                continue;
            }
        }
        let mut toks = Tokens::new(content);
        let Some(kw) = toks.next() else { continue };
        if !header {
            check_header(line, kw, &mut toks)?;
            header = true;
            header_line = line;
            continue;
        }
        match kw {
            b"task" => {
                if nt == 65535 {
                    return Err(err(line, "more than 65535 tasks"));
                }
                let id = task_id(line, toks.next().ok_or_else(|| err(line, "task needs an id"))?, "bad task id (1..=65535)")?;
                if task_index[id as usize] != 0 {
                    let mut e = err(line, "task ");
                    e.msg.num(id as u64).str(" declared twice (first at line ").num(tasks[task_index[id as usize] as usize - 1].line as u64).str(")");
                    return Err(e);
                }
                let mut t = Task { id, line, ..Task::default() };
                let mut opts = Options::new(line);
                for tok in toks {
                    match opts.split(tok, &["parent", "exec", "files", "nofile"])? {
                        (0, v) => {
                            let p = task_id(line, v, "bad parent id")?;
                            if p == id {
                                return Err(err(line, "a task cannot be its own parent"));
                            }
                            t.parent = task_index[p as usize];
                            if t.parent == 0 {
                                let mut e = err(line, "parent ");
                                e.msg.num(p as u64).str(" must be declared before task ").num(id as u64);
                                return Err(e);
                            }
                        }
                        (2, v) => {
                            let p = task_id(line, v, "bad files= task id")?;
                            if p == id {
                                return Err(err(line, "a task cannot share its own table (files=)"));
                            }
                            t.files = task_index[p as usize];
                            if t.files == 0 {
                                let mut e = err(line, "files=");
                                e.msg.num(p as u64).str(": task ").num(p as u64).str(" must be declared before task ").num(id as u64);
                                return Err(e);
                            }
                        }
                        (3, v) => {
                            t.nofile = parse_radix(v, 10).filter(|&n| (1..=NR_OPEN as u64).contains(&n)).ok_or_else(|| err_tok(line, "bad nofile (1..=1048576)", v))? as u32;
                        }
                        (_, v) => {
                            let (mut args, mut bytes) = (0usize, 0usize);
                            for a in v.split(|&b| b == b',') {
                                bytes += encoded(line, a, "exec")? + 1;
                                args += 1;
                            }
                            if v.is_empty() || v.starts_with(b",") {
                                return Err(err(line, "exec= needs a program path first"));
                            }
                            if args > MAX_ARGS || bytes > MAX_ARG_BYTES {
                                return Err(err(line, "exec= has more than 4096 arguments or 128 KiB"));
                            }
                            t.exec = span_of(text, v);
                        }
                    }
                }
                tasks[nt] = t;
                nt += 1;
                task_index[id as usize] = nt as u16;
            }
            b"reg" | b"pipe" | b"fifo" | b"socketpair" | b"eventfd" | b"memfd" | b"reopen" | b"inherit" => {
                objects[no] = parse_object(text, line, kw, &mut toks)?;
                no += 1;
            }
            b"fdslot" => return Err(err(line, "'fdslot' header repeated")),
            b"at" | b"r" | b"w" | b"a" | b"b" => {
                let Some(o) = no.checked_sub(1).map(|i| &objects[i]) else {
                    return Err(err(line, "target line before any object"));
                };
                let end = match (kw, o.kind) {
                    (b"r", KIND_PIPE) | (b"a", KIND_SOCKETPAIR) => 0,
                    (b"w", KIND_PIPE) | (b"b", KIND_SOCKETPAIR) => 1,
                    (_, KIND_PIPE) => return Err(err_tok(line, "a pipe's targets are 'r' or 'w', not", kw)),
                    (_, KIND_SOCKETPAIR) => return Err(err_tok(line, "a socketpair's targets are 'a' or 'b', not", kw)),
                    (b"at", _) => 0,
                    _ => {
                        let mut e = err_tok(line, "targets of this kind are 'at', not", kw);
                        e.msg.str(" (").str(kind_name(o.kind)).str(")");
                        return Err(e);
                    }
                };
                let spec = toks.next().ok_or_else(|| err(line, "target needs TASK:FD"))?;
                let colon = spec.iter().position(|&b| b == b':').ok_or_else(|| err_tok(line, "target must be TASK:FD, got", spec))?;
                let task = task_id(line, &spec[..colon], "bad task id in target")?;
                let fd = match parse_radix(&spec[colon + 1..], 10) {
                    Some(v) if v < NR_OPEN as u64 => v as u32,
                    Some(_) => return Err(err_tok(line, "fd is not below nr_open (1048576):", &spec[colon + 1..])),
                    None => return Err(err_tok(line, "bad fd in target", spec)),
                };
                let mut cloexec = 0;
                for tok in toks {
                    if tok == b"cloexec" && cloexec == 0 {
                        cloexec = 1;
                    } else {
                        return Err(err_tok(line, "unexpected word in target line", tok));
                    }
                }
                targets[nx] = Target { fd, object: (no - 1) as u32, task, end, cloexec, line };
                nx += 1;
            }
            _ => return Err(err_tok(line, "unknown keyword", kw)),
        }
    }
    if !header {
        return Err(err(1, "empty plan: the first line must be 'fdslot 1'"));
    }
    if nt == 0 {
        let mut e = err(header_line, "the plan declares no task (it ends at line ");
        e.msg.num(last_line as u64).str(")");
        return Err(e);
    }
    Ok((nt, no, nx))
}

/// The first line with a word: exactly `fdslot 1`.
fn check_header(line: u32, kw: &[u8], toks: &mut Tokens<'_>) -> Result<(), PlanError> {
    if kw != b"fdslot" {
        return Err(err(line, "the first line must be 'fdslot 1'"));
    }
    match (toks.next(), toks.next()) {
        (Some(b"1"), None) => Ok(()),
        (Some(v), None) => Err(err_tok(line, "unsupported plan format version", v)),
        _ => Err(err(line, "the first line must be 'fdslot 1'")),
    }
}

fn object_id(line: u32, tok: Option<&[u8]>) -> Result<u32, PlanError> {
    let tok = tok.ok_or_else(|| err(line, "object needs an id"))?;
    match parse_radix(tok, 10) {
        Some(v) if (1..=u32::MAX as u64).contains(&v) => Ok(v as u32),
        _ => Err(err_tok(line, "bad object id (1..=4294967295)", tok)),
    }
}

/// A path-like word (a path, a memfd name): encoded right, and not an option by mistake.
fn path_word(text: &[u8], line: u32, tok: Option<&[u8]>, what: &str, max: usize) -> Result<Span, PlanError> {
    let p = tok.ok_or_else(|| {
        let mut e = err(line, "missing ");
        e.msg.str(what);
        e
    })?;
    if p.contains(&b'=') && !p.starts_with(b"/") && !p.starts_with(b".") {
        let mut e = err_tok(line, "expected a", p);
        e.msg.str(" before the options: ").str(what);
        return Err(e);
    }
    if encoded(line, p, what)? > max {
        let mut e = err(line, what);
        e.msg.str(" is longer than ").num(max as u64).str(" bytes");
        return Err(e);
    }
    Ok(span_of(text, p))
}

fn number(line: u32, v: &[u8], what: &str, max: u64) -> Result<u64, PlanError> {
    parse_u64(v).filter(|&n| n <= max).ok_or_else(|| err_tok(line, what, v))
}

/// One object line: `KIND ID [positional words] [key=value...]`.
fn parse_object<'a>(text: &'a [u8], line: u32, kw: &[u8], toks: &mut Tokens<'a>) -> Result<Object, PlanError> {
    let kind = match kw {
        b"reg" => KIND_REG,
        b"pipe" => KIND_PIPE,
        b"fifo" => KIND_FIFO,
        b"socketpair" => KIND_SOCKETPAIR,
        b"eventfd" => KIND_EVENTFD,
        b"memfd" => KIND_MEMFD,
        b"reopen" => KIND_REOPEN,
        _ => KIND_INHERIT,
    };
    let id = object_id(line, toks.next())?;
    let mut o = Object { id, kind, line, ..Object::default() };
    // Positional words, then the keys each kind takes.
    let keys: &[&str] = match kind {
        KIND_REG => {
            o.path = path_word(text, line, toks.next(), "path", MAX_PATH)?;
            &["opener", "flags", "mode", "pos"]
        }
        KIND_FIFO => {
            o.path = path_word(text, line, toks.next(), "path", MAX_PATH)?;
            &["opener", "flags"]
        }
        KIND_PIPE => &["opener", "data", "size"],
        KIND_SOCKETPAIR => {
            o.extra = match toks.next() {
                Some(b"stream") => linux_raw_sys::net::SOCK_STREAM,
                Some(b"dgram") => linux_raw_sys::net::SOCK_DGRAM,
                Some(b"seqpacket") => linux_raw_sys::net::SOCK_SEQPACKET,
                Some(t) => return Err(err_tok(line, "socketpair type must be stream, dgram or seqpacket, not", t)),
                None => return Err(err(line, "socketpair needs a type: stream, dgram or seqpacket")),
            };
            &["opener", "flags"]
        }
        KIND_EVENTFD => &["opener", "flags", "count"],
        KIND_MEMFD => {
            o.path = path_word(text, line, toks.next(), "memfd name", MAX_MEMFD_NAME)?;
            &["opener", "flags", "size", "data", "seals", "pos"]
        }
        KIND_REOPEN => {
            o.value = object_id(line, toks.next())? as u64;
            o.extra = match toks.next() {
                Some(b"r") => 0,
                Some(b"w") => 1,
                Some(t) => return Err(err_tok(line, "reopen names a pipe end, r or w, not", t)),
                None => return Err(err(line, "reopen needs PIPE and an end, r or w")),
            };
            &["flags"]
        }
        _ => {
            let t = toks.next().ok_or_else(|| err(line, "inherit needs the FD it is found at"))?;
            o.value = parse_radix(t, 10).filter(|&f| f < NR_OPEN as u64).ok_or_else(|| err_tok(line, "bad inherit fd", t))?;
            &["opener"]
        }
    };
    let mut opts = Options::new(line);
    for tok in toks {
        let (k, v) = opts.split(tok, keys)?;
        match keys[k] {
            "opener" => {
                o.opener = task_id(line, v, "bad opener task id")?;
                o.explicit_opener = 1;
            }
            "flags" => {
                o.flags = match kind {
                    KIND_REG | KIND_FIFO => parse_flags(line, v, FLAG_NAMES, true)?,
                    KIND_EVENTFD => parse_flags(line, v, EVENTFD_FLAGS, false)?,
                    KIND_MEMFD => parse_flags(line, v, MEMFD_FLAGS, false)?,
                    _ => parse_flags(line, v, NONBLOCK, false)?,
                }
            }
            "mode" => {
                let v = v.strip_prefix(b"0o").unwrap_or(v);
                o.mode = parse_radix(v, 8).filter(|&m| m <= 0o7777).ok_or_else(|| err_tok(line, "bad mode (octal, at most 7777)", v))? as u32;
            }
            "pos" => o.pos = number(line, v, "bad pos", i64::MAX as u64)?,
            "size" => {
                o.size = number(line, v, "bad size", i64::MAX as u64)?;
                o.has_size = 1;
            }
            "count" => o.value = number(line, v, "bad count (at most 2^64-2)", u64::MAX - 1)?,
            "data" => o.data = path_word(text, line, Some(v), "data path", MAX_PATH)?,
            _ => o.extra = parse_flags(line, v, SEAL_NAMES, false)?,
        }
    }
    Ok(o)
}


#[cfg(test)]
mod tests {
    use super::*;

    /// The fallback's counts are exactly what `fill` stores, comments, blanks and the header
    /// aside, so an arena sized by them is never too small.
    #[test]
    fn fallback_counts_match_the_plan() {
        let text = b"# made by hand\nfdslot 1\ntask 1\ntask 2 parent=1\n\nreg 1 /x flags=rdonly # one\n  at 1:3\n\tat 2:4 cloexec\npipe 2\n  r 1:5\n  w 2:6\n# at 1:7\n";
        let Ok(plan) = load(text) else { panic!("the plan is valid") };
        let c = count(text);
        assert_eq!((c.tasks, c.objects, c.targets), (plan.tasks.len(), plan.objects.len(), plan.targets.len()));
        assert_eq!((c.tasks, c.objects, c.targets), (2, 2, 4));
    }

    /// The one-pass reading of `reg ID PATH [flags=...]` stores what the general path stores,
    /// and leaves every other line (and every error) to it.
    #[test]
    fn quick_regs_read_as_the_general_path() {
        let quick: &[&[u8]] = &[
            b"reg 1 /x",
            b"reg 2 /x flags=rdonly",
            b"reg 3 /x flags=rdwr",
            b"reg 4 /x flags=wronly",
            b"  reg\t4294967295 /a/b/c.log\t flags=wronly,append ",
            b"reg 0007 ./rel flags=2",
        ];
        let general: &[&[u8]] = &[
            b"reg 0 /x", b"reg 4294967296 /x", b"reg 00000000001 /x", b"reg +1 /x", b"reg 1", b"reg", b"reg1 /x",
            b"regx 1 /x", b"reg 1 /x%20y", b"reg 1 flags=rdonly", b"reg 1 /x mode=644", b"reg 1 /x pos=3",
            b"reg 1 /x opener=1", b"reg 1 /x flags=rdonly pos=3", b"reg 1 /x flags=bogus", b"reg 1 /x flags=rdonly,wronly",
            b"reg 1 /x extra", b"reg 1 /x flags=", b"fifo 1 /x", b"at 1:3", b"reg 9 /x=y flags=rdonly", b"reg 9 a=b",
        ];
        for &line in quick.iter().chain(general) {
            let text = line;
            let mut toks = Tokens::new(line);
            let kw = toks.next().unwrap_or(b"");
            let want = if kw == b"reg" { parse_object(text, 7, kw, &mut toks).ok() } else { None };
            let got = quick_reg(text, 7, line);
            let shown = String::from_utf8_lossy(line);
            match (got, want) {
                (Some(g), Some(w)) => assert_eq!(
                    (g.id, g.kind, g.flags, g.mode, g.pos, g.path, g.line, g.explicit_opener),
                    (w.id, w.kind, w.flags, w.mode, w.pos, w.path, w.line, w.explicit_opener),
                    "{shown}"
                ),
                (None, _) => assert!(!quick.contains(&line), "{shown} should go the quick way"),
                (Some(_), None) => panic!("{shown}: the quick way took what the general path refuses"),
            }
        }
        for &line in general {
            assert!(quick_reg(line, 7, line).is_none(), "{}", String::from_utf8_lossy(line));
        }
        // Whole plans: an id declared twice is still found, on its line.
        let Err(e) = load(b"fdslot 1\ntask 1\nreg 1 /x\n  at 1:3\nreg 1 /y\n  at 1:4\n") else { panic!("a repeated id is refused") };
        assert_eq!(e.line, 5, "{}", String::from_utf8_lossy(e.msg.peek()));
    }

    /// The one-pass reading of `at TASK:FD` takes exactly the lines it can read as the general
    /// path would, and stores what the general path stores.
    #[test]
    fn quick_targets_read_as_the_general_path() {
        for (line, want) in [
            (&b"  at 1:3"[..], Some((1, 3, 0))),
            (b"at 65535:1048575", Some((65535, 1048575, 0))),
            (b"\tat\t2:0 \tcloexec\t ", Some((2, 0, 1))),
            (b"at 00001:0000007", Some((1, 7, 0))),
        ] {
            assert_eq!(quick_target(line), want, "{}", String::from_utf8_lossy(line));
        }
        for line in [
            &b"at 0:3"[..], b"at 65536:3", b"at 1:1048576", b"at 000001:3", b"at 1:00000003", b"at 1:3 cloexec cloexec",
            b"at 1:3 x", b"at 1:3cloexec", b"at 1:3 cloexecx", b"at1:3", b"att 1:3", b"r 1:3", b"at 1:", b"at :3",
            b"at 1:3:4", b"at 1 :3", b"at 1: 3", b"at", b"", b"at 1:-3", b"at +1:3",
            // Digits past what a u32 holds (found by cargo fuzz: an overflow, in builds that
            // check for it).
            b"at 65535:10465537150", b"at 99999999999999999999:1",
        ] {
            assert_eq!(quick_target(line), None, "{}", String::from_utf8_lossy(line));
        }
        // The same targets, spelled so that the first plan's go the quick way and the
        // second's (leading zeros past the longest valid numbers) the general one.
        let quick = b"fdslot 1\ntask 1\ntask 2 parent=1\nreg 1 /x\n  at 1:3\n\tat 2:4 cloexec\nreg 2 /y\nat 2:1048575\n";
        let general = b"fdslot 1\ntask 1\ntask 2 parent=1\nreg 1 /x\n  at 000001:3\n\tat 2:00000004 cloexec\nreg 2 /y\nat 000002:1048575\n";
        let (Ok(a), Ok(b)) = (load(quick), load(general)) else { panic!("both plans are valid") };
        assert_eq!(a.targets.len(), 3);
        for (x, y) in a.targets.iter().zip(b.targets.iter()) {
            assert_eq!((x.fd, x.object, x.task, x.end, x.cloexec, x.line), (y.fd, y.object, y.task, y.end, y.cloexec, y.line));
        }
        // A pipe takes r and w only, so `at` under it keeps the general path and its error.
        let Err(e) = load(b"fdslot 1\ntask 1\npipe 1\n  at 1:3\n") else { panic!("at under a pipe is refused") };
        assert_eq!(e.line, 4);
    }
}
