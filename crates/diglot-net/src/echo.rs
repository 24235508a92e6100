//! The optional echo path: a WebSocket endpoint that sends every text and binary message back
//! unchanged, so that WebSocket conformance suites (Autobahn|Testsuite) can exercise exactly the
//! WebSocket stack, options and limits that MQTT and STOMP clients get.
//!
//! It is off unless `listeners.ws.echo_path` is set, holds a connection permit like any other
//! connection, and closes after a minute without traffic.

use std::time::Duration;

use futures::SinkExt;
use yawc::{Frame, HttpStream, OpCode, WebSocket};

use crate::server::Shared;

/// How long an echo connection may stay silent.
const IDLE: Duration = Duration::from_secs(60);

/// Echoes messages until the peer closes, breaks the protocol, idles out, or the broker shuts
/// down.
pub(crate) async fn run(shared: &Shared, mut ws: WebSocket<HttpStream>) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let frame = tokio::select! {
            _ = shutdown.changed() => break,
            r = tokio::time::timeout(IDLE, ws.next_frame()) => match r {
                Ok(Ok(frame)) => frame,
                // yawc has already answered a protocol error with the right close code.
                Ok(Err(_)) => return,
                Err(_) => break,
            },
        };
        let reply = match frame.opcode() {
            OpCode::Text => Frame::text(frame.into_payload()),
            OpCode::Binary => Frame::binary(frame.into_payload()),
            OpCode::Close => {
                // yawc queued the close reply; flush it.
                let _ = ws.flush().await;
                return;
            }
            _ => continue,
        };
        if ws.send(reply).await.is_err() {
            return;
        }
    }
    let _ = ws.send(Frame::close(yawc::close::CloseCode::Away, "server shutting down")).await;
}
