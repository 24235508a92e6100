//! CONNECT / STOMP: version negotiation, heart-beats, the client id, the login, and the
//! CONNECTED reply (STOMP 1.2 "Connecting", "Protocol Negotiation", "Heart-beating").
//!
//! A valid CONNECT does not get its CONNECTED at once: the session pushes [`Action::Login`]
//! with the `client-id` (or `""`), the `login` header as the username and the `passcode`
//! header as the password (an empty header counts as absent), and waits for
//! [`Adapter::on_login`](diglot_core::Adapter::on_login). Meanwhile nothing more is read and
//! the CONNECT deadline keeps running. A grant keeps the connection's permissions, claims the
//! client id ([`Action::ClaimClientId`]) and sends CONNECTED with the negotiated heart-beat. A
//! refusal is an ERROR (plus `receipt-id` if the CONNECT had a `receipt`) and a close with
//! [`CloseReason::ConnectRefused`](diglot_core::CloseReason::ConnectRefused); its `message`
//! says which refusal it was without saying whether the login exists:
//!
//! | Refusal | ERROR `message` |
//! |---|---|
//! | [`BadCredentials`](diglot_core::LoginRefusal::BadCredentials) | `bad credentials` |
//! | [`NotAuthorized`](diglot_core::LoginRefusal::NotAuthorized) (anonymous clients are not accepted on this listener) | `not authorized` |
//! | [`Unavailable`](diglot_core::LoginRefusal::Unavailable) | `authentication unavailable` |

use std::time::Instant;

use bytes::Bytes;
use diglot_core::{Action, Credentials, LoginOutcome, LoginRequest, Output};

use super::fault::Fault;
use super::heartbeat::{self, Heartbeat};
use super::{Phase, Session};
use crate::codec::FrameWriter;
use crate::frame::{Command, Frame};
use crate::version::Version;

/// What a CONNECT that waits for its login will answer once the login is granted (or, for
/// `receipt`, refused).
#[derive(Debug)]
pub(super) struct PendingConnect {
    /// The `client-id`, to claim.
    client_id: Option<String>,
    /// The negotiated heart-beat timer, from the time of CONNECT.
    heartbeat: Heartbeat,
    /// The heart-beat intervals CONNECTED announces.
    announced: (u64, u64),
    /// The CONNECT's `receipt`, for a refusal's `receipt-id`.
    receipt: Option<String>,
}

/// A header's value, with an empty one counted as absent.
fn non_empty<'f>(frame: &'f Frame, name: &str) -> Option<&'f str> {
    frame.header(name).filter(|v| !v.is_empty())
}

impl Session {
    /// Handles the first frame of the connection, which must be CONNECT or STOMP: validates
    /// it and asks for the login ([`Action::Login`]).
    pub(super) fn on_connect(&mut self, frame: &Frame, now: Instant, actions: &mut Vec<Action>) -> Result<(), Fault> {
        if !matches!(frame.command, Command::Connect | Command::Stomp) {
            return Err(Fault::protocol(
                "not connected",
                format!("The first frame must be CONNECT or STOMP, not {}.", frame.command),
            ));
        }
        // Over WebSocket the subprotocol (`v11.stomp`) already capped the version.
        let cap = self.info.subprotocol.as_deref().and_then(Version::from_subprotocol);
        let accept = frame.header("accept-version");
        let version = Version::negotiate(accept, cap).ok_or_else(|| Fault::no_common_version(accept, cap))?;
        let client_beats = if version >= Version::V1_1 {
            heartbeat::parse_header(frame.header("heart-beat")).ok_or_else(|| {
                Fault::protocol("invalid heart-beat header", "Expected heart-beat:<cx>,<cy> in milliseconds.")
            })?
        } else {
            (0, 0)
        };
        let client_id = match frame.header("client-id") {
            None | Some("") => None,
            Some(id) if id.len() > self.limits.max_client_id_bytes => {
                self.limits.breaches.hit(diglot_core::Limit::MaxClientIdBytes);
                return Err(Fault::refused(
                    "client-id too long",
                    format!("client-id may be at most {} bytes.", self.limits.max_client_id_bytes),
                ));
            }
            Some(id) => Some(id.to_owned()),
        };
        // 1.1 and 1.2 require `host`, but WebSocket clients often omit it and this broker
        // serves one virtual host, so a missing or unknown host is accepted.

        let server = (self.config.heartbeat_send_ms, self.config.heartbeat_recv_ms);
        let (heartbeat, announced) = if version >= Version::V1_1 {
            Heartbeat::negotiate(client_beats, server, self.config.heartbeat_grace, now)
        } else {
            (Heartbeat::off(now), (0, 0))
        };
        // The version is settled now: a refusal's ERROR is written in it too.
        self.version = Some(version);
        self.decoder.set_version(version);
        let credentials = Credentials {
            username: non_empty(frame, "login").map(str::to_owned),
            password: non_empty(frame, "passcode").map(|p| Bytes::copy_from_slice(p.as_bytes())),
            token: None,
        };
        actions.push(Action::Login(LoginRequest {
            client_id: client_id.clone().unwrap_or_default(),
            credentials,
            reauth: false,
        }));
        self.login = Some(PendingConnect {
            client_id,
            heartbeat,
            announced,
            receipt: frame.header("receipt").map(str::to_owned),
        });
        self.phase = Phase::AwaitingLogin;
        Ok(())
    }

    /// The answer to the CONNECT's [`Action::Login`]: CONNECTED on a grant, ERROR and close
    /// on a refusal. Ignored unless a login is awaited (STOMP has no re-authentication).
    pub(super) fn finish_login(&mut self, outcome: LoginOutcome, out: &mut Output, actions: &mut Vec<Action>) {
        if self.phase != Phase::AwaitingLogin {
            tracing::debug!(conn = self.info.id, "stomp: unexpected login outcome ignored");
            return;
        }
        let Some(pending) = self.login.take() else {
            // Not reachable: the phase is only entered together with `login`.
            self.fail(Fault::protocol("internal error", "No CONNECT awaits a login."), None, out, actions);
            return;
        };
        let grant = match outcome {
            LoginOutcome::Granted(grant) => grant,
            LoginOutcome::Refused(refusal) => {
                self.fail(Fault::login_refused(refusal), pending.receipt.as_deref(), out, actions);
                return;
            }
        };
        self.permissions = Some(grant.permissions);
        self.heartbeat = pending.heartbeat;
        self.phase = Phase::Connected;
        if let Some(id) = &pending.client_id {
            actions.push(Action::ClaimClientId(id.clone()));
        }
        self.client_id = pending.client_id;
        let version = self.wire_version();
        tracing::debug!(
            conn = self.info.id,
            version = version.as_str(),
            user = grant.username.as_deref().unwrap_or(""),
            "stomp connected"
        );
        self.write_connected(version, pending.announced, out);
    }

    fn write_connected(&mut self, version: Version, (send_ms, recv_ms): (u64, u64), out: &mut Output) {
        out.set_prefer_text(true);
        let session = format!("session-{}", self.info.id);
        let mut w = FrameWriter::begin(out.buf(), Command::Connected, version);
        w.header("version", version.as_str());
        if !self.config.server_name.is_empty() {
            w.header("server", &self.config.server_name);
        }
        w.header("session", &session);
        if version >= Version::V1_1 {
            w.header("heart-beat", &format!("{send_ms},{recv_ms}"));
        }
        w.finish(b"", false);
        out.end_frame();
    }
}
