//! Client-side pieces shared by the `wharf` and `docker-credential-wharf` binaries: finding the
//! ambient identity, the device-code login, and the small credential store.
//!
//! Nothing long-lived is ever typed, and the store holds only what must outlive a command: the
//! registry's refresh token after `wharf login` or `docker login`, in a 0600 file. Ambient
//! identities (CI, workload tokens) are fetched fresh at every use and never written down.

pub mod client;
