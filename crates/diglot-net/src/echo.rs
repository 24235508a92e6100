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

/// How long the close frame of a failed connection may take to go out.
const CLOSE_SEND: Duration = Duration::from_secs(5);

/// Echoes messages until the peer closes, breaks the protocol, idles out, or the broker shuts
/// down.
pub(crate) async fn run(shared: &Shared, mut ws: WebSocket<HttpStream>) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let frame = tokio::select! {
            _ = shutdown.changed() => break,
            r = tokio::time::timeout(IDLE, ws.next_frame()) => match r {
                Ok(Ok(frame)) => frame,
                // A bad frame or message: yawc has queued the close frame with the code that
                // fits it (RFC 6455 §7.1.7: a failed connection SHOULD get one).
                Ok(Err(_)) => {
                    send_queued_close(&mut ws).await;
                    return;
                }
                Err(_) => break,
            },
        };
        let reply = match frame.opcode() {
            OpCode::Text => Frame::text(frame.into_payload()),
            OpCode::Binary => Frame::binary(frame.into_payload()),
            OpCode::Close => {
                // yawc queued the answer to the client's close (RFC 6455 §5.5.1).
                send_queued_close(&mut ws).await;
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

/// Sends the close frame yawc has queued (its answer to the peer's close, or the close of a
/// connection it failed): yawc holds it until told, so that frames the application still
/// sends go before it.
async fn send_queued_close(ws: &mut WebSocket<HttpStream>) {
    let _ = tokio::time::timeout(CLOSE_SEND, std::future::poll_fn(|cx| ws.poll_send_queued_close(cx))).await;
}
