//! Authentication and authorization: the login at CONNECT, MQTT 5 re-authentication (§4.12),
//! and the permissions every PUBLISH, SUBSCRIBE and will is checked against.
//!
//! The session never checks a credential itself. A valid CONNECT pushes `Action::Login`
//! (`connect.rs`); [`Adapter::on_login`](diglot_core::Adapter::on_login) then either grants,
//! and the session keeps the grant's permissions and goes on opening the session, or refuses,
//! and the CONNECT is refused with the refusal's CONNACK code (`reason.rs`).
//!
//! Re-authentication (MQTT 5 only, §4.12.1): a client that connected with the Authentication
//! Method `JWT` may send AUTH with reason 0x19 (Re-authenticate) and the same method
//! [MQTT-4.12.1-1] at any time after CONNACK; its Authentication Data (empty if absent) goes
//! to the driver as the token of an `Action::Login` with `reauth`. A grant replaces the
//! permissions and is confirmed with AUTH 0x00 carrying the method; a refusal ends the
//! connection with DISCONNECT 0x87 [MQTT-4.12.1-2]. Until the answer, no further input is
//! read (the driver answers before it decodes the next frame); deliveries go on under the
//! previous grant, as §4.12.1 allows. Subscriptions made under the previous grant stay. AUTH
//! from a client that connected without an Authentication Method (§4.12), with another
//! method, without one, or with a reason other than 0x19 (0x18 Continue answers a challenge
//! this server never sends; 0x00 is the server's) is DISCONNECT 0x82 Protocol Error.
//!
//! Permissions: before a grant exists everything is denied. A PUBLISH is checked on its
//! real topic (after its Topic Alias is resolved; `$queue/<name>` as that topic); a denied
//! one is never routed nor ends the connection: MQTT 5 answers PUBACK/PUBREC 0x87 (which
//! ends a QoS 2 exchange), MQTT 3.x acknowledges it as usual so that the client does not
//! resend it [MQTT-3.3.5-2], and QoS 0 is dropped. Each SUBSCRIBE entry is checked on its
//! filter (a shared subscription on its inner filter, `$queue/<name>` on the filter
//! `$queue/<name>`); a denied entry gets SUBACK 0x80 (3.x) / 0x87 (5) and creates nothing.
//! A will whose topic is denied by the last grant is not published.

use bytes::Bytes;
use bytestring::ByteString;
use diglot_core::{
    Action, CloseReason, Credentials, Filter, LoginOutcome, LoginRequest, Output, Topic, JWT_AUTH_METHOD,
};

use super::{Phase, Session};
use crate::reason::{code, Refusal, Violation};

impl Session {
    /// The driver's answer to `Action::Login`.
    pub(super) fn login_done(&mut self, outcome: LoginOutcome, out: &mut Output, actions: &mut Vec<Action>) {
        match self.phase {
            Phase::Authenticating => match outcome {
                LoginOutcome::Granted(grant) => {
                    tracing::debug!(conn = self.info.id, client_id = ?self.client_id, username = ?grant.username, "MQTT login granted");
                    self.permissions = Some(grant.permissions);
                    self.open_session(actions);
                }
                LoginOutcome::Refused(r) => {
                    tracing::debug!(conn = self.info.id, client_id = ?self.client_id, refusal = ?r, "MQTT login refused");
                    self.refuse(Refusal::Login(r), out, actions);
                }
            },
            Phase::Connected if self.reauth_pending => {
                self.reauth_pending = false;
                match outcome {
                    LoginOutcome::Granted(grant) => {
                        tracing::debug!(conn = self.info.id, client_id = ?self.client_id, username = ?grant.username, "MQTT re-authentication granted");
                        self.permissions = Some(grant.permissions);
                        if let Some(wire) = self.wire.as_mut() {
                            wire.auth(code::SUCCESS, JWT_AUTH_METHOD, out);
                        }
                    }
                    // [MQTT-4.12.1-2] A failed re-authentication ends the connection.
                    LoginOutcome::Refused(r) => {
                        tracing::debug!(conn = self.info.id, client_id = ?self.client_id, refusal = ?r, "MQTT re-authentication refused");
                        let reason = CloseReason::NotAuthorized("re-authentication failed".into());
                        self.shut(reason, Some(code::NOT_AUTHORIZED), out, actions);
                    }
                }
            }
            // A late answer: the connection closed meanwhile (the CONNECT timer, a takeover),
            // or nothing was asked.
            _ => {}
        }
    }

    /// An AUTH packet from a connected client (MQTT 5).
    pub(super) fn on_auth(
        &mut self,
        reason: u8,
        method: Option<ByteString>,
        data: Option<Bytes>,
        out: &mut Output,
        actions: &mut Vec<Action>,
    ) {
        // §4.12 AUTH without an Authentication Method in CONNECT is a protocol error.
        if !self.jwt_auth {
            return self.fail(Violation::Protocol("AUTH without an authentication method at CONNECT"), out, actions);
        }
        // The server never asks to continue (0x18), and 0x00 is the server's to send.
        if reason != code::REAUTHENTICATE {
            return self.fail(Violation::Protocol("AUTH reason code other than re-authenticate"), out, actions);
        }
        // [MQTT-4.12.1-1] The method of the CONNECT, and one is required (§3.15.2.2.2).
        if method.as_deref() != Some(JWT_AUTH_METHOD) {
            return self.fail(
                Violation::Protocol("re-authentication with another authentication method"),
                out,
                actions,
            );
        }
        let Some(client_id) = self.client_id.clone() else { return };
        let credentials = Credentials { token: Some(data.unwrap_or_default()), ..Credentials::default() };
        actions.push(Action::Login(LoginRequest { client_id, credentials, reauth: true }));
        self.reauth_pending = true;
    }

    /// Whether the last grant allows publishing to `topic` (nothing before a grant).
    pub(super) fn may_publish(&self, topic: &Topic) -> bool {
        self.permissions.as_ref().is_some_and(|p| p.may_publish(topic))
    }

    /// Whether the last grant allows subscribing to `filter` (nothing before a grant).
    pub(super) fn may_subscribe(&self, filter: &Filter) -> bool {
        self.permissions.as_ref().is_some_and(|p| p.may_subscribe(filter))
    }
}
