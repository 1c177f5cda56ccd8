//! The syscall layer: typed wrappers over raw syscalls, each returning `Result<_, Errno>`.
//!
//! Numbers, constants and structs come from `linux-raw-sys`; the only asm is in `arch`.
//! Nothing here allocates, keeps state, or retries: callers decide what EINTR means.

pub mod arch;
pub mod diag;
pub mod errno;
pub mod fd;
pub mod mem;
pub mod proc;
pub mod procfs;
pub mod socket;

pub use errno::Errno;

/// A raw file descriptor number.
pub type Fd = i32;

/// Shorthand for the result of a syscall wrapper.
pub type SysResult<T> = Result<T, Errno>;
