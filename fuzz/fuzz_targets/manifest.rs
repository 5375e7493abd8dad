//! The manifest parser: any bytes under any of the Content-Types a client may send either parse
//! into a manifest of a supported media type or are refused with an OCI error; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf::oci::{media, parse_manifest};

const CONTENT_TYPES: [Option<&str>; 5] = [
    None,
    Some(media::OCI_MANIFEST),
    Some(media::OCI_INDEX),
    Some("application/vnd.docker.distribution.manifest.v2+json"),
    Some("application/json; charset=utf-8"),
];

fuzz_target!(|input: &[u8]| {
    let Some((&selector, bytes)) = input.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(selector) % CONTENT_TYPES.len()];
    if let Ok(parsed) = parse_manifest(content_type, bytes) {
        assert!(media::is_manifest(&parsed.media_type));
        // An image always needs its config blob; an index needs no blob, only its children.
        if media::is_index(&parsed.media_type) {
            assert!(parsed.blobs.is_empty());
        } else {
            assert!(!parsed.blobs.is_empty() && parsed.manifests.is_empty());
        }
    }
});
