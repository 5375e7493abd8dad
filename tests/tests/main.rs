//! The end-to-end tests, one module per concern, all in this one test binary (`--test e2e`).
//!
//! One binary rather than one per file: each test executable links the registry crate with the
//! AWS SDKs, so thirty of them cost thirty links per build for the same code. Cargo ran those
//! binaries one after another, each with its own pool of test threads; here every test shares
//! one pool (`--test-threads`, default one per core) and one process. Each test still starts
//! its own servers ([`wharf_e2e::Wharf`], [`wharf_e2e::cloud`]) on free ports, so nothing but
//! the process is shared: no test sets an environment variable of this process, and the one
//! process-wide install (rustls' crypto provider) is idempotent.
//!
//! A test that was alone in its binary because it loads the machine, or runs `cargo` on the
//! build directory, takes [`heavy`] first, so no two of them overlap (see its invariant).
//!
//! Run one module with a filter on its path: `cargo test -p wharf-e2e --test e2e faults::`, or
//! one test by its full name with `-- --exact faults::NAME`.

mod auth;
mod catalog;
mod catalog_function;
mod catalog_s3;
mod client_credentials;
mod client_realm;
mod cloud_gc;
mod cloud_races;
mod cloud_sha512;
mod cloud_storage;
mod cp_archive_links;
mod device_login;
mod direct_upload;
mod doctor;
mod faults;
mod gc_cli;
mod hostile_clients;
mod immutable_tags;
mod lambda_emulator;
mod large_blob;
mod load;
mod oras;
mod podman;
mod push_paths;
mod restart;
mod sam_iam;
mod sam_template;
mod sha512_push;
mod skopeo;
mod wharf_cp;

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Held by each heavy test for its whole run.
///
/// Invariant: at most one heavy test runs at a time. Heavy tests are the 1 GiB push
/// (`large_blob`), the 64-client load (`load`), the kills and outages of `faults`, and those
/// that run `cargo` on the build directory and start the functions (`catalog_function`,
/// `lambda_emulator`, `push_paths`). Their time limits were set when each ran in a binary of
/// its own, with no other heavy test beside it. A light test may run next to one (as next to
/// its sibling in a binary of two tests before).
static HEAVY: Mutex<()> = Mutex::new(());

/// Waits until no other heavy test runs, and keeps them out until the guard drops. A heavy test
/// that panicked does not block the others (the lock guards no data).
fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(PoisonError::into_inner)
}
