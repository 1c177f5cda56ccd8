//! Fuzz target: the blob's argument block, checked the way the entry checks it, without the
//! restore itself (which would rebuild this process's fd table). The first 48 bytes fill the
//! numeric fields, the session and the keep list; the rest is the plan.
#![no_main]

use fdslot::blob::{check_args, BlobArgs};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check_one(data);
    // SAFETY: nothing borrowed from the arenas outlives check_one.
    unsafe { fdslot::arena::release_all() };
});

fn u32_at(d: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]])
}

fn check_one(data: &[u8]) {
    if data.len() < 48 {
        return;
    }
    let (head, plan) = data.split_at(48);
    let mut session = [0u8; 32];
    session[..16].copy_from_slice(&head[16..32]);
    // Up to 68 keep fds, from the head and, past it, from the plan bytes themselves.
    let keep: Vec<u32> = head[32..48].chunks(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).cycle().take(head[12] as usize % 69).collect();
    let args = BlobArgs {
        plan: plan.as_ptr(),
        plan_len: plan.len() as u64,
        task: u32_at(head, 0) & 0x1_ffff,
        sync_fd: -1,
        timeout_ms: u32_at(head, 4),
        batch: u32_at(head, 8) & 0x1ff,
        session,
        error: std::ptr::null_mut(),
        error_len: 0,
        keep: if head[13] & 1 == 0 { std::ptr::null() } else { keep.as_ptr() },
        keep_len: keep.len() as u32,
        flags: (head[14] & 7) as u32,
    };
    match check_args(&args, plan) {
        Ok(c) => {
            assert!(c.task < c.plan.tasks.len() && c.plan.tasks[c.task].files == 0);
            assert_eq!(c.plan.tasks[c.task].id as u32, args.task);
            assert!((1..=253).contains(&c.batch));
            assert!(c.timeout_ms >= 1);
            assert!(c.keep.windows(2).all(|w| w[0] < w[1]), "keep sorted and deduplicated");
            assert!(!c.session.is_empty() && c.session.len() <= 32);
        }
        Err(mut line) => {
            let l = line.as_bytes();
            assert!(l.starts_with(b"fdslot: ") && l.iter().all(|&b| (0x20..0x7f).contains(&b)), "{l:?}");
        }
    }
}
