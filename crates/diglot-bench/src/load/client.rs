//! One load-generator client, whatever it speaks: MQTT 3.1.1, STOMP 1.2, or raw WebSocket
//! messages (for the relay), over TCP or WebSocket. [`Client::connect`] does the protocol
//! handshake; the client then splits into a [`Tx`] that batches publishes and a [`Rx`] that
//! turns incoming frames into [`Event`]s, so that a publisher can read its acks in another task.
//!
//! Destinations are plain names (`bench-fanin-…`): MQTT uses the name as the topic, STOMP
//! prefixes `/topic/` or `/queue/`, and the relay uses it as the room (the URL path).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::{Bytes, BytesMut};

use super::transport::{self, Reader, SocketOpts, Writer};
use super::{mqtt, stomp};

/// What a client speaks on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// MQTT 3.1.1.
    Mqtt,
    /// STOMP 1.2.
    Stomp,
    /// Raw WebSocket messages: the relay's rooms.
    Raw,
}

impl Proto {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Mqtt => "mqtt",
            Proto::Stomp => "stomp",
            Proto::Raw => "raw",
        }
    }
}

/// Where a target listens, parsed from a URL such as `mqtt+ws://127.0.0.1:8080/ws`,
/// `mqtt://127.0.0.1:1883`, `stomp+ws://…/ws`, `stomp://127.0.0.1:61613` or `ws://…` (the relay).
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The protocol.
    pub proto: Proto,
    /// WebSocket (true) or raw TCP.
    pub ws: bool,
    /// The resolved socket address.
    pub addr: SocketAddr,
    /// `host:port` as written.
    pub authority: String,
    /// The WebSocket path (`/` if none).
    pub path: String,
}

impl Endpoint {
    /// Parses and resolves a target URL.
    pub async fn parse(url: &str) -> anyhow::Result<Endpoint> {
        let (scheme, rest) = url.split_once("://").with_context(|| format!("{url}: no scheme"))?;
        let (proto, ws) = match scheme {
            "mqtt" | "mqtt+tcp" | "tcp" => (Proto::Mqtt, false),
            "mqtt+ws" => (Proto::Mqtt, true),
            "stomp" | "stomp+tcp" => (Proto::Stomp, false),
            "stomp+ws" => (Proto::Stomp, true),
            "ws" | "raw+ws" => (Proto::Raw, true),
            other => bail!("{url}: unknown scheme {other:?} (mqtt, mqtt+ws, stomp, stomp+ws, ws)"),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = tokio::net::lookup_host(authority)
            .await
            .with_context(|| format!("{url}: cannot resolve {authority}"))?
            .next()
            .with_context(|| format!("{url}: {authority} resolves to nothing"))?;
        Ok(Endpoint { proto, ws, addr, authority: authority.to_string(), path: path.to_string() })
    }

    /// `ws` or `tcp`, for reports.
    pub fn transport(&self) -> &'static str {
        if self.ws {
            "ws"
        } else {
            "tcp"
        }
    }
}

/// Credentials and STOMP's virtual host.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// STOMP `host` header (RabbitMQ wants its vhost, `/`); default: the target's host.
    pub stomp_host: Option<String>,
    /// STOMP `login` / MQTT username.
    pub login: Option<String>,
    /// STOMP `passcode` / MQTT password.
    pub passcode: Option<String>,
}

/// How one client connects.
#[derive(Debug, Clone)]
pub struct Spec {
    /// MQTT client id (STOMP ignores it).
    pub client_id: String,
    /// MQTT clean session.
    pub clean: bool,
    /// MQTT keep-alive in seconds.
    pub keep_alive: u16,
    /// The relay room (the URL path) and whether this client only sends (`?send-only`).
    pub room: String,
    /// Relay only: this client never receives.
    pub send_only: bool,
    /// Socket options.
    pub socket: SocketOpts,
}

impl Spec {
    /// A clean client with keep-alive 60 in `room`.
    pub fn new(client_id: String, room: &str) -> Spec {
        Spec {
            client_id,
            clean: true,
            keep_alive: 60,
            room: room.to_string(),
            send_only: false,
            socket: SocketOpts::default(),
        }
    }
}

/// What a client reads.
#[derive(Debug)]
pub enum Event {
    /// A delivered message, and what to acknowledge it with (QoS 1 / STOMP client acks).
    Message {
        /// The payload.
        payload: Bytes,
        /// The acknowledgement to send, if the delivery needs one.
        ack: Option<Ack>,
    },
    /// A publish was acknowledged (MQTT PUBACK, STOMP RECEIPT of a SEND).
    Acked,
    /// The subscription is in place (SUBACK, or the SUBSCRIBE's RECEIPT).
    Subscribed,
    /// CONNACK (accepted) or CONNECTED.
    Connected,
    /// The broker acknowledged DISCONNECT, or closed the connection.
    Closed,
    /// MQTT PINGRESP.
    Pong,
}

/// How to acknowledge one delivery.
#[derive(Debug, Clone)]
pub enum Ack {
    /// MQTT PUBACK with this packet id.
    Mqtt(u16),
    /// STOMP ACK with this id.
    Stomp(Bytes),
}

/// A connected client.
pub struct Client {
    /// The sending half.
    pub tx: Tx,
    /// The receiving half.
    pub rx: Rx,
}

impl Client {
    /// Opens the transport and completes the protocol handshake (CONNECT/CONNACK,
    /// CONNECT/CONNECTED; nothing for the relay).
    pub async fn connect(ep: &Endpoint, auth: &Auth, spec: &Spec) -> anyhow::Result<Client> {
        let (reader, writer) = if ep.ws {
            let (url, subprotocol) = match ep.proto {
                Proto::Mqtt => (format!("ws://{}{}", ep.authority, ep.path), Some("mqtt")),
                Proto::Stomp => (format!("ws://{}{}", ep.authority, ep.path), Some("v12.stomp")),
                Proto::Raw => {
                    let query = if spec.send_only { "?send-only" } else { "" };
                    (format!("ws://{}{}/{}{query}", ep.authority, ep.path.trim_end_matches('/'), spec.room), None)
                }
            };
            transport::websocket(ep.addr, &url, subprotocol, ep.proto == Proto::Stomp, &spec.socket).await?
        } else {
            transport::split_tcp(transport::tcp(ep.addr, &spec.socket).await?)
        };
        let mut client = Client {
            tx: Tx { proto: ep.proto, writer, scratch: BytesMut::with_capacity(4096), next_id: 0, dest: String::new() },
            rx: Rx {
                proto: ep.proto,
                reader,
                buf: BytesMut::new(),
                stash: VecDeque::new(),
                stomp_acks: false,
                counted: 0,
                keep_payloads: true,
            },
        };
        let login = auth.login.as_deref().map(|l| (l, auth.passcode.as_deref().unwrap_or("")));
        match ep.proto {
            Proto::Raw => return Ok(client),
            Proto::Mqtt => mqtt::connect(&mut client.tx.scratch, &spec.client_id, spec.clean, spec.keep_alive, login),
            Proto::Stomp => {
                let host = auth.stomp_host.clone().unwrap_or_else(|| ep.addr.ip().to_string());
                let mut headers = vec![("accept-version", "1.2"), ("host", host.as_str()), ("heart-beat", "0,0")];
                if let Some((l, p)) = login {
                    headers.extend([("login", l), ("passcode", p)]);
                }
                stomp::frame(&mut client.tx.scratch, "CONNECT", &headers, b"");
            }
        }
        client.tx.send_scratch().await?;
        client.tx.flush().await?;
        client.wait(|e| matches!(e, Event::Connected), "the CONNACK/CONNECTED").await?;
        Ok(client)
    }

    /// Subscribes to the topic `name` (or, with `queue`, to STOMP `/queue/name`; MQTT has no
    /// queues here, its durable case is a persistent session) and waits until the broker
    /// confirms. `qos` 1 asks for acknowledged delivery (STOMP `client-individual`, with
    /// `prefetch` deliveries in flight).
    pub async fn subscribe(&mut self, name: &str, qos: u8, queue: bool, prefetch: u32) -> anyhow::Result<()> {
        let tx = &mut self.tx;
        match tx.proto {
            Proto::Raw => return Ok(()),
            Proto::Mqtt => mqtt::subscribe(&mut tx.scratch, 1, name, qos),
            Proto::Stomp => {
                let dest = format!("/{}/{name}", if queue { "queue" } else { "topic" });
                let prefetch = prefetch.to_string();
                let ack = if qos > 0 { "client-individual" } else { "auto" };
                let mut headers = vec![("id", "0"), ("destination", dest.as_str()), ("ack", ack), ("receipt", "sub")];
                if qos > 0 {
                    headers.push(("prefetch-count", prefetch.as_str()));
                    self.rx.stomp_acks = true;
                }
                stomp::frame(&mut tx.scratch, "SUBSCRIBE", &headers, b"");
            }
        }
        tx.send_scratch().await?;
        tx.flush().await?;
        self.wait(|e| matches!(e, Event::Subscribed), "the SUBACK/RECEIPT").await
    }

    /// Whether the broker still answers: an MQTT PINGREQ answered by PINGRESP within 10 s.
    /// STOMP and the relay have no such request; for them this is `Ok(None)`.
    pub async fn ping(&mut self) -> anyhow::Result<Option<bool>> {
        if self.tx.proto != Proto::Mqtt {
            return Ok(None);
        }
        mqtt::pingreq(&mut self.tx.scratch);
        self.tx.send_scratch().await?;
        self.tx.flush().await?;
        Ok(Some(self.wait(|e| matches!(e, Event::Pong), "the PINGRESP").await.is_ok()))
    }

    /// Says goodbye (MQTT DISCONNECT; STOMP DISCONNECT and its RECEIPT) and waits up to 5 s
    /// for the broker to close, so that it has taken the client offline when this returns.
    pub async fn disconnect(mut self) -> anyhow::Result<()> {
        match self.tx.proto {
            Proto::Raw => {}
            Proto::Mqtt => mqtt::disconnect(&mut self.tx.scratch),
            Proto::Stomp => stomp::frame(&mut self.tx.scratch, "DISCONNECT", &[("receipt", "bye")], b""),
        }
        self.tx.send_scratch().await?;
        self.tx.flush().await?;
        let end = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match self.rx.next().await {
                    Ok(Event::Closed) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        });
        let _ = end.await;
        let _ = self.tx.writer.close().await;
        Ok(())
    }

    async fn wait(&mut self, want: impl Fn(&Event) -> bool, what: &str) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut early = VecDeque::new();
        loop {
            let event = tokio::time::timeout_at(deadline, self.rx.next())
                .await
                .map_err(|_| anyhow!("no {what} within 10 s"))??;
            if want(&event) {
                // Deliveries that came before the confirmation are kept for the caller.
                early.extend(self.rx.stash.drain(..));
                self.rx.stash = early;
                return Ok(());
            }
            if matches!(event, Event::Closed) {
                bail!("the broker closed the connection while waiting for {what}");
            }
            early.push_back(event);
        }
    }
}

/// The sending half of a client.
pub struct Tx {
    proto: Proto,
    writer: Writer,
    scratch: BytesMut,
    next_id: u32,
    /// The last STOMP destination written, kept so that a run of publishes to one topic does
    /// not allocate it again for each.
    dest: String,
}

impl Tx {
    async fn send_scratch(&mut self) -> std::io::Result<()> {
        self.send_scratch_known(false).await
    }

    /// [`Tx::send_scratch`] for a packet known to be valid UTF-8 if `utf8`.
    async fn send_scratch_known(&mut self, utf8: bool) -> std::io::Result<()> {
        let packet = self.scratch.split().freeze();
        if !packet.is_empty() {
            self.writer.push_known(packet, utf8).await?;
        }
        Ok(())
    }

    /// Queues a publish to the topic `name` (`queue`: STOMP `/queue/name`). QoS 1 asks for an
    /// acknowledgement ([`Event::Acked`]): MQTT PUBACK, or STOMP `persistent:true` with a
    /// receipt. Call [`Tx::flush`] to write the batch.
    pub async fn publish(&mut self, name: &str, payload: &[u8], qos: u8, queue: bool) -> std::io::Result<()> {
        self.next_id = self.next_id.wrapping_add(1);
        match self.proto {
            Proto::Raw => return self.writer.push(Bytes::copy_from_slice(payload)).await,
            Proto::Mqtt => mqtt::publish(&mut self.scratch, name, qos, (self.next_id % 65535 + 1) as u16, payload),
            Proto::Stomp => {
                let kind = if queue { "/queue/" } else { "/topic/" };
                if self.dest.strip_prefix(kind) != Some(name) {
                    self.dest.clear();
                    self.dest.push_str(kind);
                    self.dest.push_str(name);
                }
                let dest = self.dest.as_str();
                if qos > 0 {
                    let mut digits = [0u8; 20];
                    let receipt = stomp::decimal(u64::from(self.next_id), &mut digits);
                    let headers = [("destination", dest), ("persistent", "true"), ("receipt", receipt)];
                    stomp::frame(&mut self.scratch, "SEND", &headers, payload);
                } else {
                    stomp::frame(&mut self.scratch, "SEND", &[("destination", dest)], payload);
                }
                // Its headers are `&str`s: the frame is UTF-8 exactly when the payload is.
                return self.send_scratch_known(std::str::from_utf8(payload).is_ok()).await;
            }
        }
        self.send_scratch().await
    }

    /// Queues the acknowledgement of one delivery.
    pub async fn ack(&mut self, ack: &Ack) -> std::io::Result<()> {
        match ack {
            Ack::Mqtt(pid) => mqtt::puback(&mut self.scratch, *pid),
            Ack::Stomp(id) => {
                let id = String::from_utf8_lossy(id);
                stomp::frame(&mut self.scratch, "ACK", &[("id", &id)], b"");
            }
        }
        self.send_scratch().await
    }

    /// Writes the batch.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush().await
    }
}

/// The receiving half of a client.
pub struct Rx {
    proto: Proto,
    reader: Reader,
    buf: BytesMut,
    stash: VecDeque<Event>,
    /// A subscription of this client wants client acks (otherwise MESSAGE needs no ACK).
    stomp_acks: bool,
    /// Messages carry their payloads (otherwise an empty one: see [`Rx::skip_payloads`]).
    keep_payloads: bool,
    /// STOMP MESSAGEs counted in place as whole WebSocket messages ([`stomp::is_one_message`])
    /// and not handed out yet; they came before anything in `buf`.
    counted: usize,
}

impl Rx {
    /// Deliveries come without their payloads from now on: a run that only counts messages
    /// does not pay for handing each one out (the generator shares the cores it measures on).
    pub fn skip_payloads(&mut self) {
        self.keep_payloads = false;
    }

    /// The next event. A protocol error from the broker (CONNACK refusal, SUBACK failure,
    /// STOMP ERROR, a malformed frame) is an error; so is a transport error. Cancel-safe.
    pub async fn next(&mut self) -> anyhow::Result<Event> {
        if let Some(event) = self.stash.pop_front() {
            return Ok(event);
        }
        loop {
            if let Some(event) = self.decode()? {
                return Ok(event);
            }
            if self.proto == Proto::Raw {
                return match self.reader.next_chunk().await? {
                    None => Ok(Event::Closed),
                    Some(chunk) => Ok(Event::Message { payload: chunk, ack: None }),
                };
            }
            // MQTT and STOMP decode a byte stream: a WebSocket's payloads are appended to it.
            // A reader that wants neither STOMP bodies nor acks counts a MESSAGE that fills a
            // WebSocket message in place, without copying it there and reading its headers: in
            // a fan-out the generator shares the cores it measures on, and a STOMP delivery
            // cost it more than twice an MQTT one (docs/benchmarks.md).
            let count = self.proto == Proto::Stomp && !self.stomp_acks && !self.keep_payloads;
            let counted = &mut self.counted;
            let filled = self
                .reader
                .fill_with(&mut self.buf, |payload| {
                    let one = count && stomp::is_one_message(payload);
                    *counted += usize::from(one);
                    one
                })
                .await?;
            if !filled {
                return Ok(Event::Closed);
            }
        }
    }

    /// The next event if one is already buffered, without reading the socket: a reader that
    /// owes acks flushes them when this returns `None`, just before it would block.
    pub fn try_next(&mut self) -> anyhow::Result<Option<Event>> {
        if let Some(event) = self.stash.pop_front() {
            return Ok(Some(event));
        }
        self.decode()
    }

    fn decode(&mut self) -> anyhow::Result<Option<Event>> {
        if self.counted > 0 {
            self.counted -= 1;
            return Ok(Some(Event::Message { payload: Bytes::new(), ack: None }));
        }
        loop {
            let event = match self.proto {
                Proto::Raw => return Ok(None),
                Proto::Mqtt => match mqtt::decode(&mut self.buf, self.keep_payloads)
                    .map_err(|e| anyhow!("malformed MQTT: {}", e.0))?
                {
                    None => return Ok(None),
                    Some(mqtt::Packet::ConnAck { code: 0, .. }) => Event::Connected,
                    Some(mqtt::Packet::ConnAck { code, .. }) => bail!("CONNACK refused the connection (code {code})"),
                    Some(mqtt::Packet::SubAck(0x80)) => bail!("SUBACK refused the subscription"),
                    Some(mqtt::Packet::SubAck(_)) => Event::Subscribed,
                    Some(mqtt::Packet::Publish { qos, pid, payload }) => {
                        Event::Message { payload, ack: (qos > 0).then_some(Ack::Mqtt(pid)) }
                    }
                    Some(mqtt::Packet::PubAck(_)) => Event::Acked,
                    Some(mqtt::Packet::Other(13)) => Event::Pong,
                    Some(mqtt::Packet::Other(_)) => continue,
                },
                Proto::Stomp => match stomp::decode(&mut self.buf, self.stomp_acks, self.keep_payloads)
                    .map_err(|e| anyhow!("malformed STOMP: {}", e.0))?
                {
                    None => return Ok(None),
                    Some(stomp::Frame::Connected) => Event::Connected,
                    Some(stomp::Frame::Message { ack, body }) => {
                        Event::Message { payload: body, ack: ack.map(Ack::Stomp) }
                    }
                    Some(stomp::Frame::Receipt(id)) => match &id[..] {
                        b"sub" => Event::Subscribed,
                        b"bye" => Event::Closed,
                        _ => Event::Acked,
                    },
                    Some(stomp::Frame::Error(e)) => bail!("STOMP ERROR {e}"),
                    Some(stomp::Frame::Other) => continue,
                },
            };
            return Ok(Some(event));
        }
    }
}
