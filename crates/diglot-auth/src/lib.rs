//! Diglot's authentication and authorization, sans-IO.
//!
//! - [`config`]: the `[auth]` section of `broker.toml`.
//! - [`Authenticator`]: turns what a client presented (MQTT username/password, STOMP
//!   login/passcode, a bearer token from the WebSocket handshake) into an [`Identity`], using
//!   static users with argon2id hashes ([`password`]) and JWTs ([`jwt`]).
//! - [`request`]: finds a bearer token in a handshake's headers, cookie or query string.
//! - [`Acl`]: may this identity publish to that topic, subscribe to that filter?
//! - [`FailedLogins`]: the per-source-address limit on failed logins.
//!
//! How a connection uses it:
//! 1. If `FailedLogins::is_blocked(peer_ip)`, refuse as a bad password without verifying.
//! 2. At the WebSocket handshake, `request::token_from_request`; if a token is found,
//!    `Authenticator::verify_token` (cheap, inline) and the connection is that identity,
//!    whatever CONNECT says later.
//! 3. At CONNECT, `Authenticator::credentials(username, password)` classifies; a
//!    [`Credentials::Password`] login is CPU-heavy (argon2, ~60 ms): run
//!    [`Authenticator::login`] in `spawn_blocking` behind a semaphore. A token login is cheap.
//!    [`Credentials::Anonymous`] is accepted or refused by the listener's `allow_anonymous`.
//! 4. On failure, `FailedLogins::record_failure(peer_ip)` when [`AuthError::is_login_failure`].
//! 5. With `Identity::expires_at` set, close the connection at that time (MQTT 5 DISCONNECT
//!    0x87, STOMP ERROR) unless MQTT 5 AUTH re-authentication brought a new token, which
//!    `verify_token` checks in turn (its username should equal the old one).
//! 6. Check each SUBSCRIBE and PUBLISH with [`Acl`].
//!
//! This crate opens no socket and spawns nothing; the only I/O is reading the RS256 public key
//! file in [`Authenticator::new`].

#![warn(missing_docs)]

pub mod acl;
pub mod config;
mod error;
mod identity;
pub mod jwt;
pub mod password;
pub mod ratelimit;
pub mod request;

pub use acl::Acl;
pub use config::{AclRuleConfig, AuthConfig, DefaultAcl, FailedLoginLimitConfig, JwtConfig, UserConfig};
pub use error::AuthError;
pub use identity::Identity;
pub use jwt::Jwt;
pub use password::Users;
pub use ratelimit::FailedLogins;

/// What a client presented at CONNECT, classified by [`Authenticator::credentials`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// No username and no password (both absent or empty).
    Anonymous,
    /// A static user's username and password; verifying it is CPU-heavy.
    Password {
        /// The username.
        username: &'a str,
        /// The password (empty when the client sent a username alone).
        password: &'a [u8],
    },
    /// A JWT sent as the password, with an empty username or the configured `token_username`.
    Token(&'a str),
    /// Credentials that cannot succeed (a password with no username and no JWT configured, or
    /// a token that is not UTF-8); a login failure without any work.
    Malformed,
}

impl Credentials<'_> {
    /// Whether [`Authenticator::login`] blocks on an argon2 verification for these.
    pub fn is_blocking(&self) -> bool {
        matches!(self, Credentials::Password { .. })
    }
}

/// Static users and JWT validation, compiled from `[auth]`. Share it behind an `Arc`; every
/// method takes `&self`.
#[derive(Debug)]
pub struct Authenticator {
    users: Users,
    jwt: Option<Jwt>,
    token_username: String,
    cookie_name: Option<String>,
}

impl Authenticator {
    /// Compiles `cfg`: checks every password hash, the JWT settings, and reads the RS256
    /// public key file. ACL rules are compiled separately by [`Acl::from_config`].
    pub fn new(cfg: &AuthConfig) -> Result<Authenticator, AuthError> {
        let users = Users::new(&cfg.users)?;
        let jwt = cfg.jwt.as_ref().map(Jwt::new).transpose()?;
        Ok(Authenticator::from_parts(users, jwt, cfg.jwt.as_ref()))
    }

    /// Assembles an authenticator from compiled parts; `jwt_cfg` supplies `token_username`
    /// and `cookie_name`.
    pub fn from_parts(users: Users, jwt: Option<Jwt>, jwt_cfg: Option<&JwtConfig>) -> Authenticator {
        let defaults = JwtConfig::default();
        let jwt_cfg = jwt_cfg.unwrap_or(&defaults);
        Authenticator {
            users,
            jwt,
            token_username: jwt_cfg.token_username.clone(),
            cookie_name: jwt_cfg.cookie_name.clone(),
        }
    }

    /// Whether any authentication method (static users or JWT) is configured.
    pub fn has_methods(&self) -> bool {
        !self.users.is_empty() || self.jwt.is_some()
    }

    /// Whether JWT validation is configured (`[auth.jwt]`).
    pub fn has_jwt(&self) -> bool {
        self.jwt.is_some()
    }

    /// The cookie that may carry a token at the WebSocket handshake (`jwt.cookie_name`).
    pub fn cookie_name(&self) -> Option<&str> {
        self.cookie_name.as_deref()
    }

    /// Finds a bearer token in a handshake request, reading the configured cookie; see
    /// [`request::token_from_request`].
    pub fn token_from_request<'a, I>(&self, headers: I, query: Option<&str>) -> Option<String>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        request::token_from_request(headers, query, self.cookie_name())
    }

    /// Classifies CONNECT credentials (MQTT username/password, STOMP login/passcode as bytes):
    /// - no username and no password (absent or empty): [`Credentials::Anonymous`];
    /// - with JWT configured, a non-empty password and a username that is absent, empty or
    ///   equal to `jwt.token_username`: [`Credentials::Token`];
    /// - a non-empty username: [`Credentials::Password`] (a missing password is empty);
    /// - anything else: [`Credentials::Malformed`].
    pub fn credentials<'a>(&self, username: Option<&'a str>, password: Option<&'a [u8]>) -> Credentials<'a> {
        let username = username.unwrap_or("");
        let password = password.unwrap_or(b"");
        let wants_token = username.is_empty() || username == self.token_username;
        match (username.is_empty(), password.is_empty()) {
            (true, true) => Credentials::Anonymous,
            (_, false) if wants_token && self.jwt.is_some() => match std::str::from_utf8(password) {
                Ok(token) => Credentials::Token(token),
                Err(_) => Credentials::Malformed,
            },
            (false, _) => Credentials::Password { username, password },
            (true, false) => Credentials::Malformed,
        }
    }

    /// Verifies credentials: `Ok(None)` for anonymous ones (the listener decides whether to
    /// accept them), `Ok(Some(identity))` for a good password or token. Blocking and CPU-heavy
    /// when [`Credentials::is_blocking`]: run it in `spawn_blocking` behind a semaphore.
    pub fn login(&self, credentials: &Credentials<'_>) -> Result<Option<Identity>, AuthError> {
        match *credentials {
            Credentials::Anonymous => Ok(None),
            Credentials::Password { username, password } => self.verify_password(username, password).map(Some),
            Credentials::Token(token) => self.verify_token(token).map(Some),
            Credentials::Malformed => Err(AuthError::BadCredentials),
        }
    }

    /// Verifies a static user's password (argon2id). An unknown username takes as long as a
    /// known one and fails the same way ([`AuthError::BadCredentials`]), so the answer does
    /// not reveal which usernames exist. Blocking and CPU-heavy (~60 ms in a release build):
    /// run it in `spawn_blocking` behind a semaphore.
    pub fn verify_password(&self, username: &str, password: &[u8]) -> Result<Identity, AuthError> {
        self.users.verify(username, password)
    }

    /// Validates a JWT (cheap; run it inline). [`AuthError::JwtNotConfigured`] without
    /// `[auth.jwt]`.
    pub fn verify_token(&self, token: &str) -> Result<Identity, AuthError> {
        self.jwt.as_ref().ok_or(AuthError::JwtNotConfigured)?.validate(token)
    }
}

#[cfg(test)]
mod tests;
