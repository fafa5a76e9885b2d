//! Signed flists: an Ed25519 signature over an flist file's SHA-256 and its
//! `repository/name`, so that neither the bytes nor the name can change unnoticed.
//!
//! The signed message is the text `flist-signature-v1\n<hex sha256>\n<repo>/<name>`. A
//! signature travels as a small JSON document (served as `<repo>/<name>.flist.sig`):
//! `{"algorithm":"ed25519","name":"repo/name.flist","sha256":"<hex>","key":"<base64 public
//! key>","signature":"<base64>"}`. Keys are written as base64 text: the 32-byte public key,
//! or the 32-byte secret seed in a private key file.

use base64::Engine as _;
use ed25519_dalek::{Signer, Verifier};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Why a signature or key was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// A key's text is not base64 of 32 bytes.
    #[error("bad {what} key: {reason}")]
    BadKey {
        /// `public` or `private`.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The signature document is malformed.
    #[error("bad signature document: {0}")]
    BadDocument(String),
    /// The file's bytes are not the signed ones.
    #[error("the flist's SHA-256 {actual} is not the signed {signed}: its bytes changed")]
    ContentChanged {
        /// The file's digest.
        actual: String,
        /// The signed digest.
        signed: String,
    },
    /// The flist's name is not the signed one.
    #[error("the flist is named {actual:?} but the signature is for {signed:?}")]
    NameChanged {
        /// The name checked.
        actual: String,
        /// The signed name.
        signed: String,
    },
    /// Signed with another key than the trusted one.
    #[error("signed by key {signer}, not by the trusted key {trusted}")]
    OtherKey {
        /// The key named in the signature.
        signer: String,
        /// The trusted key.
        trusted: String,
    },
    /// The Ed25519 signature does not verify.
    #[error("the Ed25519 signature does not verify")]
    Invalid,
}

/// A signature document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureDoc {
    /// Always `ed25519`.
    pub algorithm: String,
    /// `repo/name.flist` as signed.
    pub name: String,
    /// Hex SHA-256 of the flist file.
    pub sha256: String,
    /// Base64 public key of the signer.
    pub key: String,
    /// Base64 Ed25519 signature of the message.
    pub signature: String,
}

impl SignatureDoc {
    /// Parses the JSON document.
    pub fn parse(bytes: &[u8]) -> Result<Self, SignatureError> {
        let d: SignatureDoc = serde_json::from_slice(bytes)
            .map_err(|e| SignatureError::BadDocument(e.to_string()))?;
        if d.algorithm != "ed25519" {
            return Err(SignatureError::BadDocument(format!(
                "algorithm {:?} is not ed25519",
                d.algorithm
            )));
        }
        Ok(d)
    }

    /// The JSON document (one line, no trailing newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn message(sha256: &str, name: &str) -> Vec<u8> {
    format!("flist-signature-v1\n{sha256}\n{name}").into_bytes()
}

/// A signing (private) key.
pub struct SigningKey(ed25519_dalek::SigningKey);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(public {})", self.public_base64())
    }
}

impl SigningKey {
    /// A key from a 32-byte secret seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// Parses the base64 text of a private key file.
    pub fn from_base64(text: &str) -> Result<Self, SignatureError> {
        let seed = decode32(text, "private")?;
        Ok(Self::from_seed(&seed))
    }

    /// The private key file text (base64 of the seed, newline-terminated).
    pub fn to_base64(&self) -> String {
        format!("{}\n", B64.encode(self.0.to_bytes()))
    }

    /// The public key as base64.
    pub fn public_base64(&self) -> String {
        B64.encode(self.0.verifying_key().to_bytes())
    }

    /// Signs flist bytes under `name` (`repo/name.flist`).
    pub fn sign(&self, flist: &[u8], name: &str) -> SignatureDoc {
        self.sign_digest(&sha256_hex(flist), name)
    }

    /// Signs an flist known by its hex SHA-256.
    pub fn sign_digest(&self, sha256: &str, name: &str) -> SignatureDoc {
        let sig = self.0.sign(&message(sha256, name));
        SignatureDoc {
            algorithm: "ed25519".into(),
            name: name.to_string(),
            sha256: sha256.to_string(),
            key: self.public_base64(),
            signature: B64.encode(sig.to_bytes()),
        }
    }
}

fn decode32(text: &str, what: &'static str) -> Result<[u8; 32], SignatureError> {
    let bytes = B64
        .decode(text.trim())
        .map_err(|e| SignatureError::BadKey {
            what,
            reason: format!("not base64: {e}"),
        })?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| SignatureError::BadKey {
            what,
            reason: format!("{} bytes, expected 32", b.len()),
        })
}

/// A trusted public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    /// Parses base64 text of 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, SignatureError> {
        let b = decode32(text, "public")?;
        ed25519_dalek::VerifyingKey::from_bytes(&b)
            .map(PublicKey)
            .map_err(|e| SignatureError::BadKey {
                what: "public",
                reason: e.to_string(),
            })
    }

    /// Base64 text.
    pub fn to_base64(&self) -> String {
        B64.encode(self.0.to_bytes())
    }
}

/// How the name of the flist being checked is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpectedName<'a> {
    /// The full `repo/name.flist` (hub URLs, `--name`).
    Full(&'a str),
    /// Only the file name (a local file): the signed name's last component must equal it.
    FileName(&'a str),
}

/// Checks that `doc` signs exactly these `flist` bytes under the expected name with the
/// `trusted` key.
pub fn verify(
    doc: &SignatureDoc,
    flist: &[u8],
    name: ExpectedName<'_>,
    trusted: &PublicKey,
) -> Result<(), SignatureError> {
    verify_digest(doc, &sha256_hex(flist), name, trusted)
}

/// [`verify`] for a file known by its hex SHA-256 (e.g. a staged upload, hashed while it
/// was written).
pub fn verify_digest(
    doc: &SignatureDoc,
    sha256: &str,
    name: ExpectedName<'_>,
    trusted: &PublicKey,
) -> Result<(), SignatureError> {
    let actual = sha256.to_ascii_lowercase();
    if !actual.eq_ignore_ascii_case(&doc.sha256) {
        return Err(SignatureError::ContentChanged {
            actual,
            signed: doc.sha256.clone(),
        });
    }
    let name_ok = match name {
        ExpectedName::Full(n) => n == doc.name,
        ExpectedName::FileName(n) => doc.name.rsplit('/').next() == Some(n),
    };
    if !name_ok {
        return Err(SignatureError::NameChanged {
            actual: match name {
                ExpectedName::Full(n) | ExpectedName::FileName(n) => n.to_string(),
            },
            signed: doc.name.clone(),
        });
    }
    if doc.key.trim() != trusted.to_base64() {
        return Err(SignatureError::OtherKey {
            signer: doc.key.clone(),
            trusted: trusted.to_base64(),
        });
    }
    let sig_bytes: [u8; 64] = B64
        .decode(doc.signature.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| SignatureError::BadDocument("signature is not base64 of 64 bytes".into()))?;
    let sig = ed25519_dalek::Signature::from_bytes(&sig_bytes);
    trusted
        .0
        .verify(&message(&actual, &doc.name), &sig)
        .map_err(|_| SignatureError::Invalid)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_tamper() {
        let key = SigningKey::from_seed(&[7u8; 32]);
        let public = PublicKey::from_base64(&key.public_base64()).unwrap();
        let bytes = b"flist bytes".to_vec();
        let doc = key.sign(&bytes, "alice/app.flist");
        let doc = SignatureDoc::parse(doc.to_json().as_bytes()).unwrap();
        verify(&doc, &bytes, ExpectedName::Full("alice/app.flist"), &public).unwrap();
        verify(&doc, &bytes, ExpectedName::FileName("app.flist"), &public).unwrap();
        let mut changed = bytes.clone();
        changed[0] ^= 1;
        assert!(matches!(
            verify(
                &doc,
                &changed,
                ExpectedName::Full("alice/app.flist"),
                &public
            ),
            Err(SignatureError::ContentChanged { .. })
        ));
        assert!(matches!(
            verify(&doc, &bytes, ExpectedName::FileName("other.flist"), &public),
            Err(SignatureError::NameChanged { .. })
        ));
        // A document edited to claim another name fails the signature itself.
        let mut forged = doc.clone();
        forged.name = "alice/other.flist".into();
        assert_eq!(
            verify(
                &forged,
                &bytes,
                ExpectedName::Full("alice/other.flist"),
                &public
            ),
            Err(SignatureError::Invalid)
        );
        let other = SigningKey::from_seed(&[8u8; 32]);
        let other_pub = PublicKey::from_base64(&other.public_base64()).unwrap();
        assert!(matches!(
            verify(
                &doc,
                &bytes,
                ExpectedName::Full("alice/app.flist"),
                &other_pub
            ),
            Err(SignatureError::OtherKey { .. })
        ));
        assert!(PublicKey::from_base64("abc").is_err());
        let back = SigningKey::from_base64(&key.to_base64()).unwrap();
        assert_eq!(back.public_base64(), key.public_base64());
    }
}
