//! Example programs for `sbox-events`. Each example's logic is a module here
//! so the test suite runs it; the files next to `Cargo.toml` are thin `main`s.

// Fails the crate's tests when two linked event types share a name.
sbox_events::event_names_test!();

pub mod async_service;
pub mod audit_service;
pub mod flow;
pub mod orchestrator;
pub mod tour;
