use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

use super::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn config() -> AuthConfig {
    AuthConfig {
        users: vec![UserConfig {
            username: "alice".into(),
            password_hash: password::hash_cheap(b"wonderland"),
            roles: vec!["admin".into()],
        }],
        jwt: Some(JwtConfig {
            hs256_secret: Some(SECRET.into()),
            cookie_name: Some("diglot_token".into()),
            ..JwtConfig::default()
        }),
        ..AuthConfig::default()
    }
}

fn token(sub: &str) -> String {
    let claims = json!({ "sub": sub, "exp": jsonwebtoken::get_current_timestamp() + 600, "roles": ["dev"] });
    encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

#[test]
fn classification() {
    let auth = Authenticator::new(&config()).unwrap();
    let c = |u: Option<&'static str>, p: Option<&'static [u8]>| auth.credentials(u, p);
    assert_eq!(c(None, None), Credentials::Anonymous);
    assert_eq!(c(Some(""), Some(b"")), Credentials::Anonymous);
    assert_eq!(c(Some("alice"), Some(b"pw")), Credentials::Password { username: "alice", password: b"pw" });
    assert_eq!(c(Some("alice"), None), Credentials::Password { username: "alice", password: b"" });
    assert_eq!(c(None, Some(b"a.b.c")), Credentials::Token("a.b.c"));
    assert_eq!(c(Some(""), Some(b"a.b.c")), Credentials::Token("a.b.c"));
    assert_eq!(c(Some("jwt"), Some(b"a.b.c")), Credentials::Token("a.b.c"));
    assert_eq!(c(Some("jwt"), Some(b"\xff")), Credentials::Malformed);
    assert_eq!(c(Some("jwt"), None), Credentials::Password { username: "jwt", password: b"" });
    assert!(c(Some("alice"), Some(b"pw")).is_blocking());
    assert!(!c(None, Some(b"t")).is_blocking());

    // Without [auth.jwt], "jwt" is an ordinary username and a bare password cannot succeed.
    let no_jwt = Authenticator::new(&AuthConfig { jwt: None, ..config() }).unwrap();
    assert_eq!(no_jwt.credentials(Some("jwt"), Some(b"x")), Credentials::Password { username: "jwt", password: b"x" });
    assert_eq!(no_jwt.credentials(None, Some(b"x")), Credentials::Malformed);
    assert!(matches!(no_jwt.verify_token("a.b.c"), Err(AuthError::JwtNotConfigured)));

    // A custom marker.
    let mut cfg = config();
    cfg.jwt.as_mut().unwrap().token_username = "bearer".into();
    let custom = Authenticator::new(&cfg).unwrap();
    assert_eq!(custom.credentials(Some("bearer"), Some(b"t")), Credentials::Token("t"));
    assert_eq!(custom.credentials(Some("jwt"), Some(b"t")), Credentials::Password { username: "jwt", password: b"t" });
}

#[test]
fn login_paths() {
    let auth = Authenticator::new(&config()).unwrap();
    assert!(auth.has_methods());
    assert_eq!(auth.login(&Credentials::Anonymous).unwrap(), None);

    let id = auth.login(&auth.credentials(Some("alice"), Some(b"wonderland"))).unwrap().unwrap();
    assert_eq!((id.username.as_str(), id.roles.as_slice()), ("alice", &["admin".to_string()][..]));
    for (u, p) in [("alice", &b"wrong"[..]), ("alice", b""), ("nobody", b"wonderland")] {
        let e = auth.login(&auth.credentials(Some(u), Some(p))).unwrap_err();
        assert!(matches!(e, AuthError::BadCredentials), "{u}: {e}");
        assert!(e.is_login_failure());
    }
    assert!(matches!(auth.login(&Credentials::Malformed), Err(AuthError::BadCredentials)));

    let t = token("bob");
    let id = auth.login(&auth.credentials(Some("jwt"), Some(t.as_bytes()))).unwrap().unwrap();
    assert_eq!(id.username, "bob");
    assert_eq!(id.roles, ["dev"]);
    assert!(id.expires_at.is_some());
    let e = auth.login(&auth.credentials(None, Some(b"not.a.token"))).unwrap_err();
    assert!(matches!(e, AuthError::TokenInvalid(_)));
    assert!(e.is_login_failure());
}

#[test]
fn handshake_token_uses_the_configured_cookie() {
    let auth = Authenticator::new(&config()).unwrap();
    assert_eq!(auth.cookie_name(), Some("diglot_token"));
    let t = token("carol");
    let cookie = format!("a=b; diglot_token={t}");
    let found = auth.token_from_request([("Cookie", cookie.as_str())], None).unwrap();
    assert_eq!(auth.verify_token(&found).unwrap().username, "carol");
}

#[test]
fn empty_config_has_no_methods() {
    let auth = Authenticator::new(&AuthConfig::default()).unwrap();
    assert!(!auth.has_methods());
    assert!(!AuthConfig::default().has_methods());
    assert!(matches!(auth.verify_password("alice", b"x"), Err(AuthError::BadCredentials)));
}

#[test]
fn config_errors_are_not_login_failures() {
    let mut cfg = config();
    cfg.users[0].password_hash = "plaintext".into();
    let e = Authenticator::new(&cfg).unwrap_err();
    assert!(matches!(e, AuthError::Config(_)));
    assert!(!e.is_login_failure());
    assert!(!e.to_string().contains("plaintext"), "the hash text is not echoed: {e}");
}

#[test]
fn identity_and_authenticator_are_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Authenticator>();
    assert_send_sync::<Acl>();
    assert_send_sync::<FailedLogins>();
    assert_send_sync::<Identity>();
}
