//! The OCI model: digests, the name/reference grammar, media types, manifest parsing and the
//! spec's error codes.
//!
//! Layer rule: this module is pure. It never touches storage, the network or HTTP routing; every
//! type here is built only through a validating constructor, so code that holds one can trust it.

mod digest;
pub mod error;
mod manifest;
pub mod media;
mod name;

pub use digest::{Algorithm, BLOB_ALGORITHMS, Digest, DigestError, DigestStream};
pub use error::{ErrorCode, OciError};
pub use manifest::{MAX_MANIFEST_BYTES, ParsedManifest, Referrer, parse_manifest, too_large};
pub use name::{NameError, Reference, RepoName, Tag};
