//! Digests: a parsed digest prints back as the input, reparses to itself, and its hex part has
//! exactly its algorithm's length of lowercase hex.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf::oci::Digest;

fuzz_target!(|input: &str| {
    if let Ok(digest) = Digest::parse(input) {
        assert_eq!(digest.to_string(), input);
        assert_eq!(Digest::parse(&digest.to_string()).ok().as_ref(), Some(&digest));
        assert_eq!(digest.hex().len(), digest.algorithm().hex_len());
        assert!(digest.hex().bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    }
});
