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
use std::sync::atomic::{AtomicU64, Ordering};
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

/// The broker's authentication and ACLs.
pub(crate) struct Auth {
    authenticator: Authenticator,
    acl: Arc<Acl>,
    /// No ACL rule and `default_acl` allow: every connection gets [`diglot_core::AllowAll`].
    open: bool,
    failed: parking_lot::Mutex<FailedLogins>,
    /// argon2 verifications at once.
    slots: Semaphore,
    pub(crate) counters: Arc<Counters>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("methods", &self.authenticator.has_methods()).field("open", &self.open).finish()
    }
}

impl Auth {
    /// Compiles `[auth]`: users, JWT settings (reading the RS256 key file) and ACL rules.
    pub(crate) fn new(cfg: &AuthConfig) -> Result<Auth, AuthError> {
        let authenticator = Authenticator::new(cfg)?;
        let acl = Acl::from_config(cfg)?;
        let open = cfg.acl.is_empty() && cfg.effective_default_acl() == diglot_auth::DefaultAcl::Allow;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Auth {
            authenticator,
            acl: Arc::new(acl),
            open,
            failed: parking_lot::Mutex::new(FailedLogins::new(&cfg.failed_login_limit)),
            slots: Semaphore::new(cores.max(1)),
            counters: Arc::new(Counters::default()),
        })
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
        if !self.authenticator.has_jwt() {
            return Ok(None);
        }
        let Some(token) = self.authenticator.token_from_request(headers, query) else { return Ok(None) };
        if let Some(wait) = self.blocked(ip) {
            self.counters.failures.fetch_add(1, Ordering::Relaxed);
            return Err(HandshakeRefusal::TooManyFailures(wait.as_secs().max(1)));
        }
        match self.authenticator.verify_token(&token) {
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
        if !self.authenticator.has_methods() {
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
                Ok(token) if self.blocked(ip).is_none() => self.authenticator.verify_token(token).map(Some),
                Ok(_) => Err(AuthError::BadCredentials),
                Err(_) => Err(AuthError::TokenInvalid("not UTF-8".into())),
            },
            None => {
                let credentials = self.authenticator.credentials(creds.username.as_deref(), creds.password.as_deref());
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
                    self.authenticator.login(&credentials)
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
                that.authenticator.verify_password(&username, password.as_deref().unwrap_or(b""))
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

    fn grant(&self, identity: Option<Identity>, client_id: &str) -> LoginResult {
        let permissions: Arc<dyn Permissions> = if self.open {
            Arc::new(diglot_core::AllowAll)
        } else {
            Arc::new(AclPermissions {
                acl: self.acl.clone(),
                identity: identity.clone(),
                client_id: client_id.to_string(),
                counters: self.counters.clone(),
            })
        };
        let username = identity.as_ref().map(|i| i.username.clone());
        LoginResult { outcome: LoginOutcome::Granted(Grant { username, permissions }), identity }
    }
}

/// When the identity's credentials expire, as a deadline on the monotonic clock.
pub(crate) fn deadline(identity: Option<&Identity>) -> Option<Instant> {
    let left = identity?.expires_in(SystemTime::now())?;
    Some(Instant::now() + left)
}

/// One connection's ACL, with its username and client id bound.
#[derive(Debug)]
struct AclPermissions {
    acl: Arc<Acl>,
    identity: Option<Identity>,
    client_id: String,
    counters: Arc<Counters>,
}

impl Permissions for AclPermissions {
    fn may_publish(&self, topic: &Topic) -> bool {
        // A reply to a `/temp-queue/` (`$temp/<unguessable session token>/...`) goes only to the
        // session that handed out the address: the owner asked for it, so no rule is needed.
        if topic.as_str().starts_with("$temp/") {
            return true;
        }
        let ok = self.acl.allows_publish(self.identity.as_ref(), &self.client_id, topic);
        if !ok {
            self.counters.publish_denied.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(client_id = %self.client_id, %topic, "publish denied by ACL");
        }
        ok
    }

    fn may_subscribe(&self, filter: &Filter) -> bool {
        let ok = self.acl.allows_subscribe(self.identity.as_ref(), &self.client_id, filter);
        if !ok {
            self.counters.subscribe_denied.fetch_add(1, Ordering::Relaxed);
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
