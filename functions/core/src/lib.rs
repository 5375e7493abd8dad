//! Wharf: an OCI Distribution v1.1 registry as a library.
//!
//! Layers, from the bottom: [`oci`] (pure model and grammar), [`storage`] (the `BlobStore` and
//! `MetaStore` traits and their backends), [`api`] (axum routers, one per endpoint group). The
//! API never knows which backend or runtime it runs on; storage never sees HTTP.

#![warn(missing_docs)]

pub mod api;
pub mod auth;
pub mod config;
pub mod gc;
pub mod oci;
pub mod runtime;
pub mod storage;
pub mod time;
