//! Content digests (`algorithm:encoded`), as the OCI image spec defines them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use sha2::digest::common::hazmat::SerializableState;

/// A digest algorithm Wharf can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, the spec's default and the only algorithm blob uploads are kept in.
    Sha256,
    /// SHA-512, accepted for manifests and references.
    Sha512,
}

impl Algorithm {
    /// The algorithm identifier as it appears before the colon.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the lowercase hex encoding of a digest of this algorithm.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    /// Hashes `bytes` with this algorithm.
    pub fn digest(self, bytes: &[u8]) -> Digest {
        let hex = match self {
            Algorithm::Sha256 => hex::encode(sha2::Sha256::digest(bytes)),
            Algorithm::Sha512 => hex::encode(sha2::Sha512::digest(bytes)),
        };
        Digest {
            algorithm: self,
            hex,
        }
    }
}

/// Why a string is not a digest Wharf accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// No `algorithm:` prefix.
    #[error("digest has no algorithm prefix")]
    MissingAlgorithm,
    /// An algorithm other than sha256 or sha512.
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// The encoded part is not lowercase hex of the algorithm's length.
    #[error("digest encoding must be {0} lowercase hex characters")]
    BadEncoding(usize),
}

/// A validated content digest such as `sha256:e3b0…`. Its only constructors check the algorithm
/// and the exact lowercase-hex encoding, so a `Digest` is always safe to use in a key or a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// Parses and validates a digest string.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let (alg, hex) = s.split_once(':').ok_or(DigestError::MissingAlgorithm)?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => return Err(DigestError::UnsupportedAlgorithm(other.to_owned())),
        };
        let ok = hex.len() == algorithm.hex_len()
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ok {
            return Err(DigestError::BadEncoding(algorithm.hex_len()));
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_owned(),
        })
    }

    /// The digest's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex encoding (the part after the colon).
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// True when `bytes` hash to this digest.
    pub fn verifies(&self, bytes: &[u8]) -> bool {
        self.algorithm.digest(bytes) == *self
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl TryFrom<String> for Digest {
    type Error = DigestError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Digest::parse(&s)
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.to_string()
    }
}

/// A SHA-256 computation over a byte stream that can be paused, serialized into an upload
/// session and resumed by another process, so finishing an upload never re-reads its bytes.
#[derive(Clone, Default)]
pub struct Sha256Stream {
    hasher: sha2::Sha256,
    len: u64,
}

impl fmt::Debug for Sha256Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sha256Stream")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Sha256Stream {
    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// Number of bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True before any byte was fed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of everything fed so far (the stream itself stays resumable).
    pub fn digest(&self) -> Digest {
        Digest {
            algorithm: Algorithm::Sha256,
            hex: hex::encode(self.hasher.clone().finalize()),
        }
    }

    /// The midstate as hex: the hash state, the buffered partial block and the length.
    pub fn save(&self) -> String {
        let state = self.hasher.serialize();
        format!("{}:{}", self.len, hex::encode(state.as_slice()))
    }

    /// Restores a midstate written by [`Sha256Stream::save`]. Only Wharf writes this value (it
    /// lives in the server-side upload session), but it is still checked.
    pub fn restore(saved: &str) -> Option<Self> {
        let (len, state) = saved.split_once(':')?;
        let len = len.parse().ok()?;
        let bytes = hex::decode(state).ok()?;
        let array = bytes.as_slice().try_into().ok()?;
        let hasher = sha2::Sha256::deserialize(array).ok()?;
        Some(Sha256Stream { hasher, len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_sha256_and_sha512() {
        assert_eq!(
            Digest::parse(EMPTY).map(|d| d.to_string()).as_deref(),
            Ok(EMPTY)
        );
        let d512 = Algorithm::Sha512.digest(b"");
        assert_eq!(Digest::parse(&d512.to_string()), Ok(d512));
    }

    #[test]
    fn rejects_malformed_digests() {
        for bad in [
            "",
            "sha256",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",
            "sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha256:../../../../etc/passwd",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn serde_validates() {
        let ok: Result<Digest, _> = serde_json::from_str(&format!("\"{EMPTY}\""));
        assert!(ok.is_ok());
        let bad: Result<Digest, _> = serde_json::from_str("\"sha256:abc\"");
        assert!(bad.is_err());
    }

    #[test]
    fn resumed_hash_equals_one_shot_hash() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for split in [0, 1, 63, 64, 65, 4097, 9999, 10_000] {
            let mut a = Sha256Stream::default();
            a.update(&data[..split]);
            let saved = a.save();
            let mut b = Sha256Stream::restore(&saved).expect("restores");
            assert_eq!(b.len(), split as u64);
            b.update(&data[split..]);
            assert_eq!(
                b.digest(),
                Algorithm::Sha256.digest(&data),
                "split at {split}"
            );
        }
    }

    #[test]
    fn corrupt_midstate_is_refused() {
        assert!(Sha256Stream::restore("x").is_none());
        assert!(Sha256Stream::restore("3:zz").is_none());
        assert!(Sha256Stream::restore("3:00").is_none());
    }
}
