//! The crate's one error type.
//!
//! Login failures are deliberately coarse towards the client: the protocol adapters should map
//! [`AuthError::BadCredentials`] and every token error to "bad user name or password" (MQTT 5
//! 0x86, MQTT 3.1.1 return code 4, a STOMP ERROR) and log the variant's text, which is safe to
//! log (it never contains a password or a token).

use std::path::PathBuf;

/// Why configuration, a login or a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The `[auth]` section is invalid; the text says where and why.
    #[error("invalid [auth] configuration: {0}")]
    Config(String),
    /// A key file named in the configuration could not be read.
    #[error("cannot read {path}: {source}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Unknown user or wrong password (the two are indistinguishable on purpose).
    #[error("bad username or password")]
    BadCredentials,
    /// A token was presented but `[auth.jwt]` is not configured.
    #[error("token authentication is not configured")]
    JwtNotConfigured,
    /// The token's `exp` has passed (beyond the leeway).
    #[error("token expired")]
    TokenExpired,
    /// The token's `nbf` is still in the future (beyond the leeway).
    #[error("token not yet valid")]
    TokenNotYetValid,
    /// The token's `iss` is missing or not the configured issuer.
    #[error("token has the wrong issuer")]
    TokenIssuer,
    /// The token's `aud` is missing or does not name the configured audience.
    #[error("token has the wrong audience")]
    TokenAudience,
    /// The token is malformed, badly signed, uses an algorithm with no configured key, or lacks
    /// a usable username claim.
    #[error("invalid token: {0}")]
    TokenInvalid(String),
    /// Hashing a password failed (CLI only).
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

impl AuthError {
    /// Whether this is a login failure to be counted by the failed-login limiter (as opposed to
    /// a configuration error).
    pub fn is_login_failure(&self) -> bool {
        !matches!(self, AuthError::Config(_) | AuthError::KeyFile { .. } | AuthError::Hash(_))
    }
}
