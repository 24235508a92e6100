//! CONNECT / STOMP: version negotiation, heart-beats, the client id, and the CONNECTED reply
//! (STOMP 1.2 "Connecting", "Protocol Negotiation", "Heart-beating").

use std::time::Instant;

use diglot_core::{Action, Output};

use super::fault::Fault;
use super::heartbeat::{self, Heartbeat};
use super::{Phase, Session};
use crate::codec::FrameWriter;
use crate::frame::{Command, Frame};
use crate::version::Version;

impl Session {
    /// Handles the first frame of the connection, which must be CONNECT or STOMP.
    pub(super) fn on_connect(
        &mut self,
        frame: &Frame,
        now: Instant,
        out: &mut Output,
        actions: &mut Vec<Action>,
    ) -> Result<(), Fault> {
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
                return Err(Fault::refused(
                    "client-id too long",
                    format!("client-id may be at most {} bytes.", self.limits.max_client_id_bytes),
                ));
            }
            Some(id) => Some(id.to_owned()),
        };
        // 1.1 and 1.2 require `host`, but WebSocket clients often omit it and this broker
        // serves one virtual host, so a missing or unknown host is accepted. `login` and
        // `passcode` are accepted and ignored until authentication arrives.

        let server = (self.config.heartbeat_send_ms, self.config.heartbeat_recv_ms);
        let (hb, announced) = if version >= Version::V1_1 {
            Heartbeat::negotiate(client_beats, server, self.config.heartbeat_grace, now)
        } else {
            (Heartbeat::off(now), (0, 0))
        };
        self.heartbeat = hb;
        self.version = Some(version);
        self.decoder.set_version(version);
        self.phase = Phase::Connected;
        if let Some(id) = &client_id {
            actions.push(Action::ClaimClientId(id.clone()));
        }
        self.client_id = client_id;
        tracing::debug!(conn = self.info.id, version = version.as_str(), "stomp connected");
        self.write_connected(version, announced, out);
        Ok(())
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
