//! Ed25519 signatures over the manifest digest (format 1.1, spec section 6.5).
//!
//! Key files are one line of text: `offpack-ed25519-secret:<base64 of the 32-byte seed>` and
//! `offpack-ed25519-public:<base64 of the 32-byte public key>` (standard base64 with padding).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::Signer as _;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::{BundleError, Digest};

const SECRET_PREFIX: &str = "offpack-ed25519-secret:";
const PUBLIC_PREFIX: &str = "offpack-ed25519-public:";
/// What is signed: this prefix followed by the digest string of `offpack.json` (domain separation, so a
/// signature cannot be replayed as a signature over anything else).
const MESSAGE_PREFIX: &str = "offpack-bundle-manifest-v1 ";
/// The only algorithm of format 1.1.
pub(crate) const ALGORITHM: &str = "ed25519";

/// A secret signing key (`offpack keygen` writes it; keep it private).
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(ed25519_dalek::SigningKey);

/// A public key that checks signatures.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VerifyingKey(ed25519_dalek::VerifyingKey);

/// The signature stored in the index (spec 6.5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexSignature {
    /// `ed25519`.
    pub algorithm: String,
    /// The signer's public key, base64 (tells the verifier *who* signed, for messages).
    pub public_key: String,
    /// Signature over `offpack-bundle-manifest-v1 sha256:<hex of offpack.json>`, base64.
    pub signature: String,
}

/// Makes a new key pair from the operating system's random source.
pub fn generate_keypair() -> Result<(SigningKey, VerifyingKey), BundleError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| BundleError::InvalidInput(format!("no random numbers for a new key: {e}")))?;
    let key = SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed));
    seed.fill(0);
    let public = key.verifying_key();
    Ok((key, public))
}

fn decode_key(text: &str, prefix: &str, what: &str) -> Result<[u8; 32], BundleError> {
    let bad = |detail: &str| {
        BundleError::InvalidInput(format!(
            "not an offpack {what} key ({detail}); expected one line `{prefix}<base64>` as written by `offpack keygen`"
        ))
    };
    let line = text.trim();
    let b64 = line.strip_prefix(prefix).ok_or_else(|| {
        if line.starts_with(SECRET_PREFIX) || line.starts_with(PUBLIC_PREFIX) {
            bad("it is the other key of the pair")
        } else {
            bad("unknown format")
        }
    })?;
    let bytes = B64.decode(b64).map_err(|_| bad("bad base64"))?;
    bytes.try_into().map_err(|_| bad("the key is not 32 bytes"))
}

impl SigningKey {
    /// Parses a secret key file's text.
    pub fn from_text(text: &str) -> Result<Self, BundleError> {
        let seed = decode_key(text, SECRET_PREFIX, "secret")?;
        Ok(SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// The secret key file's text (one line with a final newline).
    pub fn to_text(&self) -> String {
        format!("{SECRET_PREFIX}{}\n", B64.encode(self.0.to_bytes()))
    }

    /// The matching public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.0.verifying_key())
    }

    pub(crate) fn sign_manifest(&self, manifest: &Digest) -> IndexSignature {
        let sig = self.0.sign(message(manifest).as_bytes());
        IndexSignature {
            algorithm: ALGORITHM.into(),
            public_key: B64.encode(self.0.verifying_key().to_bytes()),
            signature: B64.encode(sig.to_bytes()),
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SigningKey(public {})",
            self.verifying_key().fingerprint()
        )
    }
}

impl VerifyingKey {
    /// Parses a public key file's text.
    pub fn from_text(text: &str) -> Result<Self, BundleError> {
        let bytes = decode_key(text, PUBLIC_PREFIX, "public")?;
        ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map(VerifyingKey)
            .map_err(|_| {
                BundleError::InvalidInput("the public key is not a valid Ed25519 point".into())
            })
    }

    /// The public key file's text (one line with a final newline).
    pub fn to_text(&self) -> String {
        format!("{PUBLIC_PREFIX}{}\n", B64.encode(self.0.to_bytes()))
    }

    /// A short name for messages: the first 16 hex digits of the SHA-256 of the key bytes.
    pub fn fingerprint(&self) -> String {
        hex::encode(&sha2::Sha256::digest(self.0.to_bytes())[..8])
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({})", self.fingerprint())
    }
}

fn message(manifest: &Digest) -> String {
    format!("{MESSAGE_PREFIX}{manifest}")
}

/// Checks an index signature over `manifest` against the public key it names; returns that key.
pub(crate) fn check(sig: &IndexSignature, manifest: &Digest) -> Result<VerifyingKey, BundleError> {
    let bad = |detail: &str| BundleError::BadSignature(detail.to_owned());
    if sig.algorithm != ALGORITHM {
        return Err(bad(&format!(
            "unknown signature algorithm `{}` (this offpack knows ed25519)",
            sig.algorithm
        )));
    }
    let key_bytes: [u8; 32] = B64
        .decode(&sig.public_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("the signer's public key in the index is malformed"))?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&key_bytes)
        .map_err(|_| bad("the signer's public key in the index is not a valid key"))?;
    let sig_bytes: [u8; 64] = B64
        .decode(&sig.signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("the signature in the index is malformed"))?;
    let signature = ed25519_dalek::Signature::from_bytes(&sig_bytes);
    key.verify_strict(message(manifest).as_bytes(), &signature)
        .map_err(|_| {
            bad(&format!(
                "the signature does not match offpack.json (key {})",
                VerifyingKey(key).fingerprint()
            ))
        })?;
    Ok(VerifyingKey(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_as_text_and_sign() {
        let (secret, public) = generate_keypair().unwrap();
        let secret2 = SigningKey::from_text(&secret.to_text()).unwrap();
        assert_eq!(secret2, secret);
        let public2 = VerifyingKey::from_text(&public.to_text()).unwrap();
        assert_eq!(public2, public);
        assert!(public.to_text().starts_with("offpack-ed25519-public:"));
        assert!(!format!("{secret:?}").contains(&secret.to_text()[24..40]));

        let d = Digest::of_bytes(b"{}");
        let sig = secret.sign_manifest(&d);
        assert_eq!(check(&sig, &d).unwrap(), public);
        let other = Digest::of_bytes(b"{ }");
        assert_eq!(check(&sig, &other).unwrap_err().kind(), "bad-signature");
        let mut broken = sig.clone();
        broken.signature = "AAAA".into();
        assert_eq!(check(&broken, &d).unwrap_err().kind(), "bad-signature");
    }

    #[test]
    fn key_files_are_checked() {
        let (secret, public) = generate_keypair().unwrap();
        let err = VerifyingKey::from_text(&secret.to_text()).unwrap_err();
        assert!(err.to_string().contains("other key of the pair"), "{err}");
        assert!(SigningKey::from_text(&public.to_text()).is_err());
        assert!(SigningKey::from_text("offpack-ed25519-secret:abc").is_err());
        assert!(VerifyingKey::from_text("ssh-ed25519 AAAA").is_err());
    }
}
