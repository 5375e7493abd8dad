//! Re-cutting an upload's bytes into multipart parts of one fixed size.
//!
//! Cloudflare R2 requires every part of a multipart upload except the last to have the same
//! size (and S3 at least 5 MiB), whatever chunk sizes clients send. The [`PartCutter`] takes
//! the bytes left over from earlier requests (the tail) and then any sequence of chunks, and
//! hands out parts of exactly the part size; what remains is the next tail. No test server
//! enforces R2's rule, so the cutter and [`check_part_sizes`] enforce it here.

use bytes::{Bytes, BytesMut};

/// Smallest part size S3 accepts for every part but the last.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// Default part size: above the minimum so that the 10,000-part limit of S3 allows blobs up to
/// 80 GiB, small enough that a part buffered in memory stays cheap in a 128 MB function.
pub const DEFAULT_PART_SIZE: u64 = 8 * 1024 * 1024;

/// Most parts one multipart upload may have (S3 and R2).
pub const MAX_PARTS: usize = 10_000;

/// Cuts a byte sequence into parts of exactly `part_size` bytes.
#[derive(Debug)]
pub struct PartCutter {
    part_size: usize,
    buf: BytesMut,
}

impl PartCutter {
    /// A cutter continuing after `tail`, the bytes an earlier request left uncut.
    ///
    /// # Panics
    /// If `tail` is not shorter than a part: it would have been cut already.
    pub fn new(part_size: usize, tail: &[u8]) -> Self {
        assert!(part_size > 0, "part size must be positive");
        assert!(tail.len() < part_size, "a tail is shorter than a part");
        let mut buf = BytesMut::with_capacity(part_size);
        buf.extend_from_slice(tail);
        PartCutter { part_size, buf }
    }

    /// Feeds a chunk; returns the parts it completed, each exactly the part size.
    pub fn push(&mut self, mut chunk: &[u8]) -> Vec<Bytes> {
        let mut parts = Vec::new();
        while !chunk.is_empty() {
            let room = self.part_size - self.buf.len();
            let take = room.min(chunk.len());
            self.buf.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if self.buf.len() == self.part_size {
                let part =
                    std::mem::replace(&mut self.buf, BytesMut::with_capacity(self.part_size));
                parts.push(part.freeze());
            }
        }
        debug_assert!(parts.iter().all(|p| p.len() == self.part_size));
        parts
    }

    /// Bytes waiting for a full part.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The uncut remainder, always shorter than a part.
    pub fn into_tail(self) -> Bytes {
        self.buf.freeze()
    }
}

/// Why a list of part sizes breaks the multipart rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartSizeError {
    /// A part other than the last differs from the part size.
    #[error("part {number} has {size} bytes; every part but the last must have {part_size}")]
    Unequal {
        /// 1-based part number.
        number: usize,
        /// Its size.
        size: u64,
        /// The upload's part size.
        part_size: u64,
    },
    /// The last part is empty or larger than a part.
    #[error("the last part has {size} bytes; it must have 1 to {part_size}")]
    BadLast {
        /// Its size.
        size: u64,
        /// The upload's part size.
        part_size: u64,
    },
    /// More parts than the service allows.
    #[error("{0} parts exceed the limit of {MAX_PARTS}")]
    TooMany(usize),
}

/// Checks R2's rule on a complete upload's part sizes before it is completed.
pub fn check_part_sizes(sizes: &[u64], part_size: u64) -> Result<(), PartSizeError> {
    if sizes.len() > MAX_PARTS {
        return Err(PartSizeError::TooMany(sizes.len()));
    }
    let Some((last, full)) = sizes.split_last() else {
        return Ok(());
    };
    if let Some((i, &size)) = full.iter().enumerate().find(|(_, s)| **s != part_size) {
        return Err(PartSizeError::Unequal {
            number: i + 1,
            size,
            part_size,
        });
    }
    if *last == 0 || *last > part_size {
        return Err(PartSizeError::BadLast {
            size: *last,
            part_size,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` after `tail` and checks: every part has the part size, and parts plus the
    /// final tail are exactly the input bytes, in order.
    fn cut(part_size: usize, tail: &[u8], chunks: &[Vec<u8>]) -> (Vec<Bytes>, Bytes) {
        let mut cutter = PartCutter::new(part_size, tail);
        let mut parts = Vec::new();
        for c in chunks {
            parts.extend(cutter.push(c));
        }
        let rest = cutter.into_tail();
        assert!(rest.len() < part_size);
        for p in &parts {
            assert_eq!(p.len(), part_size, "every cut part has the part size");
        }
        let mut joined: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        joined.extend_from_slice(&rest);
        let mut input = tail.to_vec();
        chunks.iter().for_each(|c| input.extend_from_slice(c));
        assert_eq!(joined, input, "no byte lost, duplicated or reordered");
        (parts, rest)
    }

    fn chunk(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn parts_have_equal_size_for_any_chunk_sequence() {
        // A small deterministic generator: the sequences cover chunks smaller than, equal to
        // and many times larger than a part, and empty chunks.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for round in 0..500u32 {
            let part_size = 1 + (round as usize % 17);
            let tail_len = round as usize % part_size;
            let tail = chunk(tail_len, 7);
            let mut chunks = Vec::new();
            for _ in 0..(round % 9) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunks.push(chunk(
                    (x % (4 * part_size as u64 + 2)) as usize,
                    round as u8,
                ));
            }
            let (parts, rest) = cut(part_size, &tail, &chunks);
            let total = tail_len + chunks.iter().map(Vec::len).sum::<usize>();
            assert_eq!(parts.len(), total / part_size);
            assert_eq!(rest.len(), total % part_size);
            let mut sizes: Vec<u64> = parts.iter().map(|p| p.len() as u64).collect();
            if !rest.is_empty() {
                sizes.push(rest.len() as u64);
            }
            assert_eq!(check_part_sizes(&sizes, part_size as u64), Ok(()));
        }
    }

    #[test]
    fn a_chunk_of_exactly_one_part_leaves_no_tail() {
        let (parts, rest) = cut(4, &[], &[chunk(4, 1)]);
        assert_eq!(parts.len(), 1);
        assert!(rest.is_empty());
    }

    #[test]
    fn the_tail_is_completed_first() {
        let (parts, rest) = cut(4, b"abc", &[b"d".to_vec(), b"efghij".to_vec()]);
        assert_eq!(
            parts,
            vec![Bytes::from_static(b"abcd"), Bytes::from_static(b"efgh")]
        );
        assert_eq!(rest, Bytes::from_static(b"ij"));
    }

    #[test]
    #[should_panic(expected = "a tail is shorter than a part")]
    fn a_tail_of_a_whole_part_is_refused() {
        let _ = PartCutter::new(4, b"abcd");
    }

    #[test]
    fn unequal_or_oversized_parts_are_caught() {
        assert_eq!(check_part_sizes(&[], 5), Ok(()));
        assert_eq!(check_part_sizes(&[5, 5, 1], 5), Ok(()));
        assert_eq!(check_part_sizes(&[3], 5), Ok(()));
        assert_eq!(
            check_part_sizes(&[5, 4, 1], 5),
            Err(PartSizeError::Unequal {
                number: 2,
                size: 4,
                part_size: 5
            })
        );
        assert!(matches!(
            check_part_sizes(&[5, 6], 5),
            Err(PartSizeError::BadLast { .. })
        ));
        assert!(matches!(
            check_part_sizes(&[5, 0], 5),
            Err(PartSizeError::BadLast { .. })
        ));
    }
}
