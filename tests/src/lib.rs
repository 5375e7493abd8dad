//! End-to-end tests for Wharf: the real `wharf serve` binary on loopback, driven by the real
//! registry clients (skopeo, podman, oras-py) and by curl for raw protocol checks.
//!
//! Layer rule: nothing here links the registry's code but its test OIDC issuer
//! (`wharf::auth::testing`, the stand-in for GitHub Actions or an IdP). The server is reached
//! only over HTTP, exactly as users reach it, and every image is built by code ([`image`]) into an OCI layout
//! ([`layout`]) in a temp directory. Each test starts its own [`Wharf`], so tests run in
//! parallel and clean up on drop.
//!
//! Run with `cargo build -p wharf-server && cargo test -p wharf-e2e` (the server binary is found
//! at `target/<profile>/wharf`, or at `WHARF_BIN`); the tests are modules of one test binary,
//! `e2e` (`tests/main.rs`), so `cargo test -p wharf-e2e --test e2e faults::` runs one file's.
//! Needs skopeo, podman, curl and python3 with the `oras` package; `tests/device_login.rs` needs
//! Node.js 20.19+ and npm (its OpenID provider is installed with `npm ci` on first use);
//! `tests/large_blob.rs` also needs about 2 GiB of free temp disk.

pub mod authreg;
pub mod browser;
pub mod chromium;
pub mod cloud;
pub mod cmd;
pub mod curl;
pub mod digest;
pub mod doctor;
pub mod emulator;
pub mod image;
pub mod layout;
pub mod login;
pub mod npm;
pub mod oidc_provider;
pub mod oras;
pub mod podman;
pub mod sam;
pub mod server;
pub mod site;
pub mod skopeo;
pub mod verify;

pub use server::Wharf;
