//! Test users and token settings shared by the suites that log in: alice (role admin in the
//! suites' configurations) and bob, and an HS256 secret for audience "diglot".

use std::sync::OnceLock;

/// The HS256 secret of the test brokers' `[auth.jwt]`.
pub const SECRET: &str = "0123456789abcdef0123456789abcdef";
/// The audience the test brokers require.
pub const AUDIENCE: &str = "diglot";
/// alice's password.
pub const ALICE_PW: &str = "alice-password";
/// bob's password.
pub const BOB_PW: &str = "bob-password";

/// argon2id hashes of alice's and bob's passwords, made once per test binary.
pub fn hashes() -> &'static (String, String) {
    static HASHES: OnceLock<(String, String)> = OnceLock::new();
    HASHES.get_or_init(|| {
        (
            diglot_auth::password::hash(ALICE_PW.as_bytes()).expect("hash"),
            diglot_auth::password::hash(BOB_PW.as_bytes()).expect("hash"),
        )
    })
}
