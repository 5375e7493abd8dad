//! `Content-Range` of upload chunks and `Range` of blob reads: what parses is a non-empty range,
//! and a blob range always lies inside the blob.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf::api::blobs::{RangeRequest, parse_range};
use wharf::api::uploads::parse_content_range;

fuzz_target!(|input: (&str, u64)| {
    let (header, size) = input;
    if let Some((start, end)) = parse_content_range(header) {
        assert!(start <= end);
    }
    if let RangeRequest::Part(range) = parse_range(Some(header), size) {
        assert!(range.start <= range.end && range.end < size, "{range:?} of {size}");
    }
});
