//! Content digests (`algorithm:encoded`), as the OCI image spec defines them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use sha2::digest::common::hazmat::SerializableState;

/// A digest algorithm Wharf can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, the spec's default.
    Sha256,
    /// SHA-512, accepted for blobs, manifests and references alike.
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

    /// The algorithm an identifier names (`sha256`, `sha512`), as in a digest or the
    /// `digest-algorithm` parameter of an upload.
    pub fn from_name(name: &str) -> Result<Self, DigestError> {
        match name {
            "sha256" => Ok(Algorithm::Sha256),
            "sha512" => Ok(Algorithm::Sha512),
            other => Err(DigestError::UnsupportedAlgorithm(other.to_owned())),
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
        let algorithm = Algorithm::from_name(alg)?;
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

/// The hash computations an upload feeds its bytes to, paused and resumed between requests:
/// serialized into the upload session, restored by whichever process takes the next chunk, so
/// finishing an upload never re-reads its bytes.
///
/// A session hashes with the algorithm its `POST` named (`digest-algorithm`), or, when it named
/// none, with every algorithm Wharf accepts for blobs: the digest, and so the algorithm, comes
/// only with the final `PUT`, and hashing both as the bytes pass is the one way to answer it
/// without reading them again. Each byte is still read once from the request; it is fed to two
/// hashers while in memory.
#[derive(Clone)]
pub struct DigestStream {
    sha256: Option<sha2::Sha256>,
    sha512: Option<sha2::Sha512>,
    len: u64,
}

impl fmt::Debug for DigestStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestStream")
            .field("len", &self.len)
            .field("algorithms", &self.algorithms())
            .finish_non_exhaustive()
    }
}

/// Every algorithm an upload can be verified with, in the order midstates are saved.
pub const BLOB_ALGORITHMS: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];

impl DigestStream {
    /// A stream hashing with `hint` only, or with every algorithm of [`BLOB_ALGORITHMS`] when
    /// there is no hint.
    pub fn new(hint: Option<Algorithm>) -> Self {
        let wants = |a: Algorithm| hint.is_none_or(|h| h == a);
        DigestStream {
            sha256: wants(Algorithm::Sha256).then(sha2::Sha256::default),
            sha512: wants(Algorithm::Sha512).then(sha2::Sha512::default),
            len: 0,
        }
    }

    /// Feeds bytes to every hasher of the stream.
    pub fn update(&mut self, bytes: &[u8]) {
        if let Some(h) = &mut self.sha256 {
            h.update(bytes);
        }
        if let Some(h) = &mut self.sha512 {
            h.update(bytes);
        }
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

    /// The algorithms this stream hashes with.
    pub fn algorithms(&self) -> Vec<Algorithm> {
        BLOB_ALGORITHMS
            .into_iter()
            .filter(|a| self.hashes(*a))
            .collect()
    }

    /// True when this stream hashes with `algorithm`.
    pub fn hashes(&self, algorithm: Algorithm) -> bool {
        match algorithm {
            Algorithm::Sha256 => self.sha256.is_some(),
            Algorithm::Sha512 => self.sha512.is_some(),
        }
    }

    /// The `algorithm` digest of everything fed so far (the stream stays resumable), or `None`
    /// when this stream does not hash with it.
    pub fn digest(&self, algorithm: Algorithm) -> Option<Digest> {
        let hex = match algorithm {
            Algorithm::Sha256 => hex::encode(self.sha256.clone()?.finalize()),
            Algorithm::Sha512 => hex::encode(self.sha512.clone()?.finalize()),
        };
        Some(Digest { algorithm, hex })
    }

    /// The midstates as text: `<len>:<hex>` when only SHA-256 is computed (the form sessions
    /// had before sha512 blobs, so either release reads what the other wrote), else
    /// `<len>:<alg>=<hex>[,<alg>=<hex>]`. Each hex is the hash state, the buffered partial
    /// block and the block count (about 210 characters for SHA-256, 420 for SHA-512).
    pub fn save(&self) -> String {
        let sha256 = self.sha256.as_ref().map(|h| hex::encode(h.serialize()));
        let sha512 = self.sha512.as_ref().map(|h| hex::encode(h.serialize()));
        match (sha256, sha512) {
            (Some(a), None) => format!("{}:{a}", self.len),
            (a, b) => {
                let parts: Vec<String> = [(Algorithm::Sha256, a), (Algorithm::Sha512, b)]
                    .into_iter()
                    .filter_map(|(alg, hex)| Some(format!("{}={}", alg.as_str(), hex?)))
                    .collect();
                format!("{}:{}", self.len, parts.join(","))
            }
        }
    }

    /// Restores midstates written by [`DigestStream::save`]. Only Wharf writes this value (it
    /// lives in the server-side upload session), but it is still checked: each algorithm at
    /// most once, at least one, every state well-formed.
    pub fn restore(saved: &str) -> Option<Self> {
        let (len, states) = saved.split_once(':')?;
        let mut stream = DigestStream {
            sha256: None,
            sha512: None,
            len: len.parse().ok()?,
        };
        if !states.contains('=') {
            stream.sha256 = Some(restore_state::<sha2::Sha256>(states)?);
            return Some(stream);
        }
        for part in states.split(',') {
            let (alg, state) = part.split_once('=')?;
            match alg {
                "sha256" if stream.sha256.is_none() => {
                    stream.sha256 = Some(restore_state(state)?);
                }
                "sha512" if stream.sha512.is_none() => {
                    stream.sha512 = Some(restore_state(state)?);
                }
                _ => return None,
            }
        }
        Some(stream)
    }
}

/// One hasher from the hex of its serialized state.
fn restore_state<H: SerializableState>(hex_state: &str) -> Option<H> {
    let bytes = hex::decode(hex_state).ok()?;
    let array = bytes.as_slice().try_into().ok()?;
    H::deserialize(array).ok()
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

    fn sample() -> Vec<u8> {
        (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn resumed_hash_equals_one_shot_hash_for_every_hint() {
        let data = sample();
        for hint in [None, Some(Algorithm::Sha256), Some(Algorithm::Sha512)] {
            // Splits at SHA-256's and SHA-512's block edges (64 and 128 bytes) and between.
            for split in [0, 1, 63, 64, 65, 127, 128, 129, 4097, 9999, 10_000] {
                let mut a = DigestStream::new(hint);
                a.update(&data[..split]);
                let mut b = DigestStream::restore(&a.save()).expect("restores");
                assert_eq!(b.len(), split as u64);
                b.update(&data[split..]);
                for alg in BLOB_ALGORITHMS {
                    let expected = hint.is_none_or(|h| h == alg).then(|| alg.digest(&data));
                    assert_eq!(b.digest(alg), expected, "{hint:?} {alg:?} split at {split}");
                }
            }
        }
    }

    #[test]
    fn without_a_hint_both_algorithms_are_hashed_with_one_pass() {
        let data = sample();
        let mut s = DigestStream::new(None);
        for chunk in data.chunks(999) {
            s = DigestStream::restore(&s.save()).expect("restores");
            s.update(chunk);
        }
        assert_eq!(s.algorithms(), BLOB_ALGORITHMS.to_vec());
        assert_eq!(
            s.digest(Algorithm::Sha256),
            Some(Algorithm::Sha256.digest(&data))
        );
        assert_eq!(
            s.digest(Algorithm::Sha512),
            Some(Algorithm::Sha512.digest(&data))
        );
    }

    #[test]
    fn a_hinted_stream_hashes_only_its_algorithm() {
        let s = DigestStream::new(Some(Algorithm::Sha512));
        assert_eq!(s.algorithms(), vec![Algorithm::Sha512]);
        assert_eq!(s.digest(Algorithm::Sha256), None);
        assert!(s.save().starts_with("0:sha512="));
    }

    #[test]
    fn a_midstate_saved_before_sha512_support_restores_as_sha256() {
        // Written by the previous release's `Sha256Stream::save` after feeding "abc".
        let mut old = sha2::Sha256::default();
        old.update(b"abc");
        let saved = format!("3:{}", hex::encode(old.serialize()));
        let mut s = DigestStream::restore(&saved).expect("restores");
        assert_eq!(s.algorithms(), vec![Algorithm::Sha256]);
        s.update(b"def");
        assert_eq!(
            s.digest(Algorithm::Sha256),
            Some(Algorithm::Sha256.digest(b"abcdef"))
        );
        // And a sha256-only stream still saves in that form, for instances not yet upgraded.
        assert_eq!(DigestStream::new(Some(Algorithm::Sha256)).save(), {
            format!("0:{}", hex::encode(sha2::Sha256::default().serialize()))
        });
    }

    #[test]
    fn both_midstates_fit_an_upload_session_item() {
        let mut s = DigestStream::new(None);
        s.update(&sample()[..127]);
        // DynamoDB items are at most 400 KB; the session holds this next to its staging state.
        assert!(s.save().len() < 1024, "{} characters", s.save().len());
    }

    #[test]
    fn corrupt_midstate_is_refused() {
        let good256 = hex::encode(sha2::Sha256::default().serialize());
        let good512 = hex::encode(sha2::Sha512::default().serialize());
        for bad in [
            "x".to_owned(),
            "3:zz".to_owned(),
            "3:00".to_owned(),
            "x:".to_owned() + &good256,
            "0:sha512=".to_owned() + &good256,
            "0:sha256=".to_owned() + &good512,
            format!("0:sha256={good256},sha256={good256}"),
            format!("0:md5={good256}"),
            format!("0:sha256={good256},"),
            "0:".to_owned(),
        ] {
            assert!(
                DigestStream::restore(&bad).is_none(),
                "{bad:?} must be refused"
            );
        }
        assert!(DigestStream::restore(&format!("0:sha512={good512},sha256={good256}")).is_some());
    }

    #[test]
    fn algorithm_names() {
        assert_eq!(Algorithm::from_name("sha512"), Ok(Algorithm::Sha512));
        assert_eq!(Algorithm::from_name("sha256"), Ok(Algorithm::Sha256));
        for bad in ["", "SHA256", "md5", "sha384", "sha256 "] {
            assert!(Algorithm::from_name(bad).is_err(), "{bad:?}");
        }
    }
}
