//! fdslot: rebuilds the fd tables of a group of tasks from a plan, by socket-in-slot passing.
//!
//! The core is `no_std` and allocation-free: memory that grows with a plan is the plan's own
//! mapping or one anonymous mapping sized from the validated plan. Data flows one way:
//! plan text -> [`plan`] (parse, validate) -> [`restore`] (roles, slots, transport, barrier) ->
//! [`report`] (one error line). Front ends (`src/bin/fdslot.rs`) stay thin.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
// Errors carry their message in a fixed buffer: there is no allocator to box them into.
#![allow(clippy::result_large_err)]

pub mod arena;
pub mod capture;
pub mod blob;
pub mod front;
pub mod hash;
pub mod inspect;
pub mod plan;
pub mod report;
pub mod restore;
pub mod sort;
pub mod sys;
pub mod text;
pub mod verify;

#[cfg(not(any(test, feature = "std")))]
pub mod rt;
