//! Bearer-token (JWT) verification.
//!
//! Keys come only from the folder `<secrets-dir>/<secretName>/`, laid out as Kubernetes mounts a
//! Secret (one file per key):
//! - `secret` (or the file named by [`JwtSettings::secret_key`]): an HMAC secret (HS256/384/512),
//!   used byte for byte (a trailing newline is part of the secret);
//! - `public.pem`: an RSA (RS*, PS*), EC (ES256 for P-256, ES384 for P-384) or Ed25519 (EdDSA)
//!   public key;
//! - `jwks.json`: a JSON Web Key Set; its keys are selected by `kid`.
//!
//! Security rules:
//! - the algorithm family comes from the key, never from the token: an `HS256` token is never
//!   checked against an RSA public key, whatever its bytes;
//! - `alg: none` and algorithms not configured for the selected key are refused;
//! - a token with a `kid` needs a configured key with that `kid`; a token without `kid` is
//!   accepted only when exactly one configured key has the token's algorithm family;
//! - header URLs (`jku`, `x5u`) and embedded keys (`jwk`, `x5c`) are ignored, nothing is fetched;
//! - a header with `crit` extensions is refused (none are understood);
//! - `exp` is required, `nbf` is checked when present, both with [`JwtSettings::leeway`];
//!   `iss` and `aud` are required and checked when configured.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Default clock-skew allowance for `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// Claim holding the user identity when [`JwtSettings::user_claim`] is absent.
pub const DEFAULT_USER_CLAIM: &str = "sub";

/// File holding the HMAC secret when [`JwtSettings::secret_key`] is absent.
pub const SECRET_FILE: &str = "secret";

/// File holding a PEM public key.
pub const PUBLIC_PEM_FILE: &str = "public.pem";

/// File holding a JSON Web Key Set.
pub const JWKS_FILE: &str = "jwks.json";

/// Longest accepted token, in bytes.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// HMAC secrets shorter than this are accepted with a warning.
const MIN_HMAC_SECRET_LEN: usize = 32;

/// JWT verification settings (the resolved form of `API.spec.authentication.jwt`).
#[derive(Debug, Clone, PartialEq)]
pub struct JwtSettings {
    /// Folder name under the secrets directory.
    pub secret_name: String,
    /// File holding the HMAC secret; `secret` when absent.
    pub secret_key: Option<String>,
    /// Accepted `iss`; when set, the claim is required.
    pub issuer: Option<String>,
    /// Accepted `aud`; when set, the claim is required. When absent, `aud` is not checked.
    pub audience: Option<String>,
    /// Accepted algorithms (`HS256`, `RS256`, `ES256`, `EdDSA`, ...). Empty: every algorithm of
    /// each configured key's family.
    pub algorithms: Vec<String>,
    /// Claim holding the user id; `sub` when absent.
    pub user_claim: Option<String>,
    /// Clock-skew allowance for `exp` and `nbf` (whole seconds are used).
    pub leeway: Duration,
    /// Rule approving requests for `requiresApproval` backends.
    pub approval: Option<ApprovalRule>,
}

impl JwtSettings {
    /// Settings with the defaults: `secret`, any algorithm of the keys' families, `sub`, 30 s.
    pub fn new(secret_name: impl Into<String>) -> Self {
        JwtSettings {
            secret_name: secret_name.into(),
            secret_key: None,
            issuer: None,
            audience: None,
            algorithms: Vec::new(),
            user_claim: None,
            leeway: DEFAULT_LEEWAY,
            approval: None,
        }
    }
}

/// A verified token approves `requiresApproval` backends when its top-level claim `claim` equals
/// `value`, or is an array containing `value`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalRule {
    /// Top-level claim name, taken literally (`airgate/approved-fallback` is one name).
    pub claim: String,
    pub value: Value,
}

impl ApprovalRule {
    /// Whether the claims satisfy the rule.
    pub fn matches(&self, claims: &Map<String, Value>) -> bool {
        match claims.get(&self.claim) {
            Some(Value::Array(items)) => items.contains(&self.value),
            Some(found) => *found == self.value,
            None => false,
        }
    }
}

/// The caller, as established by a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Value of the user claim.
    pub user: String,
    /// Whether the approval rule matched.
    pub approved: bool,
}

/// Why a request was not authenticated. Every variant maps to HTTP 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    MissingToken,
    #[error("malformed bearer token")]
    Malformed,
    #[error("invalid token signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token issuer not accepted")]
    WrongIssuer,
    #[error("token audience not accepted")]
    WrongAudience,
    #[error("token algorithm not allowed")]
    AlgorithmNotAllowed,
    #[error("token signing key unknown")]
    UnknownKey,
    #[error("token lacks the required claim `{0}`")]
    MissingClaim(String),
}

impl AuthError {
    /// A low-cardinality label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "missing_token",
            AuthError::Malformed => "malformed",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::AlgorithmNotAllowed => "algorithm_not_allowed",
            AuthError::UnknownKey => "unknown_key",
            AuthError::MissingClaim(_) => "missing_claim",
        }
    }
}

/// Why the configured keys could not be loaded (a configuration error, reported at start-up or
/// reload).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("invalid secret or key name `{0}`: expected a plain file name")]
    InvalidName(String),
    #[error("unsupported JWT algorithm `{0}`")]
    UnsupportedAlgorithm(String),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    InvalidKey { path: PathBuf, reason: String },
    #[error("{path}: two keys have the kid `{kid}`")]
    DuplicateKid { path: PathBuf, kid: String },
    #[error("no usable key in {dir} (expected `{secret}`, `{PUBLIC_PEM_FILE}` or `{JWKS_FILE}` matching the configured algorithms)")]
    NoKeys { dir: PathBuf, secret: String },
}

/// One configured key with the validation rules for its algorithms (one family only).
struct VerifyKey {
    kid: Option<String>,
    family: AlgorithmFamily,
    key: DecodingKey,
    validation: Validation,
}

/// Verifies bearer tokens against the keys of one secret. Cheap to share behind an `Arc`.
pub struct JwtVerifier {
    keys: Vec<VerifyKey>,
    user_claim: String,
    approval: Option<ApprovalRule>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|k| format!("{:?}/{}", k.family, k.kid.as_deref().unwrap_or("-")))
            .collect();
        f.debug_struct("JwtVerifier")
            .field("keys", &keys)
            .field("user_claim", &self.user_claim)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Loads the keys of `settings.secret_name` from `secrets_dir`.
    pub fn load(settings: &JwtSettings, secrets_dir: &Path) -> Result<Self, KeyError> {
        let configured = parse_algorithms(&settings.algorithms)?;
        check_file_name(&settings.secret_name)?;
        let secret_file = settings.secret_key.as_deref().unwrap_or(SECRET_FILE);
        check_file_name(secret_file)?;
        let dir = secrets_dir.join(&settings.secret_name);
        if let Err(source) = std::fs::metadata(&dir) {
            return Err(KeyError::Io { path: dir, source });
        }

        let mut raw: Vec<RawKey> = Vec::new();
        let secret_path = dir.join(secret_file);
        if let Some(bytes) = read_optional(&secret_path, settings.secret_key.is_some())? {
            raw.push(hmac_key(&secret_path, bytes)?);
        }
        let pem_path = dir.join(PUBLIC_PEM_FILE);
        if let Some(bytes) = read_optional(&pem_path, false)? {
            raw.push(pem_key(&pem_path, &bytes)?);
        }
        let jwks_path = dir.join(JWKS_FILE);
        if let Some(bytes) = read_optional(&jwks_path, false)? {
            raw.extend(jwks_keys(&jwks_path, &bytes)?);
        }

        let mut seen = HashSet::new();
        let mut keys = Vec::new();
        for key in raw {
            if let Some(kid) = &key.kid {
                if !seen.insert(kid.clone()) {
                    return Err(KeyError::DuplicateKid {
                        path: dir.clone(),
                        kid: kid.clone(),
                    });
                }
            }
            let algorithms: Vec<Algorithm> = key
                .algorithms
                .iter()
                .copied()
                .filter(|a| configured.is_empty() || configured.contains(a))
                .collect();
            if algorithms.is_empty() {
                tracing::warn!(
                    source = %key.source.display(),
                    kid = key.kid.as_deref().unwrap_or("-"),
                    "JWT key ignored: none of its algorithms is configured"
                );
                continue;
            }
            keys.push(VerifyKey {
                validation: validation(settings, algorithms),
                kid: key.kid,
                family: key.family,
                key: key.key,
            });
        }
        if keys.is_empty() {
            return Err(KeyError::NoKeys {
                dir,
                secret: secret_file.to_string(),
            });
        }
        Ok(JwtVerifier {
            keys,
            user_claim: settings
                .user_claim
                .clone()
                .unwrap_or_else(|| DEFAULT_USER_CLAIM.to_string()),
            approval: settings.approval.clone(),
        })
    }

    /// Number of usable keys (diagnostics).
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Verifies the value of an `Authorization` header (`Bearer <jwt>`).
    pub fn verify(&self, authorization: Option<&str>) -> Result<Identity, AuthError> {
        let token = bearer_token(authorization)?;
        let header = TokenHeader::parse(token)?;
        let key = self.select_key(&header)?;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &key.validation)
            .map_err(|e| map_error(e.kind()))?;
        let claims = data.claims;
        let user = match claims.get(&self.user_claim) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(AuthError::MissingClaim(self.user_claim.clone())),
        };
        let approved = self.approval.as_ref().is_some_and(|r| r.matches(&claims));
        Ok(Identity { user, approved })
    }

    fn select_key(&self, header: &TokenHeader) -> Result<&VerifyKey, AuthError> {
        let key = match &header.kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid.as_str()))
                .ok_or(AuthError::UnknownKey)?,
            None => {
                let family = header.alg.family();
                let mut candidates = self.keys.iter().filter(|k| k.family == family);
                match (candidates.next(), candidates.next()) {
                    (Some(key), None) => key,
                    (None, _) => return Err(AuthError::AlgorithmNotAllowed),
                    (Some(_), Some(_)) => return Err(AuthError::UnknownKey),
                }
            }
        };
        if key.validation.algorithms.contains(&header.alg) {
            Ok(key)
        } else {
            Err(AuthError::AlgorithmNotAllowed)
        }
    }
}

/// Extracts the token of `Bearer <token>` (scheme case-insensitive).
fn bearer_token(authorization: Option<&str>) -> Result<&str, AuthError> {
    let value = authorization.ok_or(AuthError::MissingToken)?.trim();
    if value.is_empty() {
        return Err(AuthError::MissingToken);
    }
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    let token = token.trim_start();
    if !scheme.eq_ignore_ascii_case("bearer")
        || token.is_empty()
        || token.len() > MAX_TOKEN_LEN
        || token.contains(char::is_whitespace)
    {
        return Err(AuthError::Malformed);
    }
    let mut parts = 0;
    for part in token.split('.') {
        parts += 1;
        let base64url = part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !base64url {
            return Err(AuthError::Malformed);
        }
    }
    if parts != 3 {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

/// The header fields used to select the key; everything else (`jku`, `x5u`, `jwk`, ...) is
/// ignored.
struct TokenHeader {
    alg: Algorithm,
    kid: Option<String>,
}

impl TokenHeader {
    fn parse(token: &str) -> Result<Self, AuthError> {
        let encoded = token.split('.').next().ok_or(AuthError::Malformed)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| AuthError::Malformed)?;
        let header: Map<String, Value> =
            serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)?;
        if header.contains_key("crit") {
            return Err(AuthError::Malformed);
        }
        let alg = match header.get("alg") {
            Some(Value::String(alg)) => {
                Algorithm::from_str(alg).map_err(|_| AuthError::AlgorithmNotAllowed)?
            }
            _ => return Err(AuthError::Malformed),
        };
        let kid = match header.get("kid") {
            None | Some(Value::Null) => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(AuthError::Malformed),
        };
        Ok(TokenHeader { alg, kid })
    }
}

fn map_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "iss" => AuthError::WrongIssuer,
            "aud" => AuthError::WrongAudience,
            other => AuthError::MissingClaim(other.to_string()),
        },
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm => AuthError::AlgorithmNotAllowed,
        ErrorKind::InvalidToken
        | ErrorKind::InvalidClaimFormat(_)
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => AuthError::Malformed,
        _ => AuthError::BadSignature,
    }
}

/// One `Validation` per key, restricted to algorithms of that key's family.
fn validation(settings: &JwtSettings, algorithms: Vec<Algorithm>) -> Validation {
    let mut v = Validation {
        algorithms,
        leeway: settings.leeway.as_secs(),
        validate_exp: true,
        validate_nbf: true,
        ..Validation::default()
    };
    let mut required = vec!["exp"];
    if let Some(issuer) = &settings.issuer {
        v.set_issuer(&[issuer]);
        required.push("iss");
    }
    match &settings.audience {
        Some(audience) => {
            v.set_audience(&[audience]);
            v.validate_aud = true;
            required.push("aud");
        }
        None => v.validate_aud = false,
    }
    v.set_required_spec_claims(&required);
    v
}

fn parse_algorithms(names: &[String]) -> Result<Vec<Algorithm>, KeyError> {
    names
        .iter()
        .map(|name| {
            Algorithm::from_str(name.trim())
                .map_err(|_| KeyError::UnsupportedAlgorithm(name.clone()))
        })
        .collect()
}

fn check_file_name(name: &str) -> Result<(), KeyError> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && Path::new(name).components().count() == 1;
    if plain {
        Ok(())
    } else {
        Err(KeyError::InvalidName(name.to_string()))
    }
}

fn read_optional(path: &Path, required: bool) -> Result<Option<Vec<u8>>, KeyError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(None),
        Err(source) => Err(KeyError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A key before the configured algorithms are applied.
struct RawKey {
    source: PathBuf,
    kid: Option<String>,
    family: AlgorithmFamily,
    /// Algorithms the key material can verify.
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

fn invalid(path: &Path, reason: impl Into<String>) -> KeyError {
    KeyError::InvalidKey {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn hmac_key(path: &Path, bytes: Vec<u8>) -> Result<RawKey, KeyError> {
    if bytes.is_empty() {
        return Err(invalid(path, "empty HMAC secret"));
    }
    if bytes.len() < MIN_HMAC_SECRET_LEN {
        tracing::warn!(
            source = %path.display(),
            bytes = bytes.len(),
            "HMAC secret shorter than 32 bytes"
        );
    }
    Ok(RawKey {
        source: path.to_path_buf(),
        kid: None,
        family: AlgorithmFamily::Hmac,
        algorithms: AlgorithmFamily::Hmac.algorithms().to_vec(),
        key: DecodingKey::from_secret(&bytes),
    })
}

/// EC algorithms a public point of this size can verify (uncompressed SEC1 point).
fn ec_algorithms(point_len: usize) -> Vec<Algorithm> {
    match point_len {
        65 => vec![Algorithm::ES256],
        97 => vec![Algorithm::ES384],
        _ => Vec::new(),
    }
}

fn pem_key(path: &Path, bytes: &[u8]) -> Result<RawKey, KeyError> {
    let raw = |family: AlgorithmFamily, algorithms: Vec<Algorithm>, key: DecodingKey| RawKey {
        source: path.to_path_buf(),
        kid: None,
        family,
        algorithms,
        key,
    };
    if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
        let algorithms = AlgorithmFamily::Rsa.algorithms().to_vec();
        return Ok(raw(AlgorithmFamily::Rsa, algorithms, key));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(bytes) {
        let point_len = key.try_get_as_bytes().map(<[u8]>::len).unwrap_or(0);
        let algorithms = ec_algorithms(point_len);
        if algorithms.is_empty() {
            return Err(invalid(path, "unsupported EC curve (P-256 and P-384 only)"));
        }
        return Ok(raw(AlgorithmFamily::Ec, algorithms, key));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(bytes) {
        return Ok(raw(AlgorithmFamily::Ed, vec![Algorithm::EdDSA], key));
    }
    Err(invalid(
        path,
        "not an RSA, EC (P-256/P-384) or Ed25519 public key in PEM",
    ))
}

fn jwks_keys(path: &Path, bytes: &[u8]) -> Result<Vec<RawKey>, KeyError> {
    let set: Value =
        serde_json::from_slice(bytes).map_err(|e| invalid(path, format!("invalid JSON: {e}")))?;
    let Some(Value::Array(entries)) = set.get("keys") else {
        return Err(invalid(path, "expected an object with a `keys` array"));
    };
    let mut keys = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        match jwk_key(path, entry) {
            Ok(Some(key)) => keys.push(key),
            Ok(None) => {}
            Err(reason) => {
                tracing::warn!(source = %path.display(), index, %reason, "JWKS key ignored");
            }
        }
    }
    Ok(keys)
}

/// One JWKS entry; `Ok(None)` for keys not meant for signatures.
fn jwk_key(path: &Path, entry: &Value) -> Result<Option<RawKey>, String> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};

    let jwk: Jwk = serde_json::from_value(entry.clone()).map_err(|e| e.to_string())?;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return Ok(None);
    }
    let (family, mut algorithms) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => (
            AlgorithmFamily::Rsa,
            AlgorithmFamily::Rsa.algorithms().to_vec(),
        ),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => (AlgorithmFamily::Ec, vec![Algorithm::ES256]),
            EllipticCurve::P384 => (AlgorithmFamily::Ec, vec![Algorithm::ES384]),
            _ => return Err("unsupported EC curve".into()),
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => (AlgorithmFamily::Ed, vec![Algorithm::EdDSA]),
            _ => return Err("unsupported OKP curve".into()),
        },
        AlgorithmParameters::OctetKey(_) => (
            AlgorithmFamily::Hmac,
            AlgorithmFamily::Hmac.algorithms().to_vec(),
        ),
        _ => return Err("unsupported key type".into()),
    };
    // The key's own `alg`, when present, narrows what it may verify.
    if let Some(alg) = entry.get("alg") {
        let alg = alg
            .as_str()
            .and_then(|a| Algorithm::from_str(a).ok())
            .ok_or("unsupported `alg`")?;
        algorithms.retain(|a| *a == alg);
        if algorithms.is_empty() {
            return Err("`alg` does not match the key type".into());
        }
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
    Ok(Some(RawKey {
        source: path.to_path_buf(),
        kid: jwk.common.key_id.clone(),
        family,
        algorithms,
        key,
    }))
}

#[cfg(test)]
mod tests;
