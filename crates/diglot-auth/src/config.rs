//! The `[auth]` section of `broker.toml`, as plain serde structs.
//!
//! ```toml
//! [auth]
//! # Static users. `password_hash` is an argon2id PHC string from `diglot hash-password`.
//! users = [
//!   { username = "alice", password_hash = "$argon2id$v=19$m=19456,t=2,p=1$...", roles = ["admin"] },
//! ]
//! # What happens to a client that no ACL rule governs: "allow" or "deny".
//! # Unset: "deny" when any `acl` rule is configured, "allow" when there are none.
//! default_acl = "deny"
//! # Failed logins allowed per source address (IPv4 address or IPv6 /64) per minute.
//! failed_login_limit = { per_minute = 10, max_addresses = 10000 }
//!
//! [auth.jwt]
//! hs256_secret = "at least 32 bytes of secret ......"
//! rs256_public_key_file = "/etc/diglot/jwt.pub.pem"
//! issuer = "https://login.example.com/"
//! audience = "diglot"
//! username_claim = "sub"
//! roles_claim = "roles"
//! leeway_secs = 30
//! token_username = "jwt"
//! cookie_name = "diglot_token"
//!
//! [[auth.acl]]
//! role = "admin"
//! publish = ["#"]
//! subscribe = ["#", "$SYS/#"]
//!
//! [[auth.acl]]
//! everyone = true
//! publish = ["users/%u/#", "clients/%c/#"]
//! subscribe = ["public/#", "users/%u/#"]
//! ```
//!
//! These structs only describe the file; [`crate::Authenticator::new`] and
//! [`crate::Acl::new`] check the values (hash format, filter syntax, secret length) and turn them
//! into something that can answer questions.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The `[auth]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Static users with argon2id password hashes.
    pub users: Vec<UserConfig>,
    /// JWT validation; absent means tokens are refused.
    pub jwt: Option<JwtConfig>,
    /// Topic ACL rules, checked in any order (they only ever allow; see [`crate::Acl`]).
    pub acl: Vec<AclRuleConfig>,
    /// What happens to a client that no rule governs. Unset: deny when any rule exists, else
    /// allow.
    pub default_acl: Option<DefaultAcl>,
    /// The per-source-address limit on failed logins.
    pub failed_login_limit: FailedLoginLimitConfig,
}

impl AuthConfig {
    /// Whether any authentication method is configured (static users or JWT). A listener on a
    /// non-loopback address must refuse to start when this is false, unless `allow_anonymous =
    /// true` is explicit.
    pub fn has_methods(&self) -> bool {
        !self.users.is_empty() || self.jwt.is_some()
    }

    /// The effective default: `default_acl` when set, else deny if any rule exists, else allow.
    pub fn effective_default_acl(&self) -> DefaultAcl {
        self.default_acl.unwrap_or(if self.acl.is_empty() { DefaultAcl::Allow } else { DefaultAcl::Deny })
    }
}

/// One static user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The MQTT username / STOMP login.
    pub username: String,
    /// An argon2id PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`).
    pub password_hash: String,
    /// Role names that ACL rules can refer to.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `[auth.jwt]`: how bearer tokens are validated. At least one key must be set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The HS256 shared secret (UTF-8 bytes, at least 32 of them, RFC 7518 §3.2).
    #[serde(default)]
    pub hs256_secret: Option<String>,
    /// A PEM file with the RS256 public key (`BEGIN PUBLIC KEY` or `BEGIN RSA PUBLIC KEY`).
    #[serde(default)]
    pub rs256_public_key_file: Option<PathBuf>,
    /// When set, the `iss` claim is required and must equal it.
    #[serde(default)]
    pub issuer: Option<String>,
    /// When set, the `aud` claim is required and must be (or contain) it. When unset, a token
    /// that carries an `aud` claim is refused (RFC 7519 §4.1.3).
    #[serde(default)]
    pub audience: Option<String>,
    /// The claim that holds the username; a dotted path reaches into objects.
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// The claim that holds the roles: an array of strings or one space-separated string; a
    /// dotted path (`realm_access.roles`) reaches into objects. A missing claim means no roles.
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway_secs")]
    pub leeway_secs: u64,
    /// The MQTT username / STOMP login that marks the password / passcode as a JWT. An empty or
    /// absent username does too.
    #[serde(default = "default_token_username")]
    pub token_username: String,
    /// The cookie that may carry the token at the WebSocket handshake; unset: cookies are not
    /// read.
    #[serde(default)]
    pub cookie_name: Option<String>,
}

fn default_username_claim() -> String {
    "sub".into()
}

fn default_roles_claim() -> String {
    "roles".into()
}

fn default_leeway_secs() -> u64 {
    30
}

fn default_token_username() -> String {
    "jwt".into()
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            hs256_secret: None,
            rs256_public_key_file: None,
            issuer: None,
            audience: None,
            username_claim: default_username_claim(),
            roles_claim: default_roles_claim(),
            leeway_secs: default_leeway_secs(),
            token_username: default_token_username(),
            cookie_name: None,
        }
    }
}

/// One `[[auth.acl]]` rule. Exactly one of `user`, `role` and `everyone = true` says whom it
/// governs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AclRuleConfig {
    /// The rule governs this username.
    pub user: Option<String>,
    /// The rule governs users holding this role.
    pub role: Option<String>,
    /// The rule governs every client, anonymous ones included.
    pub everyone: bool,
    /// Filter patterns the client may publish to (a topic must match one).
    pub publish: Vec<String>,
    /// Filter patterns the client may subscribe within (a filter must be covered by one).
    pub subscribe: Vec<String>,
}

/// `default_acl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultAcl {
    /// Clients no rule governs may publish and subscribe anywhere.
    Allow,
    /// Clients no rule governs may do nothing.
    Deny,
}

/// `failed_login_limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailedLoginLimitConfig {
    /// Failed logins per source address per minute (also the burst); 0 turns the limit off.
    pub per_minute: u32,
    /// How many source addresses are tracked at once; when it is reached, those that have
    /// refilled are forgotten, and then those that failed least recently until a sixteenth of
    /// the places is free.
    pub max_addresses: usize,
}

impl Default for FailedLoginLimitConfig {
    fn default() -> Self {
        FailedLoginLimitConfig { per_minute: 10, max_addresses: 10_000 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct File {
        auth: AuthConfig,
    }

    fn parse(s: &str) -> Result<AuthConfig, toml::de::Error> {
        toml::from_str::<File>(s).map(|f| f.auth)
    }

    #[test]
    fn empty_section_defaults() {
        let c = parse("[auth]\n").unwrap();
        assert_eq!(c, AuthConfig::default());
        assert!(!c.has_methods());
        assert_eq!(c.effective_default_acl(), DefaultAcl::Allow);
        assert_eq!(c.failed_login_limit, FailedLoginLimitConfig { per_minute: 10, max_addresses: 10_000 });
    }

    #[test]
    fn full_section() {
        let c = parse(
            r##"
[auth]
users = [{ username = "alice", password_hash = "$argon2id$x", roles = ["admin", "ops"] },
         { username = "bob", password_hash = "$argon2id$y" }]
default_acl = "allow"
failed_login_limit = { per_minute = 5 }
jwt = { hs256_secret = "s", issuer = "iss", audience = "aud", leeway_secs = 5 }

[[auth.acl]]
role = "admin"
publish = ["#"]

[[auth.acl]]
everyone = true
subscribe = ["public/#"]
"##,
        )
        .unwrap();
        assert!(c.has_methods());
        assert_eq!(c.users[0].roles, ["admin", "ops"]);
        assert!(c.users[1].roles.is_empty());
        assert_eq!(c.default_acl, Some(DefaultAcl::Allow));
        assert_eq!(c.effective_default_acl(), DefaultAcl::Allow);
        assert_eq!(c.failed_login_limit.per_minute, 5);
        assert_eq!(c.failed_login_limit.max_addresses, 10_000);
        let jwt = c.jwt.unwrap();
        assert_eq!(jwt.username_claim, "sub");
        assert_eq!(jwt.roles_claim, "roles");
        assert_eq!(jwt.token_username, "jwt");
        assert_eq!(jwt.leeway_secs, 5);
        assert_eq!(c.acl.len(), 2);
        assert_eq!(c.acl[0].role.as_deref(), Some("admin"));
        assert!(c.acl[1].everyone);
    }

    #[test]
    fn rules_make_the_default_deny() {
        let c = parse("[auth]\n[[auth.acl]]\nuser = \"a\"\npublish = [\"a/#\"]\n").unwrap();
        assert_eq!(c.effective_default_acl(), DefaultAcl::Deny);
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(parse("[auth]\nusers = [{ username = \"a\", password = \"x\", password_hash = \"h\" }]\n").is_err());
        assert!(parse("[auth]\nallow_everything = true\n").is_err());
        assert!(parse("[auth]\njwt = { secret = \"x\" }\n").is_err());
        assert!(parse("[auth]\n[[auth.acl]]\nuser = \"a\"\nread = [\"#\"]\n").is_err());
        assert!(parse("[auth]\nfailed_login_limit = { per_second = 1 }\n").is_err());
        assert!(parse("[auth]\ndefault_acl = \"maybe\"\n").is_err());
    }
}
