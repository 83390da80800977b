//! Signed configuration bundles: `--config-public-key` makes `serve` (at start and at every
//! reload) and `airgate bundle verify` refuse a configuration file whose signature does not
//! verify.
//!
//! The formats are cosign's, so a CI that signs with `cosign sign-blob` needs nothing else:
//! - the key is a PEM `PUBLIC KEY` (SubjectPublicKeyInfo): ECDSA P-256, as
//!   `cosign generate-key-pair` writes it, or Ed25519;
//! - the signature is base64 text over the exact bytes of the file: for P-256 an ASN.1 DER
//!   ECDSA signature over their SHA-256 (what `cosign sign-blob` prints, and what
//!   `openssl dgst -sha256 -sign key.pem FILE | base64` makes); for Ed25519 the 64-byte
//!   signature of the bytes themselves (`openssl pkeyutl -sign -rawin`).
//!
//! A folder cannot be signed: one signature covers one file's bytes, and a folder has no
//! canonical byte order an external tool would sign. With a key set, `--config` must be a file.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Largest signature file read (a DER P-256 signature is at most 72 bytes, in base64 ~100).
const MAX_SIGNATURE_BYTES: u64 = 4096;

/// A public key configuration bundles must be signed with.
#[derive(Clone)]
pub struct BundleKey {
    key: Key,
    /// SHA-256 (hex) of the key's SubjectPublicKeyInfo DER, for the audit record.
    fingerprint: String,
}

#[derive(Clone)]
enum Key {
    P256(p256::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

/// Why a bundle was refused.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("signature: cannot read the public key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("signature: cannot read the signature file {path}: {message}")]
    SignatureFile { path: PathBuf, message: String },
    #[error("signature: the signature file {0} is not base64 of a signature")]
    Malformed(PathBuf),
    #[error("signature: {0} does not verify against the configured public key (tampered, or signed with another key)")]
    Mismatch(PathBuf),
    #[error("signature: {0} is a folder, and a folder cannot be signed; sign one bundle file (for example with `cosign sign-blob`) and pass it as --config")]
    Folder(PathBuf),
}

impl BundleKey {
    /// Reads a PEM public key: ECDSA P-256 or Ed25519.
    pub fn load(path: &Path) -> Result<Self, SignatureError> {
        let key_error = |message: String| SignatureError::Key {
            path: path.to_path_buf(),
            message,
        };
        let pem = std::fs::read_to_string(path).map_err(|e| key_error(e.to_string()))?;
        Self::from_pem(&pem).map_err(key_error)
    }

    fn from_pem(pem: &str) -> Result<Self, String> {
        use p256::pkcs8::DecodePublicKey;
        let (label, der) =
            pem_rfc7468::decode_vec(pem.trim().as_bytes()).map_err(|e| format!("not PEM: {e}"))?;
        if label != "PUBLIC KEY" {
            return Err(format!("a PEM \"PUBLIC KEY\" is needed, not {label:?}"));
        }
        let key = if let Ok(key) = p256::ecdsa::VerifyingKey::from_public_key_der(&der) {
            Key::P256(key)
        } else if let Ok(key) = ed25519_dalek::VerifyingKey::from_public_key_der(&der) {
            Key::Ed25519(key)
        } else {
            return Err("neither an ECDSA P-256 nor an Ed25519 public key".into());
        };
        Ok(Self {
            key,
            fingerprint: hex::encode(Sha256::digest(&der)),
        })
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Verifies `signature` (the base64 text of a signature file) over `bytes`.
    pub fn verifies(&self, bytes: &[u8], signature: &str) -> Option<bool> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .ok()?;
        Some(match &self.key {
            Key::P256(key) => {
                use p256::ecdsa::signature::Verifier;
                let Ok(signature) = p256::ecdsa::Signature::from_der(&raw) else {
                    return None;
                };
                key.verify(bytes, &signature).is_ok()
            }
            Key::Ed25519(key) => {
                let Ok(signature) = ed25519_dalek::Signature::from_slice(&raw) else {
                    return None;
                };
                key.verify_strict(bytes, &signature).is_ok()
            }
        })
    }

    /// Checks the bundle at `config` against the signature at `signature`; returns the bytes
    /// that verified, which are the bytes to load (never read the file a second time).
    pub fn check(&self, config: &Path, signature: &Path) -> Result<Vec<u8>, SignatureError> {
        if config.is_dir() {
            return Err(SignatureError::Folder(config.to_path_buf()));
        }
        let bytes = std::fs::read(config).map_err(|e| SignatureError::SignatureFile {
            path: config.to_path_buf(),
            message: e.to_string(),
        })?;
        let text = read_signature(signature)?;
        match self.verifies(&bytes, &text) {
            Some(true) => Ok(bytes),
            Some(false) => Err(SignatureError::Mismatch(config.to_path_buf())),
            None => Err(SignatureError::Malformed(signature.to_path_buf())),
        }
    }
}

/// `<config>.sig`, the default signature path.
pub fn default_signature_path(config: &Path) -> PathBuf {
    let mut name = config.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

fn read_signature(path: &Path) -> Result<String, SignatureError> {
    use std::io::Read;
    let error = |message: String| SignatureError::SignatureFile {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| error(e.to_string()))?;
    let mut text = String::new();
    file.take(MAX_SIGNATURE_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| error(e.to_string()))?;
    Ok(text)
}
