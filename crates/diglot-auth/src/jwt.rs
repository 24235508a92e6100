//! JWT validation: HS256 and RS256 signatures, then `exp`, `nbf`, `iss` and `aud`.
//!
//! Rules, in order:
//! - The header's `alg` picks the key: `HS256` needs `hs256_secret`, `RS256` needs
//!   `rs256_public_key_file`. Every other algorithm (`none` included) is refused, and so is an
//!   algorithm whose key is not configured, so an RS256 public key can never be used as an HMAC
//!   secret (the classic algorithm-confusion attack).
//! - `exp` is required and must not have passed by more than `leeway_secs`; `nbf`, when
//!   present, must not be in the future by more than `leeway_secs`.
//! - With `issuer` set, `iss` is required and must equal it. With `audience` set, `aud` is
//!   required and must be it or an array containing it; with `audience` unset, a token that has
//!   an `aud` is refused (RFC 7519 §4.1.3: a recipient not named in `aud` must reject it).
//! - The username is the string at `username_claim` (non-empty); the roles are at
//!   `roles_claim` as an array of strings or a space-separated string (missing: no roles). A
//!   dotted claim name (`realm_access.roles`) reaches into objects when no top-level claim has
//!   that exact name.
//!
//! The signature is checked by jsonwebtoken on aws-lc-rs, the crypto provider that rustls uses
//! in Diglot too. Validation is cheap (microseconds): it runs inline, not in `spawn_blocking`.
//! This module does not fetch JWKS documents and does not issue tokens.

use std::time::{Duration, SystemTime};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::config::JwtConfig;
use crate::{AuthError, Identity};

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The shortest HS256 secret accepted: the hash output size, as RFC 7518 §3.2 requires.
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// A compiled `[auth.jwt]` section.
pub struct Jwt {
    hs256: Option<(DecodingKey, Validation)>,
    rs256: Option<(DecodingKey, Validation)>,
    username_claim: String,
    roles_claim: String,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt")
            .field("hs256", &self.hs256.is_some())
            .field("rs256", &self.rs256.is_some())
            .field("username_claim", &self.username_claim)
            .field("roles_claim", &self.roles_claim)
            .finish()
    }
}

impl Jwt {
    /// Compiles `cfg`, reading `rs256_public_key_file` from disk when it is set.
    pub fn new(cfg: &JwtConfig) -> Result<Jwt, AuthError> {
        let pem = match &cfg.rs256_public_key_file {
            Some(path) => {
                Some(std::fs::read(path).map_err(|source| AuthError::KeyFile { path: path.clone(), source })?)
            }
            None => None,
        };
        Jwt::with_rs256_pem(cfg, pem.as_deref())
    }

    /// Compiles `cfg` with the RS256 public key given as PEM bytes (`rs256_public_key_file` is
    /// ignored). For callers that read files themselves, and for tests.
    pub fn with_rs256_pem(cfg: &JwtConfig, rs256_pem: Option<&[u8]>) -> Result<Jwt, AuthError> {
        // Pin aws-lc-rs as jsonwebtoken's provider even if feature unification ever enables a
        // second backend. An `Err` means one is installed already, which is fine.
        let _ = jsonwebtoken::crypto::CryptoProvider::install_default(&jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER);

        let hs256 = match &cfg.hs256_secret {
            Some(s) if s.len() < MIN_HS256_SECRET_BYTES => {
                return Err(AuthError::Config(format!(
                    "jwt.hs256_secret is {} bytes; at least {MIN_HS256_SECRET_BYTES} are required",
                    s.len()
                )))
            }
            Some(s) => Some((DecodingKey::from_secret(s.as_bytes()), validation(cfg, Algorithm::HS256))),
            None => None,
        };
        let rs256 = match rs256_pem {
            Some(pem) => {
                let key = DecodingKey::from_rsa_pem(pem).map_err(|e| {
                    AuthError::Config(format!("jwt.rs256_public_key_file: not an RSA public key ({e})"))
                })?;
                Some((key, validation(cfg, Algorithm::RS256)))
            }
            None => None,
        };
        if hs256.is_none() && rs256.is_none() {
            return Err(AuthError::Config("jwt: set hs256_secret or rs256_public_key_file".into()));
        }
        for (name, v) in [("username_claim", &cfg.username_claim), ("roles_claim", &cfg.roles_claim)] {
            if v.is_empty() {
                return Err(AuthError::Config(format!("jwt.{name} is empty")));
            }
        }
        Ok(Jwt { hs256, rs256, username_claim: cfg.username_claim.clone(), roles_claim: cfg.roles_claim.clone() })
    }

    /// Validates `token` (signature, then claims) and returns who it names.
    pub fn validate(&self, token: &str) -> Result<Identity, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TokenInvalid("token too long".into()));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError::TokenInvalid(e.to_string()))?;
        let (key, validation) = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            Algorithm::RS256 => self.rs256.as_ref(),
            _ => None,
        }
        .ok_or_else(|| AuthError::TokenInvalid(format!("algorithm {:?} is not accepted", header.alg)))?;
        let data = jsonwebtoken::decode::<Value>(token, key, validation).map_err(map_error)?;
        let claims = data.claims;
        let username = match claim(&claims, &self.username_claim) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(AuthError::TokenInvalid(format!("no string claim {:?}", self.username_claim))),
        };
        let roles = match claim(&claims, &self.roles_claim) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| AuthError::TokenInvalid(format!("claim {:?} has a non-string", self.roles_claim)))?,
            Some(_) => return Err(AuthError::TokenInvalid(format!("claim {:?} is not a list", self.roles_claim))),
        };
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_f64)
            .and_then(|exp| Duration::try_from_secs_f64(exp).ok())
            .and_then(|d| SystemTime::UNIX_EPOCH.checked_add(d));
        Ok(Identity { username, roles, expires_at })
    }
}

fn validation(cfg: &JwtConfig, alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = cfg.leeway_secs;
    v.validate_exp = true;
    v.validate_nbf = true;
    v.validate_aud = true;
    let mut required = vec!["exp"];
    if let Some(iss) = &cfg.issuer {
        v.set_issuer(&[iss]);
        required.push("iss");
    }
    if let Some(aud) = &cfg.audience {
        v.set_audience(&[aud]);
        required.push("aud");
    }
    v.set_required_spec_claims(&required);
    v
}

fn map_error(e: jsonwebtoken::errors::Error) -> AuthError {
    match e.kind() {
        ErrorKind::ExpiredSignature => AuthError::TokenExpired,
        ErrorKind::ImmatureSignature => AuthError::TokenNotYetValid,
        ErrorKind::InvalidIssuer => AuthError::TokenIssuer,
        ErrorKind::InvalidAudience => AuthError::TokenAudience,
        ErrorKind::MissingRequiredClaim(c) if c == "iss" => AuthError::TokenIssuer,
        ErrorKind::MissingRequiredClaim(c) if c == "aud" => AuthError::TokenAudience,
        _ => AuthError::TokenInvalid(e.to_string()),
    }
}

/// The claim named `name`, or failing that the value at the dotted path `name`.
fn claim<'a>(claims: &'a Value, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    if !name.contains('.') {
        return None;
    }
    name.split('.').try_fold(claims, |v, part| v.get(part))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const RS_PRIVATE: &[u8] = include_bytes!("../tests/data/test-only-rs256-private.pem");
    const RS_PUBLIC: &[u8] = include_bytes!("../tests/data/test-only-rs256-public.pem");
    const OTHER_RS_PRIVATE: &[u8] = include_bytes!("../tests/data/test-only-other-rs256-private.pem");

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn cfg() -> JwtConfig {
        JwtConfig { hs256_secret: Some(SECRET.into()), ..JwtConfig::default() }
    }

    fn hs(claims: &Value) -> String {
        encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
    }

    fn rs(claims: &Value, private: &[u8]) -> String {
        encode(&Header::new(Algorithm::RS256), claims, &EncodingKey::from_rsa_pem(private).unwrap()).unwrap()
    }

    #[test]
    fn hs256_good_token() {
        let jwt = Jwt::new(&cfg()).unwrap();
        let exp = now() + 600;
        let id = jwt.validate(&hs(&json!({ "sub": "alice", "exp": exp, "roles": ["a", "b"] }))).unwrap();
        assert_eq!(id.username, "alice");
        assert_eq!(id.roles, ["a", "b"]);
        assert_eq!(id.expires_at, Some(SystemTime::UNIX_EPOCH + Duration::from_secs(exp)));
    }

    #[test]
    fn rs256_good_and_bad_tokens() {
        let c = JwtConfig { hs256_secret: None, ..cfg() };
        let jwt = Jwt::with_rs256_pem(&c, Some(RS_PUBLIC)).unwrap();
        let claims = json!({ "sub": "bob", "exp": now() + 600 });
        assert_eq!(jwt.validate(&rs(&claims, RS_PRIVATE)).unwrap().username, "bob");
        // Signed by another key.
        assert!(matches!(jwt.validate(&rs(&claims, OTHER_RS_PRIVATE)), Err(AuthError::TokenInvalid(_))));
        // HS256 is not configured, so an HS256 token is refused, even one keyed with the
        // public key's bytes (algorithm confusion).
        let confused = encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(RS_PUBLIC)).unwrap();
        assert!(matches!(jwt.validate(&confused), Err(AuthError::TokenInvalid(_))));
        // A tampered payload.
        let good = rs(&claims, RS_PRIVATE);
        let parts: Vec<&str> = good.split('.').collect();
        let other = rs(&json!({ "sub": "mallory", "exp": now() + 600 }), RS_PRIVATE);
        let forged = format!("{}.{}.{}", parts[0], other.split('.').nth(1).unwrap(), parts[2]);
        assert!(matches!(jwt.validate(&forged), Err(AuthError::TokenInvalid(_))));
    }

    #[test]
    fn rs256_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pub.pem");
        std::fs::write(&path, RS_PUBLIC).unwrap();
        let c = JwtConfig { hs256_secret: None, rs256_public_key_file: Some(path), ..cfg() };
        let jwt = Jwt::new(&c).unwrap();
        assert!(jwt.validate(&rs(&json!({ "sub": "x", "exp": now() + 60 }), RS_PRIVATE)).is_ok());

        let missing = JwtConfig { rs256_public_key_file: Some(dir.path().join("nope.pem")), ..cfg() };
        assert!(matches!(Jwt::new(&missing), Err(AuthError::KeyFile { .. })));
        let garbage = JwtConfig { hs256_secret: None, ..cfg() };
        assert!(matches!(Jwt::with_rs256_pem(&garbage, Some(b"not pem")), Err(AuthError::Config(_))));
    }

    #[test]
    fn both_algorithms_configured() {
        let jwt = Jwt::with_rs256_pem(&cfg(), Some(RS_PUBLIC)).unwrap();
        let claims = json!({ "sub": "x", "exp": now() + 60 });
        assert!(jwt.validate(&hs(&claims)).is_ok());
        assert!(jwt.validate(&rs(&claims, RS_PRIVATE)).is_ok());
        let hs384 =
            encode(&Header::new(Algorithm::HS384), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap();
        assert!(matches!(jwt.validate(&hs384), Err(AuthError::TokenInvalid(_))));
    }

    #[test]
    fn alg_none_is_refused() {
        let jwt = Jwt::new(&cfg()).unwrap();
        // {"alg":"none","typ":"JWT"} . {"sub":"x","exp":9999999999} . (empty)
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4IiwiZXhwIjo5OTk5OTk5OTk5fQ.";
        assert!(matches!(jwt.validate(none), Err(AuthError::TokenInvalid(_))));
    }

    #[test]
    fn time_claims() {
        let jwt = Jwt::new(&JwtConfig { leeway_secs: 30, ..cfg() }).unwrap();
        let t = now();
        let ok = |c: Value| jwt.validate(&hs(&c));
        assert!(matches!(ok(json!({ "sub": "x", "exp": t - 100 })), Err(AuthError::TokenExpired)));
        // Within the leeway.
        assert!(ok(json!({ "sub": "x", "exp": t - 10 })).is_ok());
        assert!(matches!(ok(json!({ "sub": "x", "exp": t + 600, "nbf": t + 100 })), Err(AuthError::TokenNotYetValid)));
        assert!(ok(json!({ "sub": "x", "exp": t + 600, "nbf": t + 10 })).is_ok());
        assert!(ok(json!({ "sub": "x", "exp": t + 600, "nbf": t - 10 })).is_ok());
        // exp is required.
        assert!(matches!(ok(json!({ "sub": "x" })), Err(AuthError::TokenInvalid(_))));
        assert!(matches!(ok(json!({ "sub": "x", "exp": "soon" })), Err(AuthError::TokenInvalid(_))));
    }

    #[test]
    fn issuer_and_audience() {
        let c = JwtConfig { issuer: Some("https://idp/".into()), audience: Some("diglot".into()), ..cfg() };
        let jwt = Jwt::new(&c).unwrap();
        let exp = now() + 600;
        let v = |c: Value| jwt.validate(&hs(&c));
        assert!(v(json!({ "sub": "x", "exp": exp, "iss": "https://idp/", "aud": "diglot" })).is_ok());
        assert!(v(json!({ "sub": "x", "exp": exp, "iss": "https://idp/", "aud": ["other", "diglot"] })).is_ok());
        assert!(matches!(
            v(json!({ "sub": "x", "exp": exp, "iss": "https://evil/", "aud": "diglot" })),
            Err(AuthError::TokenIssuer)
        ));
        assert!(matches!(v(json!({ "sub": "x", "exp": exp, "aud": "diglot" })), Err(AuthError::TokenIssuer)));
        assert!(matches!(
            v(json!({ "sub": "x", "exp": exp, "iss": "https://idp/", "aud": "other" })),
            Err(AuthError::TokenAudience)
        ));
        assert!(matches!(v(json!({ "sub": "x", "exp": exp, "iss": "https://idp/" })), Err(AuthError::TokenAudience)));

        // No audience configured: a token naming an audience is not for us.
        let jwt = Jwt::new(&cfg()).unwrap();
        assert!(matches!(
            jwt.validate(&hs(&json!({ "sub": "x", "exp": exp, "aud": "diglot" }))),
            Err(AuthError::TokenAudience)
        ));
        // No issuer configured: any iss is fine.
        assert!(jwt.validate(&hs(&json!({ "sub": "x", "exp": exp, "iss": "whoever" }))).is_ok());
    }

    #[test]
    fn claims_mapping() {
        let c = JwtConfig {
            username_claim: "preferred_username".into(),
            roles_claim: "realm_access.roles".into(),
            ..cfg()
        };
        let jwt = Jwt::new(&c).unwrap();
        let exp = now() + 600;
        let id = jwt
            .validate(&hs(&json!({ "sub": "uuid", "preferred_username": "carol", "exp": exp,
                                   "realm_access": { "roles": ["ops"] } })))
            .unwrap();
        assert_eq!((id.username.as_str(), id.roles.as_slice()), ("carol", &["ops".to_string()][..]));

        let jwt = Jwt::new(&JwtConfig { roles_claim: "scope".into(), ..cfg() }).unwrap();
        let id = jwt.validate(&hs(&json!({ "sub": "d", "exp": exp, "scope": "read  write" }))).unwrap();
        assert_eq!(id.roles, ["read", "write"]);
        let id = jwt.validate(&hs(&json!({ "sub": "d", "exp": exp }))).unwrap();
        assert!(id.roles.is_empty());
        assert!(matches!(
            jwt.validate(&hs(&json!({ "sub": "d", "exp": exp, "scope": 7 }))),
            Err(AuthError::TokenInvalid(_))
        ));
        assert!(matches!(
            jwt.validate(&hs(&json!({ "sub": "d", "exp": exp, "scope": ["a", 1] }))),
            Err(AuthError::TokenInvalid(_))
        ));
        // The username must be a non-empty string.
        for bad in [json!({ "exp": exp }), json!({ "sub": "", "exp": exp }), json!({ "sub": 5, "exp": exp })] {
            assert!(matches!(jwt.validate(&hs(&bad)), Err(AuthError::TokenInvalid(_))), "{bad}");
        }
    }

    #[test]
    fn malformed_tokens() {
        let jwt = Jwt::new(&cfg()).unwrap();
        for bad in ["", "abc", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9.!!!.x"] {
            assert!(matches!(jwt.validate(bad), Err(AuthError::TokenInvalid(_))), "{bad}");
        }
        assert!(matches!(jwt.validate(&"a".repeat(MAX_TOKEN_BYTES + 1)), Err(AuthError::TokenInvalid(_))));
        // Signed with another secret.
        let other = encode(
            &Header::new(Algorithm::HS256),
            &json!({ "sub": "x", "exp": now() + 60 }),
            &EncodingKey::from_secret(b"another secret that is long enough!!"),
        )
        .unwrap();
        assert!(matches!(jwt.validate(&other), Err(AuthError::TokenInvalid(_))));
    }

    #[test]
    fn bad_config() {
        assert!(matches!(Jwt::new(&JwtConfig::default()), Err(AuthError::Config(_))));
        let short = JwtConfig { hs256_secret: Some("short".into()), ..JwtConfig::default() };
        assert!(matches!(Jwt::new(&short), Err(AuthError::Config(_))));
        let empty_claim = JwtConfig { username_claim: String::new(), ..cfg() };
        assert!(matches!(Jwt::new(&empty_claim), Err(AuthError::Config(_))));
    }
}
