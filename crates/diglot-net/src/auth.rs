//! Authentication and authorization for connections: the broker-side half of
//! [`diglot_auth`], between the transport and the adapters.
//!
//! - At the WebSocket handshake, [`Auth::handshake`] verifies a bearer token (header, cookie or
//!   `token` query parameter); a valid one makes the connection that identity from the start.
//! - At CONNECT the adapter pushes `Action::Login`; the driver calls [`Auth::login`], which
//!   classifies the credentials, checks the failed-login limit, runs argon2 in `spawn_blocking`
//!   behind a semaphore (so a burst of logins cannot take every worker thread), and returns the
//!   connection's [`Permissions`] (its ACL, with `%u` and `%c` bound).
//! - A TLS client certificate's CN can stand for the username ([`cert_common_name`]).
//!
//! With no authentication method configured, credentials are not checked: every client is
//! anonymous, and the listener's `allow_anonymous` decides. Every refusal is counted, and the
//! counts appear on `$SYS/broker/auth/failures` and `$SYS/broker/acl/...`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use diglot_auth::{Acl, AuthConfig, AuthError, Authenticator, FailedLogins, Identity};
use diglot_core::{Filter, Grant, LoginOutcome, LoginRefusal, LoginRequest, Permissions, Topic};
use tokio::sync::Semaphore;

/// How long a login may wait for a verification slot and run, before the client is told the
/// server is unavailable.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Refusal counters, shared with every connection's [`Permissions`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Failed logins (bad credentials, refused anonymous clients, bad tokens at the handshake).
    pub(crate) failures: AtomicU64,
    /// Publishes an ACL refused.
    pub(crate) publish_denied: AtomicU64,
    /// Subscriptions an ACL refused.
    pub(crate) subscribe_denied: AtomicU64,
}

/// Why a WebSocket handshake's token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandshakeRefusal {
    /// The token is invalid, expired, not yet valid, or for someone else: HTTP 401.
    Unauthorized,
    /// This address failed too often: HTTP 429 with `Retry-After` (seconds).
    TooManyFailures(u64),
}

/// How a connection stands before its CONNECT, from its transport.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnAuth {
    /// Whether this listener accepts clients without credentials.
    pub(crate) anonymous_ok: bool,
    /// An identity the transport established (a handshake token, a client certificate): the
    /// connection is that identity whatever CONNECT says.
    pub(crate) identity: Option<Identity>,
}

/// A login's result for the driver: the adapter's answer, and the identity to remember (for
/// the expiry timer and re-authentication).
pub(crate) struct LoginResult {
    pub(crate) outcome: LoginOutcome,
    pub(crate) identity: Option<Identity>,
}

/// What `[auth]` compiles to; replaced as a whole by a reload.
struct AuthState {
    authenticator: Authenticator,
    acl: Acl,
    /// No ACL rule and `default_acl` allow: everything is allowed.
    open: bool,
}

impl AuthState {
    fn new(cfg: &AuthConfig) -> Result<AuthState, AuthError> {
        let authenticator = Authenticator::new(cfg)?;
        let acl = Acl::from_config(cfg)?;
        let open = cfg.acl.is_empty() && cfg.effective_default_acl() == diglot_auth::DefaultAcl::Allow;
        Ok(AuthState { authenticator, acl, open })
    }
}

/// Why an API request's credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApiRefusal {
    /// Bad or unknown credentials: 401.
    Unauthorized,
    /// This address failed too often: 429 with `Retry-After` seconds.
    TooManyFailures(u64),
    /// A password check could not run in time: 503.
    Unavailable,
}

/// The broker's authentication and ACLs.
pub(crate) struct Auth {
    /// Users, JWT settings and ACL rules; a reload swaps them, and every connection's
    /// permissions read the current rules.
    state: parking_lot::RwLock<Arc<AuthState>>,
    /// `state`'s `open`, read without the lock: every publish asks, and a shared read lock is
    /// a write to one cache line by every connection (4 % of the broker in a fan-in profile).
    open: AtomicBool,
    failed: parking_lot::Mutex<FailedLogins>,
    /// argon2 verifications at once.
    slots: Semaphore,
    pub(crate) counters: Arc<Counters>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.current();
        f.debug_struct("Auth").field("methods", &st.authenticator.has_methods()).field("open", &st.open).finish()
    }
}

impl Auth {
    /// Compiles `[auth]`: users, JWT settings (reading the RS256 key file) and ACL rules.
    pub(crate) fn new(cfg: &AuthConfig) -> Result<Auth, AuthError> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let state = AuthState::new(cfg)?;
        Ok(Auth {
            open: AtomicBool::new(state.open),
            state: parking_lot::RwLock::new(Arc::new(state)),
            failed: parking_lot::Mutex::new(FailedLogins::new(&cfg.failed_login_limit)),
            slots: Semaphore::new(cores.max(1)),
            counters: Arc::new(Counters::default()),
        })
    }

    /// Compiles a new `[auth]` and puts it in force for new logins and for every connection's
    /// ACL checks; on error nothing changes. The failed-login counts carry over.
    pub(crate) fn reload(&self, cfg: &AuthConfig) -> Result<(), AuthError> {
        let state = AuthState::new(cfg)?;
        let mut current = self.state.write();
        self.open.store(state.open, Ordering::Release);
        *current = Arc::new(state);
        Ok(())
    }

    fn current(&self) -> Arc<AuthState> {
        self.state.read().clone()
    }

    /// Whether any authentication method is configured.
    pub(crate) fn has_methods(&self) -> bool {
        self.current().authenticator.has_methods()
    }

    /// The permissions of `identity` with client id `client_id`.
    pub(crate) fn permissions(self: &Arc<Self>, identity: Option<&Identity>, client_id: &str) -> Arc<dyn Permissions> {
        Arc::new(AclPermissions { auth: self.clone(), identity: identity.cloned(), client_id: client_id.to_string() })
    }

    /// Authenticates an API request from its `Authorization` header (`Bearer <JWT>` or `Basic`
    /// for a static user); `Ok(None)` without one.
    pub(crate) async fn api_login(
        self: &Arc<Self>,
        header: Option<&str>,
        ip: IpAddr,
    ) -> Result<Option<Identity>, ApiRefusal> {
        let Some(header) = header else { return Ok(None) };
        if let Some(wait) = self.blocked(ip) {
            self.counters.failures.fetch_add(1, Ordering::Relaxed);
            return Err(ApiRefusal::TooManyFailures(wait.as_secs().max(1)));
        }
        let st = self.current();
        let (scheme, value) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        let verified = if scheme.eq_ignore_ascii_case("bearer") {
            st.authenticator.verify_token(value.trim())
        } else if scheme.eq_ignore_ascii_case("basic") {
            use base64::Engine as _;
            let decoded = base64::engine::general_purpose::STANDARD.decode(value.trim()).ok();
            let pair = decoded.as_deref().and_then(|d| std::str::from_utf8(d).ok()).and_then(|s| s.split_once(':'));
            match pair {
                Some((user, pass)) if !user.is_empty() => {
                    match self
                        .verify_blocking(Some(user.to_string()), Some(bytes::Bytes::copy_from_slice(pass.as_bytes())))
                        .await
                    {
                        Some(r) => r,
                        None => return Err(ApiRefusal::Unavailable),
                    }
                }
                _ => Err(AuthError::BadCredentials),
            }
        } else {
            Err(AuthError::BadCredentials)
        };
        match verified {
            Ok(identity) => Ok(Some(identity)),
            Err(e) => {
                self.failure(ip, &e, "API login");
                Err(ApiRefusal::Unauthorized)
            }
        }
    }

    fn blocked(&self, ip: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let failed = self.failed.lock();
        failed.is_blocked(ip, now).then(|| failed.retry_after(ip, now))
    }

    fn failure(&self, ip: IpAddr, e: &AuthError, what: &str) {
        self.counters.failures.fetch_add(1, Ordering::Relaxed);
        if e.is_login_failure() {
            self.failed.lock().record_failure(ip, Instant::now());
        }
        tracing::info!(peer = %ip, error = %e, "{what} refused");
    }

    /// Verifies a token presented at the WebSocket handshake, if there is one. `Ok(None)`: no
    /// token (or no JWT configured, so tokens mean nothing here).
    pub(crate) fn handshake<'a, I>(
        &self,
        headers: I,
        query: Option<&str>,
        ip: IpAddr,
    ) -> Result<Option<Identity>, HandshakeRefusal>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let st = self.current();
        if !st.authenticator.has_jwt() {
            return Ok(None);
        }
        let Some(token) = st.authenticator.token_from_request(headers, query) else { return Ok(None) };
        if let Some(wait) = self.blocked(ip) {
            self.counters.failures.fetch_add(1, Ordering::Relaxed);
            return Err(HandshakeRefusal::TooManyFailures(wait.as_secs().max(1)));
        }
        match st.authenticator.verify_token(&token) {
            Ok(identity) => Ok(Some(identity)),
            Err(e) => {
                self.failure(ip, &e, "handshake token");
                Err(HandshakeRefusal::Unauthorized)
            }
        }
    }

    /// Carries out a login (or an MQTT 5 re-authentication, where `current` is the identity in
    /// force) for a client at `ip`.
    pub(crate) async fn login(
        self: &Arc<Self>,
        req: &LoginRequest,
        ip: IpAddr,
        conn: &ConnAuth,
        current: Option<&Identity>,
    ) -> LoginResult {
        let refused = |r| LoginResult { outcome: LoginOutcome::Refused(r), identity: None };
        // An identity from the transport stands, unless this is a re-authentication.
        if let (Some(identity), false) = (&conn.identity, req.reauth) {
            return self.grant(Some(identity.clone()), &req.client_id);
        }
        let st = self.current();
        if !st.authenticator.has_methods() {
            // Nothing to check credentials against: the client is anonymous.
            if !conn.anonymous_ok || req.reauth {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                return refused(LoginRefusal::NotAuthorized);
            }
            return self.grant(None, &req.client_id);
        }
        let creds = &req.credentials;
        let verified = match &creds.token {
            Some(token) => match std::str::from_utf8(token) {
                Ok(token) if self.blocked(ip).is_none() => st.authenticator.verify_token(token).map(Some),
                Ok(_) => Err(AuthError::BadCredentials),
                Err(_) => Err(AuthError::TokenInvalid("not UTF-8".into())),
            },
            None => {
                let credentials = st.authenticator.credentials(creds.username.as_deref(), creds.password.as_deref());
                if credentials == diglot_auth::Credentials::Anonymous {
                    if conn.anonymous_ok && !req.reauth {
                        return self.grant(None, &req.client_id);
                    }
                    self.counters.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(peer = %ip, client_id = %req.client_id, "anonymous login refused");
                    return refused(LoginRefusal::NotAuthorized);
                }
                if self.blocked(ip).is_some() {
                    Err(AuthError::BadCredentials)
                } else if credentials.is_blocking() {
                    match self.verify_blocking(creds.username.clone(), creds.password.clone()).await {
                        Some(r) => r.map(Some),
                        None => return refused(LoginRefusal::Unavailable),
                    }
                } else {
                    st.authenticator.login(&credentials)
                }
            }
        };
        match verified {
            Ok(Some(identity)) => {
                if let Some(old) = current.filter(|_| req.reauth) {
                    if old.username != identity.username {
                        let e = AuthError::TokenInvalid("re-authentication changed the username".into());
                        self.failure(ip, &e, "re-authentication");
                        return refused(LoginRefusal::NotAuthorized);
                    }
                }
                self.grant(Some(identity), &req.client_id)
            }
            Ok(None) => self.grant(None, &req.client_id),
            Err(e) => {
                self.failure(ip, &e, if req.reauth { "re-authentication" } else { "login" });
                refused(LoginRefusal::BadCredentials)
            }
        }
    }

    /// argon2 off the reactor, at most one per core at once; `None` when it timed out.
    async fn verify_blocking(
        self: &Arc<Self>,
        username: Option<String>,
        password: Option<bytes::Bytes>,
    ) -> Option<Result<Identity, AuthError>> {
        let this = self.clone();
        let work = async move {
            let _slot = this.slots.acquire().await.ok()?;
            let that = this.clone();
            tokio::task::spawn_blocking(move || {
                let username = username.unwrap_or_default();
                that.current().authenticator.verify_password(&username, password.as_deref().unwrap_or(b""))
            })
            .await
            .ok()
        };
        match tokio::time::timeout(LOGIN_TIMEOUT, work).await {
            Ok(Some(r)) => Some(r),
            _ => {
                tracing::warn!("password verification timed out or failed; answering server unavailable");
                None
            }
        }
    }

    fn grant(self: &Arc<Self>, identity: Option<Identity>, client_id: &str) -> LoginResult {
        let permissions = self.permissions(identity.as_ref(), client_id);
        let username = identity.as_ref().map(|i| i.username.clone());
        LoginResult { outcome: LoginOutcome::Granted(Grant { username, permissions }), identity }
    }
}

/// When the identity's credentials expire, as a deadline on the monotonic clock.
pub(crate) fn deadline(identity: Option<&Identity>) -> Option<Instant> {
    let left = identity?.expires_in(SystemTime::now())?;
    Some(Instant::now() + left)
}

/// One connection's ACL, with its username and client id bound; it reads the rules in force
/// at each check, so a reload applies to open connections too.
#[derive(Debug)]
struct AclPermissions {
    auth: Arc<Auth>,
    identity: Option<Identity>,
    client_id: String,
}

impl Permissions for AclPermissions {
    fn may_publish(&self, topic: &Topic) -> bool {
        // A reply to a `/temp-queue/` (`$temp/<unguessable session token>/...`) goes only to the
        // session that handed out the address: the owner asked for it, so no rule is needed.
        if topic.as_str().starts_with("$temp/") {
            return true;
        }
        if self.auth.open.load(Ordering::Acquire) {
            return true;
        }
        let st = self.auth.state.read();
        let ok = st.open || st.acl.allows_publish(self.identity.as_ref(), &self.client_id, topic);
        if !ok {
            self.auth.counters.publish_denied.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(client_id = %self.client_id, %topic, "publish denied by ACL");
        }
        ok
    }

    fn may_subscribe(&self, filter: &Filter) -> bool {
        if self.auth.open.load(Ordering::Acquire) {
            return true;
        }
        let st = self.auth.state.read();
        let ok = st.open || st.acl.allows_subscribe(self.identity.as_ref(), &self.client_id, filter);
        if !ok {
            self.auth.counters.subscribe_denied.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(client_id = %self.client_id, %filter, "subscribe denied by ACL");
        }
        ok
    }
}

/// The first Common Name of a certificate's subject (DER), if it has one that is UTF-8.
pub(crate) fn cert_common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    let name = cn.as_str().ok()?;
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection's permissions follow a reload both ways between "no rule, allow" (checked
    /// without the lock) and rules that deny.
    #[test]
    fn a_reload_that_adds_or_drops_every_rule_applies_to_open_connections() {
        let open = AuthConfig::default();
        let closed = AuthConfig { default_acl: Some(diglot_auth::DefaultAcl::Deny), ..AuthConfig::default() };
        let auth = Arc::new(Auth::new(&open).unwrap());
        let p = auth.permissions(None, "c");
        let (topic, filter) = (Topic::new("a/b").unwrap(), Filter::new("a/#").unwrap());
        assert!(p.may_publish(&topic) && p.may_subscribe(&filter));
        auth.reload(&closed).unwrap();
        assert!(!p.may_publish(&topic) && !p.may_subscribe(&filter));
        auth.reload(&open).unwrap();
        assert!(p.may_publish(&topic) && p.may_subscribe(&filter));
    }
}
