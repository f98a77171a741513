//! Subresource Integrity strings as npm and yarn write them (`sha512-<base64>`,
//! several separated by whitespace), plus the legacy sha1 hex `shasum`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

/// One hash of an integrity string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrityHash {
    /// `sha512`, `sha384`, `sha256` or `sha1`.
    pub algorithm: String,
    /// The raw digest bytes.
    pub digest: Vec<u8>,
}

impl IntegrityHash {
    /// `algorithm-base64`.
    pub fn to_sri(&self) -> String {
        format!("{}-{}", self.algorithm, STANDARD.encode(&self.digest))
    }
}

/// A parsed integrity value: one or more hashes, in the order written (never
/// empty, so [`Integrity::best`] always has an answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integrity {
    /// The hashes offpack understands (unknown algorithms are skipped, as ssri does).
    hashes: Vec<IntegrityHash>,
}

/// Algorithms offpack checks, weakest first; the order ranks them for [`Integrity::best`].
const ALGORITHMS: &[(&str, usize)] =
    &[("sha1", 20), ("sha256", 32), ("sha384", 48), ("sha512", 64)];

fn strength(algorithm: &str) -> usize {
    ALGORITHMS
        .iter()
        .position(|(a, _)| *a == algorithm)
        .unwrap_or(0)
}

impl Integrity {
    /// Parses an SRI string: whitespace-separated `algorithm-base64[?options]`.
    /// Unknown algorithms are skipped; `None` when no hash is usable (empty,
    /// bad base64, a digest of the wrong length).
    pub fn parse(s: &str) -> Option<Integrity> {
        let mut hashes = Vec::new();
        for item in s.split_whitespace() {
            let Some((algorithm, rest)) = item.split_once('-') else {
                continue;
            };
            let algorithm = algorithm.to_ascii_lowercase();
            let Some(&(_, len)) = ALGORITHMS.iter().find(|(a, _)| *a == algorithm) else {
                continue;
            };
            let b64 = rest.split('?').next().unwrap_or(rest);
            // Unpadded base64 is read too, as ssri (Node's lenient decoder) reads it.
            let Ok(digest) = STANDARD
                .decode(b64)
                .or_else(|_| STANDARD_NO_PAD.decode(b64))
            else {
                return None;
            };
            if digest.len() != len {
                return None;
            }
            hashes.push(IntegrityHash { algorithm, digest });
        }
        (!hashes.is_empty()).then_some(Integrity { hashes })
    }

    /// From a sha1 hex digest (npm's `shasum`, yarn's `resolved …#<sha1>`).
    pub fn from_sha1_hex(hex_digest: &str) -> Option<Integrity> {
        let digest = hex::decode(hex_digest.trim()).ok()?;
        (digest.len() == 20).then(|| Integrity {
            hashes: vec![IntegrityHash {
                algorithm: "sha1".into(),
                digest,
            }],
        })
    }

    /// The hashes, in the order written.
    pub fn hashes(&self) -> &[IntegrityHash] {
        &self.hashes
    }

    /// The strongest hash (sha512 > sha384 > sha256 > sha1); the first one among equals.
    pub fn best(&self) -> &IntegrityHash {
        let mut best = &self.hashes[0];
        for h in &self.hashes[1..] {
            if strength(&h.algorithm) > strength(&best.algorithm) {
                best = h;
            }
        }
        best
    }

    /// True when a hash of this `algorithm` is present and equals `digest`.
    pub fn matches(&self, algorithm: &str, digest: &[u8]) -> bool {
        self.hashes
            .iter()
            .any(|h| h.algorithm.eq_ignore_ascii_case(algorithm) && h.digest == digest)
    }

    /// The SRI string of a sha512 digest: `sha512-<base64>`.
    pub fn sha512_of(digest: &[u8]) -> String {
        format!("sha512-{}", STANDARD.encode(digest))
    }
}

impl fmt::Display for Integrity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.hashes.iter().map(IntegrityHash::to_sri).collect();
        f.write_str(&parts.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEFT_PAD: &str = "sha512-HV1Cm0Q3ZrpCR93tkWOYiuYIgLxZXZFVG2VgK+MBWjUqZTundupbfx2aXarXuw5Ko5aMcjtJgbSs4vUGBS5v6g==";

    #[test]
    fn parses_one_and_several() {
        let i = Integrity::parse(LEFT_PAD).unwrap();
        assert_eq!(i.hashes.len(), 1);
        assert_eq!(i.best().algorithm, "sha512");
        assert_eq!(i.to_string(), LEFT_PAD);

        let sha1 = format!("sha1-{}", STANDARD.encode([7u8; 20]));
        let both = Integrity::parse(&format!("{sha1}  {LEFT_PAD}?foo md5-xyz\n")).unwrap();
        assert_eq!(both.hashes.len(), 2);
        assert_eq!(both.best().algorithm, "sha512");
        assert!(both.matches("sha1", &[7u8; 20]));
        assert!(!both.matches("sha1", &[8u8; 20]));
        assert!(!both.matches("sha256", &[7u8; 20]));

        let unpadded = LEFT_PAD.trim_end_matches('=');
        assert_eq!(Integrity::parse(unpadded).unwrap().to_string(), LEFT_PAD);
    }

    #[test]
    fn rejects_bad_values() {
        assert_eq!(Integrity::parse(""), None);
        assert_eq!(Integrity::parse("md5-abc"), None);
        assert_eq!(Integrity::parse("sha512-!!!"), None);
        assert_eq!(Integrity::parse("sha512-AAAA"), None);
        assert_eq!(Integrity::parse("sha512"), None);
    }

    #[test]
    fn sha1_hex_and_sha512_of() {
        let i = Integrity::from_sha1_hex("dcfc826beef65e75c50e21d3837d7d95798dd658").unwrap();
        assert_eq!(i.best().algorithm, "sha1");
        assert_eq!(i.best().digest[0], 0xdc);
        assert_eq!(Integrity::from_sha1_hex("dcfc"), None);
        assert_eq!(Integrity::from_sha1_hex("zz"), None);
        let s = Integrity::sha512_of(&[1u8; 64]);
        assert!(Integrity::parse(&s).unwrap().matches("sha512", &[1u8; 64]));
    }
}
