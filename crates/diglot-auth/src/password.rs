//! argon2id password hashes: hashing for `diglot hash-password`, and verification of static
//! users' passwords.
//!
//! Verification is deliberately slow (about 60 ms at the default cost in a release build, much
//! more in a debug build): it is a blocking, CPU-bound call. Callers run it with
//! `tokio::task::spawn_blocking` behind a `tokio::sync::Semaphore` (a few permits, about the
//! number of cores) so that a burst of CONNECTs can neither stall the async workers nor spawn
//! an unbounded number of blocking threads. This module knows nothing of tokio.
//!
//! Only argon2id is accepted (RFC 9106 recommends it); argon2i and argon2d hashes are refused
//! at configuration time, as are other PHC algorithms.

use std::collections::HashMap;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, PasswordHash, PasswordHasher, PasswordVerifier, Salt, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::config::UserConfig;
use crate::{AuthError, Identity};

/// Hashes `password` with argon2id at the OWASP-recommended default cost (m = 19 MiB, t = 2,
/// p = 1) and a fresh random salt, returning the PHC string that goes into `password_hash`.
pub fn hash(password: &[u8]) -> Result<String, AuthError> {
    hash_with(password, Params::default())
}

fn hash_with(password: &[u8], params: Params) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// A cheap hash (m = 8 KiB, t = 1) so that tests stay fast. Never use it for real users.
#[cfg(test)]
pub(crate) fn hash_cheap(password: &[u8]) -> String {
    let params = Params::new(8, 1, 1, None).expect("valid argon2 test params");
    hash_with(password, params).expect("hashing with valid params")
}

/// Checks `password` against an argon2id PHC string, using the cost parameters recorded in the
/// string. Returns false for a wrong password and for a malformed hash. Blocking and CPU-heavy:
/// see the module documentation.
pub fn verify(password: &[u8], phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Checks that `phc` is a well-formed argon2id PHC string with usable parameters.
fn check_phc(phc: &str) -> Result<PasswordHash<'_>, String> {
    let parsed = PasswordHash::new(phc).map_err(|e| format!("not a PHC string ({e})"))?;
    if parsed.algorithm.as_str() != Algorithm::Argon2id.as_str() {
        return Err(format!("algorithm {} is not argon2id", parsed.algorithm));
    }
    Params::try_from(&parsed).map_err(|e| format!("bad argon2 parameters ({e})"))?;
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err("salt or hash missing".into());
    }
    Ok(parsed)
}

/// A stand-in hash with the same algorithm, version, cost and output length as `model`, so that
/// verifying an unknown user's password takes as long as verifying a known one's. No password
/// verifies against it (its output is all zeroes, which argon2 does not produce in practice,
/// and the result is thrown away in any case).
fn dummy_like(model: &PasswordHash<'_>) -> Result<String, String> {
    let len = model.hash.map_or(Params::DEFAULT_OUTPUT_LEN, |h| h.len());
    let zeroes = vec![0u8; len];
    let dummy = PasswordHash {
        algorithm: model.algorithm,
        version: model.version,
        params: model.params.clone(),
        salt: Some(Salt::from_b64("ZGlnbG90LWR1bW15LXNhbHQ").map_err(|e| e.to_string())?),
        hash: Some(Output::new(&zeroes).map_err(|e| e.to_string())?),
    };
    Ok(dummy.to_string())
}

struct User {
    phc: String,
    roles: Vec<String>,
}

/// The static users from `[auth] users`, ready to verify passwords.
pub struct Users {
    by_name: HashMap<String, User>,
    dummy: String,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hashes are not secret in the way passwords are, but they need not be in logs.
        f.debug_struct("Users").field("count", &self.by_name.len()).finish()
    }
}

impl Users {
    /// Checks every hash and refuses duplicate or empty usernames. The dummy hash used for
    /// unknown usernames copies the first user's cost parameters (or the default cost when
    /// there are no users).
    pub fn new(users: &[UserConfig]) -> Result<Users, AuthError> {
        let mut by_name = HashMap::with_capacity(users.len());
        let mut dummy = None;
        for (i, u) in users.iter().enumerate() {
            if u.username.is_empty() {
                return Err(AuthError::Config(format!("users[{i}]: empty username")));
            }
            let parsed = check_phc(&u.password_hash)
                .map_err(|e| AuthError::Config(format!("users[{i}] ({}): password_hash: {e}", u.username)))?;
            if dummy.is_none() {
                dummy = Some(dummy_like(&parsed).map_err(|e| AuthError::Config(format!("users[{i}]: {e}")))?);
            }
            let user = User { phc: u.password_hash.clone(), roles: u.roles.clone() };
            if by_name.insert(u.username.clone(), user).is_some() {
                return Err(AuthError::Config(format!("users[{i}]: duplicate username {:?}", u.username)));
            }
        }
        let dummy = match dummy {
            Some(d) => d,
            None => default_dummy().map_err(AuthError::Config)?,
        };
        Ok(Users { by_name, dummy })
    }

    /// Whether no users are configured.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Verifies a username and password. An unknown username costs one verification against
    /// the dummy hash, so the time taken does not tell whether the user exists; both failures
    /// are [`AuthError::BadCredentials`]. Blocking and CPU-heavy: see the module documentation.
    pub fn verify(&self, username: &str, password: &[u8]) -> Result<Identity, AuthError> {
        if self.by_name.is_empty() {
            // Nobody exists, so there is nothing for the timing to reveal.
            return Err(AuthError::BadCredentials);
        }
        match self.by_name.get(username) {
            Some(user) if verify(password, &user.phc) => {
                Ok(Identity { username: username.to_owned(), roles: user.roles.clone(), expires_at: None })
            }
            Some(_) => Err(AuthError::BadCredentials),
            None => {
                // Spend the same work as for a real user; the result is meaningless.
                let _ = verify(password, &self.dummy);
                Err(AuthError::BadCredentials)
            }
        }
    }
}

fn default_dummy() -> Result<String, String> {
    let params = Params::default();
    let model = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: (&params).try_into().map_err(|e: argon2::password_hash::Error| e.to_string())?,
        salt: None,
        hash: None,
    };
    dummy_like(&model)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, password: &str, roles: &[&str]) -> UserConfig {
        UserConfig {
            username: name.into(),
            password_hash: hash_cheap(password.as_bytes()),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn hash_then_verify() {
        let h = hash_cheap(b"correct horse");
        assert!(h.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{h}");
        assert!(verify(b"correct horse", &h));
        assert!(!verify(b"correct hors", &h));
        assert!(!verify(b"", &h));
        assert!(!verify(b"correct horse", "not a hash"));
        // Two hashes of one password differ (fresh salt) and both verify.
        let h2 = hash_cheap(b"correct horse");
        assert_ne!(h, h2);
        assert!(verify(b"correct horse", &h2));
    }

    #[test]
    fn default_cost_is_argon2id_owasp() {
        // Parse rather than compute: the default cost is slow in a debug build.
        let d = default_dummy().unwrap();
        assert!(d.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{d}");
        assert!(check_phc(&d).is_ok());
    }

    #[test]
    fn verifies_a_default_cost_hash_from_the_cli() {
        // `echo hunter2 | diglot hash-password`, kept as a known answer so that hashes already
        // written into configs keep verifying. One default-cost verification: slow-ish in a
        // debug build.
        let phc = "$argon2id$v=19$m=19456,t=2,p=1$jGHtHBUn7JyEtQL1oii8wA$+lwHQTI3zoAm/z/xA7QVI8OvbtAipF5E87Cx3dRxOc4";
        assert!(verify(b"hunter2", phc));
        assert!(check_phc(phc).is_ok());
    }

    #[test]
    fn users_verify() {
        let users = Users::new(&[user("alice", "wonder", &["admin"]), user("bob", "builder", &[])]).unwrap();
        let id = users.verify("alice", b"wonder").unwrap();
        assert_eq!(id.username, "alice");
        assert_eq!(id.roles, ["admin"]);
        assert_eq!(id.expires_at, None);
        assert!(matches!(users.verify("alice", b"builder"), Err(AuthError::BadCredentials)));
        assert!(matches!(users.verify("carol", b"wonder"), Err(AuthError::BadCredentials)));
        assert!(matches!(users.verify("Alice", b"wonder"), Err(AuthError::BadCredentials)));
        assert!(matches!(users.verify("", b""), Err(AuthError::BadCredentials)));
    }

    #[test]
    fn dummy_copies_the_cost_and_never_verifies() {
        let users = Users::new(&[user("alice", "wonder", &[])]).unwrap();
        assert!(users.dummy.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{}", users.dummy);
        assert!(check_phc(&users.dummy).is_ok());
        assert!(!verify(b"wonder", &users.dummy));
        assert!(!verify(b"", &users.dummy));
    }

    #[test]
    fn bad_user_config_is_refused() {
        let mut u = user("alice", "x", &[]);
        u.password_hash = "$2b$12$abcdefghijklmnopqrstuv".into();
        assert!(matches!(Users::new(&[u]), Err(AuthError::Config(_))));

        let mut u = user("alice", "x", &[]);
        u.password_hash = u.password_hash.replacen("argon2id", "argon2i", 1);
        let e = Users::new(&[u]).unwrap_err().to_string();
        assert!(e.contains("not argon2id"), "{e}");

        let mut u = user("alice", "x", &[]);
        u.password_hash = "$argon2id$v=19$m=8,t=1,p=1".into();
        assert!(matches!(Users::new(&[u]), Err(AuthError::Config(_))));

        let u = user("", "x", &[]);
        assert!(matches!(Users::new(&[u]), Err(AuthError::Config(_))));

        let e = Users::new(&[user("a", "x", &[]), user("a", "y", &[])]).unwrap_err().to_string();
        assert!(e.contains("duplicate"), "{e}");
    }

    #[test]
    fn no_users() {
        let users = Users::new(&[]).unwrap();
        assert!(users.is_empty());
        assert!(matches!(users.verify("alice", b"x"), Err(AuthError::BadCredentials)));
    }
}
