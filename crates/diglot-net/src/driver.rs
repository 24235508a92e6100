//! The connection driver: one task per connection, between a [`Link`] and an [`Adapter`].
//!
//! The driver reads bytes and hands them to the adapter one frame at a time, carries out the
//! adapter's [`Action`]s against the router, drains the connection's [`Outbox`] while the
//! adapter has room, fires the adapter's timers, and writes what the adapter produced. Every
//! connection ends with exactly one [`CloseReason`], logged once with its fields.
//!
//! No lock is held across an `.await`; the outbox is bounded; a write that stalls longer than
//! the write timeout marks the consumer as slow.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use diglot_core::{
    session_queue, Action, Adapter, CloseReason, ConnId, ConnInfo, Delivery, Filter, Outbox, Output, PublishError,
    Qos2Flows, RetainHandling, SubId, Subscriber, Transport, Wake,
};
use futures::stream::{FuturesOrdered, StreamExt};
use tokio::time::timeout;

use crate::auth::ConnAuth;
use crate::conns::ConnEntry;
use crate::durable::{ConsumerSpec, Queue};
use crate::link::Read;
use crate::metrics::Source;
use crate::negotiate::Proto;
use crate::server::Shared;

/// Topics under this prefix publish straight into the named queue (`$queue/<name>`).
pub(crate) const QUEUE_TOPIC_PREFIX: &str = "$queue/";

/// Most deliveries encoded per wake-up before the driver writes and looks at its socket again.
const DELIVERY_BATCH: usize = 256;

/// The longest WebSocket frame header (RFC 6455 §5.2), counted once per delivery when the
/// output is sized for a batch: [`Output::len`] leaves the headers out.
const MAX_WS_HEADER: usize = 10;

/// The most a delivery's headers are expected to take when the output is sized for a batch:
/// a STOMP MESSAGE with many user properties takes more, and the buffer grows as usual.
const MAX_DELIVERY_OVERHEAD: usize = 4096;

/// Most QoS 0 publishes routed together ([`route_batch`]).
const ROUTE_BATCH: usize = 64;

thread_local! {
    /// Each worker thread's spare vectors for [`on_input`]'s batch of publishes and its
    /// busiest-topics counts, and [`deliver`]'s batch of deliveries, lent out for one event
    /// and given back empty, so that an event does not allocate them afresh. A task that moves
    /// to another thread while it holds one gives it back there; one that ends early drops it.
    static PUBLISHES: std::cell::Cell<Vec<diglot_core::Message>> = const { std::cell::Cell::new(Vec::new()) };
    static DELIVERIES: std::cell::Cell<Vec<Delivery>> = const { std::cell::Cell::new(Vec::new()) };
    static TOPIC_COUNTS: std::cell::Cell<Vec<(diglot_core::Topic, u64)>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Gives a vector lent out of `spare` back, empty, unless a large burst grew it past `max`.
fn give_back<T>(spare: &'static std::thread::LocalKey<std::cell::Cell<Vec<T>>>, mut v: Vec<T>, max: usize) {
    v.clear();
    if v.capacity() <= max {
        spare.set(v);
    }
}

/// How long a connection that takes a client id over waits for the old holder to finish.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);

/// How long the driver keeps trying to say goodbye to a peer before it drops the socket.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long, and for how many bytes, a connection the broker closed reads on, discarding what
/// the client still sends, so that the client gets to read the goodbye
/// ([`crate::link::Link::linger`]).
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 256 * 1024;

enum Event {
    Close(CloseReason),
    LinkTimer,
    /// A rate-limit pause is over.
    Resume,
    Read(std::io::Result<Read>),
    Stored(Stored),
    Deliver,
    Timer,
}

/// A publish whose store write is under way: it resolves, in publish order, to what the
/// driver needs to finish it.
type PendingPublish = Pin<Box<dyn Future<Output = Stored> + Send>>;

/// A publish whose store write is done (or that needed none, or failed early).
struct Stored {
    token: Option<u64>,
    outcome: Outcome,
}

enum Outcome {
    /// Already decided.
    Done(Result<(), PublishError>),
    /// Written: hand it to the queues' consumers, then acknowledge (with what the cluster
    /// hand-off of its groups to other nodes came to: always `Ok` without a cluster).
    Written(Arc<diglot_core::Message>, Vec<Arc<Queue>>, crate::durable::AppendReply, Result<(), PublishError>),
}

/// The publishes waiting for the store, in order. Created on first use: `FuturesOrdered`
/// allocates (about 150 bytes) as soon as it exists, and most connections never publish
/// durably.
#[derive(Default)]
struct Pending(Option<FuturesOrdered<PendingPublish>>);

impl Pending {
    fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(FuturesOrdered::is_empty)
    }

    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, FuturesOrdered::len)
    }

    fn push_back(&mut self, publish: PendingPublish) {
        self.0.get_or_insert_with(FuturesOrdered::new).push_back(publish);
    }

    /// The next finished publish; never resolves while none waits.
    async fn next(&mut self) -> Option<Stored> {
        match self.0.as_mut() {
            Some(p) => p.next().await,
            None => std::future::pending().await,
        }
    }
}

/// One connection's state that the driver (not the adapter) owns.
struct Conn {
    id: u64,
    /// Set to `true` once the connection has released its subscriptions and consumers.
    finished: crate::registry::Finished,
    subs: HashMap<SubId, Filter>,
    /// Durable queues this connection consumes: sub → (queue, ack on hand-over).
    consumers: HashMap<SubId, (Arc<Queue>, bool)>,
    /// A stored session this connection resumed without keeping it (MQTT 5 clean start 0
    /// with session expiry 0): deleted when the connection ends.
    ephemeral_session: Option<String>,
    /// The store key of the copy of this connection's will kept while it is connected
    /// ([`Action::SaveWill`]).
    saved_will: Option<String>,
    /// The persistent session this connection holds, and how long it outlives it (`None`:
    /// until a clean start).
    session: Option<(String, Option<u32>)>,
    client_id: Option<String>,
    peer: SocketAddr,
    transport: Transport,
    bytes_in: u64,
    bytes_out: u64,
    /// Publishes waiting for the store, in arrival order, so that acknowledgements leave in
    /// order [MQTT-4.6.0-2] (and STOMP RECEIPTs in frame order) while the next frames are
    /// already being read; at most `limits.max_inflight` before reading pauses.
    pending: Pending,
    /// `limits.max_publish_rate` and `limits.max_bytes_rate`: over them, reading pauses.
    publish_rate: Option<diglot_core::Bucket>,
    byte_rate: Option<diglot_core::Bucket>,
    /// What the transport established: anonymous allowed here, an identity from a handshake
    /// token or client certificate.
    auth: ConnAuth,
    /// Who the connection is once logged in (`None`: anonymous, or not yet).
    identity: Option<diglot_auth::Identity>,
    /// When the identity's credentials (a JWT) expire: the connection is closed then, unless
    /// an MQTT 5 re-authentication moved it.
    auth_deadline: Option<Instant>,
    /// This connection in the table of open connections (admin API, metrics), with its outbox:
    /// the deliveries for it, which also wake the driver for a takeover, an administrator's
    /// kick and the shutdown ([`Outbox::signal`]).
    entry: Arc<ConnEntry>,
    /// The protocol, for the traffic metrics.
    source: Source,
    /// Deliveries so far, to sample their latency.
    delivered: u64,
    /// What a delivery of the last batch took in the output besides its payload and topic
    /// (headers, framing), to size the output for the next batch at once ([`deliver`]).
    delivery_overhead: u32,
}

impl Conn {
    /// When reading may resume after the client went over a rate limit (`None`: now).
    fn paused_until(&self) -> Option<Instant> {
        let a = self.publish_rate.as_ref().and_then(|b| b.ready_at());
        let b = self.byte_rate.as_ref().and_then(|b| b.ready_at());
        a.max(b)
    }
}

/// Runs a connection until it closes. The connection comes boxed: an async fn keeps its
/// arguments for its whole life, next to the copies it makes of them.
pub(crate) async fn run(shared: Arc<Shared>, handshaken: Box<crate::server::Handshaken>) {
    let crate::server::Handshaken { mut link, proto, transport, tls, peer, subprotocol, conn_auth: auth } =
        crate::server::unbox(handshaken);
    let started = Instant::now();
    let id = shared.router.next_conn_id();
    let info = ConnInfo { id, transport, peer, subprotocol };
    // In a block, so that `limits` takes no room in the task while the connection lives.
    let (mut adapter, mut conn, max_pending) = {
        let limits = shared.limits();
        let adapter: Box<dyn Adapter> = match proto {
            Proto::Mqtt => Box::new(diglot_mqtt::Session::new(info, limits.clone(), shared.mqtt.clone(), started)),
            Proto::Stomp => Box::new(diglot_stomp::Session::new(info, limits.clone(), shared.stomp.clone(), started)),
        };
        let outbox = Arc::new(Outbox::new(limits.outbox_max_messages, limits.outbox_max_bytes));
        let entry = shared.conns.open(id, transport, tls, peer, adapter.protocol(), outbox);
        shared.metrics.opened(adapter.protocol(), transport);
        let conn = Conn {
            entry,
            source: match proto {
                Proto::Mqtt => Source::Mqtt,
                Proto::Stomp => Source::Stomp,
            },
            delivered: 0,
            delivery_overhead: 0,
            id,
            finished: crate::registry::Finished::new(),
            subs: HashMap::new(),
            consumers: HashMap::new(),
            ephemeral_session: None,
            saved_will: None,
            session: None,
            client_id: None,
            peer,
            transport,
            bytes_in: 0,
            bytes_out: 0,
            pending: Pending::default(),
            publish_rate: (limits.max_publish_rate > 0)
                .then(|| diglot_core::Bucket::new(f64::from(limits.max_publish_rate), started)),
            byte_rate: (limits.max_bytes_rate > 0)
                .then(|| diglot_core::Bucket::new(limits.max_bytes_rate as f64, started)),
            auth,
            identity: None,
            auth_deadline: None,
        };
        (adapter, conn, usize::from(limits.max_inflight.max(1)))
    };
    shared.connections.fetch_add(1, Ordering::Relaxed);
    let shutdown = shared.shutdown.clone();
    let mut input = BytesMut::new();
    let mut out = Output::new();
    // STOMP over a WebSocket sends one message per frame: written as WebSocket frames in
    // place, the output goes out without being copied frame by frame behind headers.
    out.set_ws_framing(proto == Proto::Stomp && link.frames_in_place());
    let mut actions = Vec::new();
    // One timer for every deadline, kept across events: each pending `Sleep` is ~100 bytes of
    // every idle connection's task, and registering one takes the timer wheel's lock. It is
    // moved only when a deadline comes earlier than the one it is set for (the keep-alive
    // deadline moves later with every packet): at worst it then wakes once for nothing, and
    // is set again for the deadline that is due by then.
    let alarm = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(alarm);
    let mut alarm_at: Option<Instant> = None;

    // tokio keeps a task's future in one allocation, as large as its largest state, for the
    // connection's whole life, so the select (where an idle connection waits) must stay the
    // largest state. The handlers of the common events, `on_input` and `deliver`, are small
    // (about 600 and 300 bytes) and run in place: their rare large awaits (`execute`, the
    // store) run boxed inside them. The other handlers run boxed here. Boxing `on_input` and
    // `deliver` themselves cost an allocation and a 3 KB copy per event (docs/benchmarks.md,
    // "Latency: no allocation per event, and hyper's layers gone").
    let reason = loop {
        let timer = adapter.next_timer();
        let link_timer = link.next_timer();
        let paused = conn.paused_until().filter(|&t| t > Instant::now());
        let wake = [paused, timer, link_timer, conn.auth_deadline].into_iter().flatten().min();
        if let Some(t) = wake.filter(|t| alarm_at.is_none_or(|at| *t < at)) {
            alarm.as_mut().reset(t.into());
            alarm_at = Some(t);
        }
        // The shutdown reaches a connection through its outbox (`Conns::signal_all`); one that
        // opened after that looks here.
        let event = if *shutdown.borrow() {
            Event::Close(CloseReason::ServerShutdown)
        } else {
            // Takeovers, kicks, the shutdown, a slow consumer and deliveries all wake the task
            // through the outbox's one waker.
            let outbox = &conn.entry.outbox;
            let can_deliver = adapter.can_deliver();
            tokio::select! {
                biased;
                Some(stored) = conn.pending.next(), if !conn.pending.is_empty() => Event::Stored(stored),
                // Input that already arrived goes before a takeover: a client that sent its last
                // acknowledgements and DISCONNECT and then reconnected must have them honoured.
                r = link.read(&mut input), if conn.pending.len() < max_pending && paused.is_none() => Event::Read(r),
                w = outbox.wake(can_deliver) => match w {
                    Wake::Signal(bits) => Event::Close(signalled(bits)),
                    Wake::Slow => Event::Close(CloseReason::SlowConsumer),
                    Wake::Ready => Event::Deliver,
                },
                _ = alarm.as_mut(), if alarm_at.is_some() => {
                    alarm_at = None;
                    due(Instant::now(), paused, timer, link_timer, conn.auth_deadline)
                }
            }
        };
        let now = Instant::now();
        let closed = match event {
            // A reason the driver decided on: the adapter writes the protocol's goodbye.
            Event::Close(reason) => {
                adapter.on_server_close(&reason, &mut out);
                Some(reason)
            }
            Event::Read(Ok(Read::Data(n))) => {
                link.heard(now);
                conn.bytes_in += n as u64;
                conn.entry.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                if let Some(b) = conn.byte_rate.as_mut() {
                    let before = b.ready_at().is_some();
                    b.take(n as f64, now);
                    if !before && b.ready_at().is_some() {
                        shared.breach(diglot_core::Limit::MaxBytesRate);
                    }
                }
                shared.bytes_in.add(n as u64);
                shared.metrics.traffic(conn.source).bytes_in.add(n as u64);
                on_input(&shared, &mut conn, adapter.as_mut(), &mut input, now, &mut out, &mut actions).await
            }
            // The pause is over: go on with what is already buffered.
            Event::Resume => {
                on_input(&shared, &mut conn, adapter.as_mut(), &mut input, now, &mut out, &mut actions).await
            }
            Event::LinkTimer => match link.on_timer(now).await {
                Ok(crate::link::LinkTimer::Alive) => None,
                Ok(crate::link::LinkTimer::Dead) => {
                    let reason = CloseReason::KeepAliveTimeout;
                    adapter.on_server_close(&reason, &mut out);
                    Some(reason)
                }
                Err(e) => Some(CloseReason::Io(e.to_string())),
            },
            Event::Stored(stored) => {
                Box::pin(stored_done(&shared, &mut conn, adapter.as_mut(), stored, &mut out, &mut actions)).await
            }
            Event::Read(Ok(Read::Closed)) => Some(CloseReason::PeerClosed),
            Event::Read(Ok(Read::Violation(why))) => {
                let reason = CloseReason::ProtocolError(why);
                adapter.on_server_close(&reason, &mut out);
                Some(reason)
            }
            Event::Read(Ok(Read::TooLarge(why))) => {
                shared.breach(diglot_core::Limit::MaxWsMessageBytes);
                let reason = CloseReason::LimitExceeded(why);
                adapter.on_server_close(&reason, &mut out);
                Some(reason)
            }
            Event::Read(Err(e)) => Some(CloseReason::Io(e.to_string())),
            Event::Deliver => deliver(&shared, &mut conn, adapter.as_mut(), now, &mut out).await,
            Event::Timer => {
                adapter.on_timer(now, &mut out, &mut actions);
                Box::pin(execute(&shared, &mut conn, adapter.as_mut(), &mut actions, &mut out)).await
            }
        };
        if out.is_empty() {
            // Nothing to write (a QoS 0 publisher's usual event): no write timer to arm.
            if let Some(reason) = closed {
                break reason;
            }
            continue;
        }
        let limit = if closed.is_some() { GOODBYE_TIMEOUT.min(shared.write_timeout) } else { shared.write_timeout };
        let len = out.len() as u64;
        match timeout(limit, link.write(&mut out)).await {
            Ok(Ok(())) => {
                if len > 0 {
                    conn.bytes_out += len;
                    conn.entry.bytes_out.fetch_add(len, Ordering::Relaxed);
                    shared.bytes_out.add(len);
                    shared.metrics.traffic(conn.source).bytes_out.add(len);
                    adapter.on_sent(Instant::now());
                }
            }
            Ok(Err(e)) => break closed.unwrap_or(CloseReason::Io(e.to_string())),
            Err(_) => break closed.unwrap_or(CloseReason::SlowConsumer),
        }
        if let Some(reason) = closed {
            break reason;
        }
    };
    let _ = timeout(GOODBYE_TIMEOUT, link.close(&reason)).await;
    let linger = lingers(&reason);
    Box::pin(finish(&shared, conn, adapter, reason, started)).await;
    if linger {
        // After `finish`: the client id, the subscriptions and the session are released, so a
        // client that reconnects at once does not wait for this. The socket still holds its
        // connection permit and its address's slot, so lingering sockets count against
        // `limits.max_connections` and `limits.max_connections_per_ip`.
        // Boxed: the task's future is sized for its largest state.
        Box::pin(async {
            let mut shutdown = shared.shutdown.clone();
            tokio::select! {
                _ = timeout(LINGER, link.linger(&mut input, LINGER_BYTES)) => {}
                _ = shutdown.wait_for(|down| *down) => {}
            }
        })
        .await;
    }
}

/// Whether the driver reads on after closing for `reason` ([`crate::link::Link::linger`]):
/// when the broker ended the connection while the client may still be sending. Not when the
/// client ended it, its transport failed, it fell silent (keep-alive, handshake), it stopped
/// reading (slow consumer), or the broker is shutting down.
fn lingers(reason: &CloseReason) -> bool {
    matches!(
        reason,
        CloseReason::ProtocolError(_)
            | CloseReason::LimitExceeded(_)
            | CloseReason::ConnectRefused(_)
            | CloseReason::NotAuthorized(_)
            | CloseReason::AuthExpired
            | CloseReason::Kicked
            | CloseReason::SessionTakenOver
    )
}

/// What the wake-up at the earliest deadline is for: the rate-limit pause, the adapter's
/// timer, the link's timer, the credentials' expiry, in that order.
fn due(
    now: Instant,
    paused: Option<Instant>,
    timer: Option<Instant>,
    link_timer: Option<Instant>,
    auth: Option<Instant>,
) -> Event {
    let passed = |t: Option<Instant>| t.is_some_and(|t| t <= now);
    if passed(paused) {
        Event::Resume
    } else if passed(timer) {
        Event::Timer
    } else if passed(link_timer) {
        Event::LinkTimer
    } else if passed(auth) {
        Event::Close(CloseReason::AuthExpired)
    } else {
        // Not reached (the sleep ends at the earliest deadline); the adapter checks its own
        // deadlines, so a wake-up for nothing does nothing there.
        Event::Timer
    }
}

/// The close reason for a driver's signal bits ([`diglot_core::outbox::signal`]): the
/// shutdown first, then a takeover, then an administrator's kick.
fn signalled(bits: u8) -> CloseReason {
    use diglot_core::outbox::signal::{SHUTDOWN, TAKEOVER};
    if bits & SHUTDOWN != 0 {
        CloseReason::ServerShutdown
    } else if bits & TAKEOVER != 0 {
        CloseReason::SessionTakenOver
    } else {
        CloseReason::Kicked
    }
}

/// Feeds the adapter frame by frame, carrying out each frame's actions before the next.
async fn on_input(
    shared: &Arc<Shared>,
    conn: &mut Conn,
    adapter: &mut dyn Adapter,
    input: &mut BytesMut,
    now: Instant,
    out: &mut Output,
    actions: &mut Vec<Action>,
) -> Option<CloseReason> {
    let mut closed;
    // Publishes that owe nothing back, routed together (see `plain_publishes`), and counted
    // into the busiest-topics table together: one lock of it per read, not per publish.
    let mut batch = PUBLISHES.take();
    let mut topic_counts = crate::conns::TopicCounts::with(TOPIC_COUNTS.take());
    loop {
        let progressed = adapter.on_input(input, now, out, actions);
        if plain_publishes(shared, actions) {
            for action in actions.drain(..) {
                if let Action::Publish { msg, .. } = action {
                    count_publish(shared, conn);
                    topic_counts.count(&shared.topics, &msg.topic);
                    batch.push(msg);
                }
            }
            if batch.len() >= ROUTE_BATCH {
                route_batch(shared, conn, adapter, &mut batch, out).await;
            }
            closed = None;
        } else {
            // Anything else is carried out after the publishes before it.
            route_batch(shared, conn, adapter, &mut batch, out).await;
            // Boxed: `execute`'s state is large (it covers every kind of action). A read that
            // ends with no actions left, as most do, skips it.
            closed =
                if actions.is_empty() { None } else { Box::pin(execute(shared, conn, adapter, actions, out)).await };
        }
        if closed.is_none() && adapter.awaits_publishes() && !conn.pending.is_empty() {
            // The adapter holds a frame whose reply must come after the acknowledgements of
            // the publishes still waiting: finish them, in order, then hand it over.
            while let Some(stored) = conn.pending.next().await {
                closed = Box::pin(stored_done(shared, conn, adapter, stored, out, actions)).await;
                if closed.is_some() {
                    break;
                }
            }
            if closed.is_none() {
                continue;
            }
        }
        // Over a rate limit: leave the rest buffered until the pause is over.
        if closed.is_some() || !progressed || conn.paused_until().is_some_and(|t| t > Instant::now()) {
            break;
        }
    }
    route_batch(shared, conn, adapter, &mut batch, out).await;
    give_back(&PUBLISHES, batch, 2 * ROUTE_BATCH);
    give_back(&TOPIC_COUNTS, topic_counts.flush(&shared.topics), crate::conns::TOPIC_COUNTS_MAX);
    if input.is_empty() && input.capacity() > 64 * 1024 {
        // Give back a buffer that grew for one large frame.
        *input = BytesMut::new();
    }
    closed
}

/// Whether `actions` are only publishes that can be routed in a batch: no acknowledgement
/// owed (QoS 0), nothing retained, not into a named queue, and no cluster to hand them to.
/// Those owe nothing back to the publisher, so routing them a few frames later within the
/// same read changes nothing it can see, and their order is kept.
fn plain_publishes(shared: &Shared, actions: &[Action]) -> bool {
    shared.cluster.is_none()
        && !actions.is_empty()
        && actions.iter().all(|a| {
            matches!(a, Action::Publish { msg, token: None }
                if !msg.retain && !msg.topic.as_str().starts_with(QUEUE_TOPIC_PREFIX))
        })
}

/// Routes the batched publishes ([`Router::publish_batch`]), then stores those that matched
/// durable queues, in order.
///
/// [`Router::publish_batch`]: diglot_core::Router::publish_batch
async fn route_batch(
    shared: &Arc<Shared>,
    conn: &mut Conn,
    adapter: &mut dyn Adapter,
    batch: &mut Vec<diglot_core::Message>,
    out: &mut Output,
) {
    if batch.is_empty() {
        return;
    }
    let mut queued = Vec::new();
    shared.router.publish_batch(batch, &mut queued);
    for (msg, queues) in queued {
        let routed = match Box::pin(shared.durable.submit(&msg, &queues)).await {
            Ok(append) => Ok((append.map(|append| (msg, append)), None)),
            Err(e) => Err(e),
        };
        // No acknowledgement is owed, so the adapter is not told and asks for nothing.
        finish_publish(conn, adapter, None, routed, out, &mut Vec::new());
    }
}

/// Finishes a publish whose store write is done: hands it to its queues' consumers and
/// reports it to the adapter, then carries out what the adapter asked for.
async fn stored_done(
    shared: &Arc<Shared>,
    conn: &mut Conn,
    adapter: &mut dyn Adapter,
    stored: Stored,
    out: &mut Output,
    actions: &mut Vec<Action>,
) -> Option<CloseReason> {
    let Stored { token, outcome } = stored;
    let result = match outcome {
        Outcome::Done(result) => result,
        Outcome::Written(msg, queues, reply, handed) => shared.durable.complete(&msg, queues, reply).await.and(handed),
    };
    match token {
        Some(token) => adapter.on_publish_done(token, result, out, actions),
        None => log_unacked_failure(conn.id, result),
    }
    execute(shared, conn, adapter, actions, out).await
}

/// How many persistent sessions' QoS 2 exchanges the broker keeps while their clients are
/// away ([`keep_qos2`]).
const QOS2_SESSIONS: usize = 100_000;

/// The QoS 2 exchanges of a persistent session whose client is away ([`keep_qos2`]).
#[derive(Debug)]
pub(crate) struct KeptQos2 {
    pub(crate) flows: Qos2Flows,
    /// Whether the store has them too (to be deleted when the session resumes).
    pub(crate) saved: bool,
}

/// Keeps the QoS 2 exchanges under way of a persistent session (queue `queue`) whose
/// connection ended, for its next connection, in memory and in the store:
/// - the client's unreleased publishes [MQTT-4.3.3-10]: a PUBLISH it resends (DUP=1) after
///   reconnecting gets PUBREC without being routed a second time, and its PUBREL PUBCOMP;
/// - the deliveries whose PUBREL was sent [MQTT-4.4.0-1]: the PUBREL goes again, not the
///   PUBLISH.
///
/// When `QOS2_SESSIONS` sessions already have some, a new one's are not kept (logged).
async fn keep_qos2(shared: &Shared, client_id: &str, queue: &str, flows: Qos2Flows) {
    if flows.is_empty() {
        let gone = shared.qos2.lock().remove(client_id);
        if gone.is_some_and(|k| k.saved) {
            if let Err(e) = shared.durable.save_qos2(queue, None).await {
                tracing::error!(client_id, error = %e, "cannot delete a session's QoS 2 state");
            }
        }
        return;
    }
    {
        let kept = shared.qos2.lock();
        if kept.len() >= QOS2_SESSIONS && !kept.contains_key(client_id) {
            tracing::warn!(client_id, "too many away sessions with QoS 2 exchanges under way; these are not kept");
            return;
        }
    }
    let saved = match shared.durable.save_qos2(queue, Some(&flows)).await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(client_id, error = %e, "cannot store a session's QoS 2 state; kept in memory only");
            false
        }
    };
    shared.qos2.lock().insert(client_id.to_owned(), KeptQos2 { flows, saved });
}

/// Completes the publishes still being stored when the connection ended: they were received,
/// and their messages are in the store, so their queues take them now (STOMP 1.2: "previously
/// received frames SHOULD continue to get processed"), rather than after a restart, when the
/// store is read again. Nothing is acknowledged: the connection is over. Called by [`finish`]
/// once the connection's consumers are detached, so that it is not handed its own messages,
/// and before its will is published, which comes after them.
async fn complete_pending(shared: &Arc<Shared>, conn: &mut Conn) {
    // `Pending::next` waits for good on a connection that never stored a publish.
    while !conn.pending.is_empty() {
        let Some(Stored { outcome, .. }) = conn.pending.next().await else { break };
        if let Outcome::Written(msg, queues, reply, _) = outcome {
            if let Err(e) = shared.durable.complete(&msg, queues, reply).await {
                tracing::warn!(conn = conn.id, error = %e, "a publish received before the connection ended was not queued");
            }
        }
    }
}

/// Moves deliveries from the outbox into the adapter while it has room.
async fn deliver(
    shared: &Shared,
    conn: &mut Conn,
    adapter: &mut dyn Adapter,
    now: Instant,
    out: &mut Output,
) -> Option<CloseReason> {
    let mut batch = DELIVERIES.take();
    let mut left = DELIVERY_BATCH;
    let mut delivered = 0u64;
    // Take as many at once as the adapter surely has room for: one lock of the outbox per
    // run, not per delivery.
    while left > 0 {
        let room = adapter.delivery_room().min(left);
        if room == 0 {
            break;
        }
        if !conn.entry.outbox.drain(&mut batch, room) {
            return Some(CloseReason::SlowConsumer);
        }
        if batch.is_empty() {
            break;
        }
        left -= batch.len();
        // Room for the whole batch at once, sized by its messages and what the last batch's
        // deliveries took besides them: a batch that outgrows the buffer kept between batches
        // (STOMP: 256 MESSAGE frames of a fan-in are about 32 KiB) would otherwise grow it by
        // doubling, copying what it holds each time (4 % of the broker in a STOMP fan-in).
        let carried: usize = batch.iter().map(|d| d.msg.payload.len() + d.msg.topic.as_str().len()).sum();
        let overhead = conn.delivery_overhead as usize + MAX_WS_HEADER;
        out.reserve(carried + batch.len() * overhead);
        let (before, count) = (out.len(), batch.len());
        for d in batch.drain(..) {
            let auto_ack = match d.durable {
                Some(at) => conn.consumers.get(&d.sub).is_some_and(|(_, auto)| *auto).then_some(at),
                None => None,
            };
            if conn.delivered.is_multiple_of(crate::metrics::LATENCY_SAMPLE) {
                shared.metrics.delivery_latency.record(now.saturating_duration_since(d.msg.received_at).as_secs_f64());
            }
            conn.delivered += 1;
            delivered += 1;
            adapter.on_delivery(d, now, out);
            // An `ack:auto` consumer's entry is done once it is handed to the client.
            if let Some(at) = auto_ack {
                Box::pin(shared.durable.ack(conn.id, at)).await;
            }
        }
        let taken = out.len().saturating_sub(before).saturating_sub(carried) / count;
        conn.delivery_overhead = u32::try_from(taken.min(MAX_DELIVERY_OVERHEAD)).unwrap_or(0);
    }
    give_back(&DELIVERIES, batch, DELIVERY_BATCH);
    // Counted once per run: the traffic counters are shared by every connection.
    conn.entry.messages_out.fetch_add(delivered, Ordering::Relaxed);
    shared.metrics.traffic(conn.source).messages_out.add(delivered);
    None
}

/// Carries out the adapter's actions in order. Returns the close reason if one was asked for.
async fn execute(
    shared: &Arc<Shared>,
    conn: &mut Conn,
    adapter: &mut dyn Adapter,
    actions: &mut Vec<Action>,
    out: &mut Output,
) -> Option<CloseReason> {
    let mut closed = None;
    // on_publish_done and on_session_opened may push more actions; carry those out too, in order.
    while !actions.is_empty() && closed.is_none() {
        let batch: Vec<Action> = std::mem::take(actions);
        for action in batch {
            if closed.is_some() {
                break;
            }
            if let Err(reason) = execute_one(shared, conn, adapter, action, actions, out).await {
                closed = Some(reason);
            }
        }
    }
    actions.clear();
    closed
}

/// Carries out one action; `Err` is the reason to close the connection.
async fn execute_one(
    shared: &Arc<Shared>,
    conn: &mut Conn,
    adapter: &mut dyn Adapter,
    action: Action,
    actions: &mut Vec<Action>,
    out: &mut Output,
) -> Result<(), CloseReason> {
    let store_failed = |e: diglot_store::StoreError| {
        tracing::error!(conn = conn.id, error = %e, "store operation failed");
        CloseReason::Io(format!("store: {e}"))
    };
    match action {
        Action::Publish { msg, token } => {
            count_publish(shared, conn);
            shared.topics.record(&msg.topic);
            let routed = route(shared, msg).await;
            finish_publish(conn, adapter, token, routed, out, actions);
        }
        Action::Subscribe { filter, sub, qos, no_local, merge, retained, share } => {
            let mut s = Subscriber::conn(conn.id, sub, qos, conn.entry.outbox.clone(), no_local, merge);
            s.share = share.as_deref().map(|group| shared.router.share_group(group, &filter));
            let existed = shared.router.subscribe(&filter, s);
            let view = crate::conns::SubView { filter: filter.to_string(), qos: qos as u8, share: share.clone() };
            conn.entry.subscriptions.lock().insert(sub, view);
            if let Some(old) = conn.subs.insert(sub, filter.clone()) {
                if old != filter {
                    shared.router.unsubscribe(&old, conn.id, sub);
                }
            }
            // Retained messages are not sent to a shared subscription [MQTT-3.8.4-?; MQTT 5 §4.8.2].
            let send = match retained {
                RetainHandling::Always => true,
                RetainHandling::IfNew => !existed,
                RetainHandling::Never => false,
            };
            if send && share.is_none() {
                send_retained(shared, conn, &filter, sub, qos);
            }
        }
        Action::SendRetained { filter, sub, qos, queue } => {
            let outbox = conn.entry.outbox.clone();
            send_retained_to_session(shared, conn.id, &outbox, &filter, sub, qos, &queue).await;
        }
        Action::Unsubscribe { filter, sub } => {
            shared.router.unsubscribe(&filter, conn.id, sub);
            conn.subs.remove(&sub);
            conn.entry.subscriptions.lock().remove(&sub);
        }
        Action::ClaimClientId(client_id) => {
            let displaced = shared.registry.claim(&client_id, conn.id, &conn.entry.outbox, &conn.finished);
            {
                let mut d = conn.entry.details.lock();
                d.client_id = Some(client_id.clone());
                d.protocol = adapter.protocol();
            }
            crate::cluster::claimed(shared, &client_id);
            conn.client_id = Some(client_id);
            if let Some((old_conn, old)) = displaced {
                // Let the old connection return its unacknowledged messages, and queue the
                // publishes it had received, first, so that the session's redelivery keeps its
                // order. Bounded by `TAKEOVER_WAIT`.
                if timeout(TAKEOVER_WAIT, old.cancelled()).await.is_err() {
                    // This connection goes on with the session: the QoS 2 state the old one
                    // keeps when it ends at last is out of date by then ([`keep_qos2`]).
                    if let Some(id) = &conn.client_id {
                        shared.stale_qos2.lock().insert((id.clone(), old_conn));
                    }
                }
            }
        }
        Action::OpenSession { client_id, clean, persistent, expiry_secs } => {
            let name = session_queue(&client_id);
            let existed = shared.durable.get(&name).is_some();
            if clean && existed {
                shared.durable.delete(&shared.router, &name).await.map_err(store_failed)?;
            }
            let present = existed && !clean;
            // The QoS 2 exchanges the session's previous connection left under way. Not kept
            // in the store while the session is in use: this connection saves its own when it
            // ends.
            let kept = shared.qos2.lock().remove(&client_id);
            if let Some(kept) = kept {
                if kept.saved {
                    shared.durable.save_qos2(&name, None).await.map_err(store_failed)?;
                }
                if present {
                    adapter.restore_qos2_flows(kept.flows);
                }
            }
            // Its subscriptions that are not bindings of its queue (shared, `$queue/`).
            if present {
                let subs = shared.durable.kept_subscriptions(&name).await.map_err(store_failed)?;
                if !subs.is_empty() {
                    adapter.restore_subscriptions(subs);
                }
            }
            if persistent {
                shared.durable.ensure(&name).await.map_err(store_failed)?;
                // In use now: it does not expire while connected (but does after a crash).
                shared.durable.set_session_in_use(&name, expiry_secs).await.map_err(store_failed)?;
                conn.session = Some((name, expiry_secs));
            } else if present {
                conn.ephemeral_session = Some(name);
            }
            adapter.on_session_opened(present, out, actions);
        }
        Action::Consume { queue, sub, prefetch, auto_ack } => {
            let q = shared.durable.ensure(&queue).await.map_err(store_failed)?;
            if let Some((old, _)) = conn.consumers.insert(sub, (q.clone(), auto_ack)) {
                shared.durable.detach(&old, conn.id, Some(sub)).await;
            }
            conn.entry.consuming.lock().insert(sub, (queue.clone(), prefetch));
            let spec = ConsumerSpec { conn: conn.id, sub, outbox: conn.entry.outbox.clone(), prefetch };
            shared.durable.consume(&q, spec).await;
        }
        Action::KeepSubscription { sub, keep } => {
            if let Some((queue, _)) = &conn.session {
                let mut subs = shared.durable.kept_subscriptions(queue).await.map_err(store_failed)?;
                let before = subs.clone();
                subs.retain(|s| s.filter != sub.filter);
                if keep {
                    subs.push(sub);
                }
                if subs != before {
                    shared.durable.save_subscriptions(queue, &subs).await.map_err(store_failed)?;
                }
            }
        }
        Action::Unconsume { sub, .. } => {
            conn.entry.consuming.lock().remove(&sub);
            if let Some((q, _)) = conn.consumers.remove(&sub) {
                shared.durable.detach(&q, conn.id, Some(sub)).await;
            }
        }
        Action::Bind { queue, filter, qos } => {
            let q = shared.durable.ensure(&queue).await.map_err(store_failed)?;
            let exclusive = queue.starts_with("$durable/");
            shared.durable.bind(&shared.router, &q, filter, qos, exclusive).await.map_err(store_failed)?;
        }
        Action::Unbind { queue, filter } => {
            if let Some(q) = shared.durable.get(&queue) {
                shared.durable.unbind(&shared.router, &q, &filter).await.map_err(store_failed)?;
            }
        }
        Action::DeleteQueue(name) => {
            conn.consumers.retain(|_, (q, _)| q.name() != name);
            if conn.session.as_ref().is_some_and(|(s, _)| *s == name) {
                conn.session = None;
            }
            shared.durable.delete(&shared.router, &name).await.map_err(store_failed)?;
        }
        Action::SetSessionExpiry(expiry_secs) => {
            if let Some((_, expiry)) = conn.session.as_mut() {
                *expiry = expiry_secs;
            }
        }
        Action::Ack(at) => shared.durable.ack(conn.id, at).await,
        Action::Nack { at, requeue } => shared.durable.nack(conn.id, at, requeue).await,
        Action::SaveWill { msg, delay_secs, expiry_secs } => {
            // Not in a cluster: a node that starts again does not know which clients came
            // back on another node meanwhile, and would announce them as gone.
            let Some(client_id) = conn.client_id.clone().filter(|_| shared.cluster.is_none()) else { return Ok(()) };
            match shared.durable.save_connected_will(&client_id, conn.id, delay_secs, expiry_secs, &msg).await {
                Ok(key) => conn.saved_will = Some(key),
                Err(e) => {
                    tracing::error!(conn = conn.id, client_id, error = %e, "cannot store the will of a connected client; a crash would lose it");
                }
            }
        }
        Action::Will { msg, .. } => {
            // A will outside `on_closed` (an adapter that ends the session itself): publish now.
            if let Err(e) = publish(shared, msg).await {
                tracing::warn!(conn = conn.id, error = %e, "will message was not stored");
            }
        }
        Action::Login(req) => {
            let result = shared.auth.login(&req, conn.peer.ip(), &conn.auth, conn.identity.as_ref()).await;
            if let diglot_core::LoginOutcome::Granted(grant) = &result.outcome {
                conn.auth_deadline = crate::auth::deadline(result.identity.as_ref());
                {
                    let mut d = conn.entry.details.lock();
                    d.username = grant.username.clone();
                    d.protocol = adapter.protocol();
                }
                conn.identity = result.identity;
                tracing::debug!(
                    conn = conn.id,
                    username = grant.username.as_deref().unwrap_or("-"),
                    reauth = req.reauth,
                    "login granted"
                );
            }
            adapter.on_login(result.outcome, out, actions);
        }
        Action::Close(reason) => return Err(reason),
    }
    Ok(())
}

fn log_unacked_failure(conn: u64, result: Result<(), PublishError>) {
    /// A publisher flooding a full queue without acknowledgements (MQTT QoS 0, a STOMP SEND
    /// without receipt) gets a line a second, not one per message.
    static UNACKED: crate::server::Throttle = crate::server::Throttle::new();
    let Err(e) = result else { return };
    if let Some(held) = UNACKED.due() {
        tracing::warn!(conn, error = %e, failed_since_last_line = held, "unacknowledged publish was not stored");
    }
}

/// A routed message's store write, if it matched durable queues here.
type Routed = Option<(Arc<diglot_core::Message>, crate::durable::Append)>;

/// Counts a publish (the connection's and the protocol's; its topic's is the caller's) and
/// charges it to the publish rate limit.
fn count_publish(shared: &Shared, conn: &mut Conn) {
    conn.entry.messages_in.fetch_add(1, Ordering::Relaxed);
    shared.metrics.traffic(conn.source).messages_in.add(1);
    if let Some(b) = conn.publish_rate.as_mut() {
        b.take(1.0, Instant::now());
        if b.ready_at().is_some() {
            shared.breach(diglot_core::Limit::MaxPublishRate);
        }
    }
}

/// Finishes a routed publish: waits in `conn.pending` for its store write (or for earlier
/// ones), or reports it to the adapter now.
fn finish_publish(
    conn: &mut Conn,
    adapter: &mut dyn Adapter,
    token: Option<u64>,
    routed: Result<(Routed, Option<crate::cluster::Handoff>), PublishError>,
    out: &mut Output,
    actions: &mut Vec<Action>,
) {
    let stored = match routed {
        Ok((Some((msg, append)), handoff)) => {
            let pending: PendingPublish = match handoff {
                None => Box::pin(async move {
                    let reply = append.write.await;
                    Stored { token, outcome: Outcome::Written(msg, append.queues, reply, Ok(())) }
                }),
                Some(handoff) => Box::pin(async move {
                    let (reply, handed) = futures::join!(append.write, handoff);
                    Stored { token, outcome: Outcome::Written(msg, append.queues, reply, handed) }
                }),
            };
            conn.pending.push_back(pending);
            return;
        }
        // Only other nodes store it: the acknowledgement waits for them, not the reads.
        Ok((None, Some(handoff))) => {
            conn.pending.push_back(Box::pin(async move { Stored { token, outcome: Outcome::Done(handoff.await) } }));
            return;
        }
        Ok((None, None)) => Ok(()),
        Err(e) => Err(e),
    };
    if !conn.pending.is_empty() {
        // Earlier publishes are still being stored: this acknowledgement waits its turn.
        conn.pending.push_back(Box::pin(std::future::ready(Stored { token, outcome: Outcome::Done(stored) })));
        return;
    }
    match token {
        Some(token) => adapter.on_publish_done(token, stored, out, actions),
        None => log_unacked_failure(conn.id, stored),
    }
}

/// Routes a message now and returns, if it matched durable queues, the store write that
/// must be durable before the message is acknowledged, and in a cluster the hand-off to the
/// nodes that serve its groups, which the acknowledgement waits for too.
async fn route(
    shared: &Arc<Shared>,
    mut msg: diglot_core::Message,
) -> Result<(Routed, Option<crate::cluster::Handoff>), PublishError> {
    if let Some(name) = msg.topic.as_str().strip_prefix(QUEUE_TOPIC_PREFIX) {
        shared.durable.ensure_named(&shared.router, name).await.map_err(|e| PublishError::Store(e.to_string()))?;
        // A queue is durable: what goes into it is stored whatever the publisher's QoS (a
        // STOMP SEND to `/queue/<name>` is persistent too). A QoS 0 publisher just gets no
        // acknowledgement.
        msg.qos = msg.qos.max(diglot_core::Qos::AtLeastOnce);
    }
    let (msg, report, handoff) = crate::cluster::publish(shared, msg);
    if msg.retain {
        let change = shared.router.retained().update(&msg);
        if let Err(e) = shared.durable.save_retained(&msg, change).await {
            tracing::error!(topic = %msg.topic, error = %e, "cannot store a retained message");
            return Err(PublishError::Store(e.to_string()));
        }
    }
    if report.queues.is_empty() {
        return Ok((None, handoff));
    }
    Ok((shared.durable.submit(&msg, &report.queues).await?.map(|append| (msg, append)), handoff))
}

/// Routes a message and, if it matched durable queues (here or, in a cluster, on the nodes
/// it was handed to), waits until they have it.
pub(crate) async fn publish(shared: &Arc<Shared>, msg: diglot_core::Message) -> Result<(), PublishError> {
    let (routed, handoff) = route(shared, msg).await?;
    if let Some((msg, append)) = routed {
        let reply = append.write.await;
        shared.durable.complete(&msg, append.queues, reply).await?;
    }
    match handoff {
        Some(handoff) => handoff.await,
        None => Ok(()),
    }
}

/// Queues the retained messages that `filter` matches for a new subscription.
fn send_retained(shared: &Shared, conn: &Conn, filter: &Filter, sub: SubId, qos: diglot_core::Qos) {
    push_retained(conn.id, &conn.entry.outbox, filter, sub, qos, shared.router.retained().matching(filter));
}

/// Puts retained messages in the connection's outbox as deliveries for `sub` with RETAIN set.
fn push_retained(
    conn: ConnId,
    outbox: &Outbox,
    filter: &Filter,
    sub: SubId,
    qos: diglot_core::Qos,
    msgs: Vec<Arc<diglot_core::Message>>,
) {
    for msg in msgs {
        let qos = msg.qos.min(qos);
        let mut d = Delivery::new(msg, sub, qos);
        d.retained = true;
        if outbox.try_push(d) != diglot_core::PushOutcome::Queued {
            tracing::warn!(conn, %filter, "outbox full while sending retained messages");
            break;
        }
    }
}

/// Queues the retained messages that `filter` matches for a new subscription of a persistent
/// session whose queue is `queue`: those that go out at QoS 1 or 2 as copies stored in the
/// queue (so that one the client does not acknowledge is sent again after a reconnect or a
/// restart [MQTT-4.4.0-1]), the others, and any copy the queue refused, straight to the
/// connection. The copies' store writes go [`RETAINED_WRITES`] at a time, and their entries
/// come in the order of the retained messages.
async fn send_retained_to_session(
    shared: &Shared,
    conn: ConnId,
    outbox: &Outbox,
    filter: &Filter,
    sub: SubId,
    qos: diglot_core::Qos,
    queue: &str,
) {
    let mut direct = Vec::new();
    let mut refused: Option<(usize, PublishError)> = None;
    let mut refuse = |e: PublishError| match &mut refused {
        Some((n, _)) => *n += 1,
        None => refused = Some((1, e)),
    };
    let matching = shared.router.retained().matching(filter);
    for chunk in matching.chunks(RETAINED_WRITES) {
        let mut writes = Vec::with_capacity(chunk.len());
        for msg in chunk {
            let qos = msg.qos.min(qos);
            if qos == diglot_core::Qos::AtMostOnce {
                direct.push(msg.clone());
                continue;
            }
            let id = shared.router.next_msg_id();
            match shared.durable.submit_retained_copy(queue, msg, id, qos).await {
                Ok(Some((copy, append))) => writes.push((msg, copy, append)),
                Ok(None) => direct.push(msg.clone()),
                Err(e) => {
                    refuse(e);
                    direct.push(msg.clone());
                }
            }
        }
        for (msg, copy, append) in writes {
            let reply = append.write.await;
            if let Err(e) = shared.durable.complete(&copy, append.queues, reply).await {
                refuse(e);
                direct.push(msg.clone());
            }
        }
    }
    if let Some((n, e)) = refused {
        tracing::warn!(conn, queue, %filter, error = %e, "{n} retained message(s) not stored in the session queue; sent once, not again after a reconnect");
    }
    push_retained(conn, outbox, filter, sub, qos, direct);
}

/// How many retained messages' copies [`send_retained_to_session`] writes to the store at a
/// time.
const RETAINED_WRITES: usize = 256;

/// Releases everything the connection held, publishes what must be published at close (an
/// MQTT will), and logs the close once.
async fn finish(
    shared: &Arc<Shared>,
    mut conn: Conn,
    mut adapter: Box<dyn Adapter>,
    reason: CloseReason,
    started: Instant,
) {
    let mut unsent = Vec::new();
    conn.entry.outbox.close_into(&mut unsent);
    match reason {
        CloseReason::SlowConsumer => shared.breach(diglot_core::Limit::SlowConsumer),
        CloseReason::HandshakeTimeout => shared.breach(diglot_core::Limit::HandshakeTimeout),
        _ => {}
    }
    shared.metrics.closed(&reason, adapter.protocol());
    for (sub, filter) in conn.subs.drain() {
        shared.router.unsubscribe(&filter, conn.id, sub);
    }
    // Durable deliveries still in the outbox never reached the client: they go back as not
    // delivered. Unacknowledged ones go back to their queues, to be redelivered in order.
    for d in unsent {
        if let Some(at) = d.durable {
            shared.durable.unsent(conn.id, at).await;
        }
    }
    for (sub, (q, _)) in conn.consumers.drain() {
        shared.durable.detach(&q, conn.id, Some(sub)).await;
    }
    // With its consumers gone (it gets none of them itself), and before its will.
    complete_pending(shared, &mut conn).await;
    if let Some(name) = conn.ephemeral_session.take() {
        if let Err(e) = shared.durable.delete(&shared.router, &name).await {
            tracing::error!(conn = conn.id, error = %e, "cannot delete an ended session");
        }
    }
    if let Some(client_id) = &conn.client_id {
        // A connection that took the session over without waiting for this one to end uses
        // the session now: this one's QoS 2 state is not kept.
        let stale = {
            let mut stale = shared.stale_qos2.lock();
            !stale.is_empty() && stale.remove(&(client_id.clone(), conn.id))
        };
        if let (Some((queue, _)), false) = (&conn.session, stale) {
            keep_qos2(shared, client_id, queue, adapter.qos2_flows()).await;
        }
    }
    if let Some(client_id) = &conn.client_id {
        shared.registry.release(client_id, conn.id);
        crate::cluster::released(shared, client_id);
    }
    conn.finished.cancel();
    shared.conns.close(&conn.entry, &reason);
    let mut actions = Vec::new();
    adapter.on_closed(&reason, &mut actions);
    // How long the session outlives the connection: a will waits at most that long
    // [MQTT-3.1.3-9], and the session is deleted after it unless the client comes back.
    let taken_over = conn.client_id.as_deref().is_some_and(|id| shared.registry.held_by_other(id, conn.id));
    let session_left = match &conn.session {
        Some((_, expiry)) => expiry.map_or(u32::MAX, |e| e),
        None => 0,
    };
    for action in actions {
        match action {
            Action::Publish { msg, .. } | Action::Will { msg, delay_secs: 0 } => {
                if let Err(e) = publish(shared, msg).await {
                    tracing::warn!(conn = conn.id, error = %e, "will message was not stored");
                }
            }
            Action::Will { msg, delay_secs } => {
                let delay = delay_secs.min(session_left);
                match conn.client_id.as_deref() {
                    // The client is back already: a delayed will is not sent.
                    Some(_) if taken_over => {}
                    Some(id) if delay > 0 => schedule_will(shared, id, msg, delay, conn.id).await,
                    _ => {
                        if let Err(e) = publish(shared, msg).await {
                            tracing::warn!(conn = conn.id, error = %e, "will message was not stored");
                        }
                    }
                }
            }
            _ => {}
        }
    }
    // The will is published, or waits in the store, or is not due: its copy kept while the
    // connection lasted goes.
    if let Some(key) = conn.saved_will.take() {
        if let Err(e) = shared.durable.delete_will(&key).await {
            tracing::error!(conn = conn.id, error = %e, "cannot delete the stored will of a closed connection");
        }
    }
    if let (Some((queue, Some(secs))), Some(id), false) = (&conn.session, &conn.client_id, taken_over) {
        schedule_session_expiry(shared, id, queue, *secs).await;
    }
    shared.connections.fetch_sub(1, Ordering::Relaxed);
    let client_id = adapter.client_id().unwrap_or("-");
    let duration_ms = started.elapsed().as_millis() as u64;
    let protocol = adapter.protocol();
    macro_rules! log_close {
        ($level:ident) => {
            tracing::$level!(
                conn = conn.id, client_id, protocol, transport = conn.transport.label(), tls = conn.entry.tls, peer = %conn.peer, bytes_in = conn.bytes_in, bytes_out = conn.bytes_out,
                duration_ms, reason = %reason, "connection closed"
            )
        };
    }
    match reason {
        CloseReason::ProtocolError(_)
        | CloseReason::LimitExceeded(_)
        | CloseReason::SlowConsumer
        | CloseReason::Io(_) => {
            log_close!(warn)
        }
        _ => log_close!(info),
    }
}

/// Publishes a will after `delay_secs` unless the client id is claimed again first. The will
/// is saved in the store until then, so that a broker that stops before (even with `kill -9`)
/// publishes it when it starts again ([`restore_wills`]). `tag` (the connection's id) tells
/// it apart from the client's other wills.
async fn schedule_will(shared: &Arc<Shared>, client_id: &str, msg: diglot_core::Message, delay_secs: u32, tag: u64) {
    // Before the store write: a client that comes back while it is under way cancels the will.
    // One that came back already (this connection released the id before) holds it now.
    let back = shared.registry.on_return(client_id);
    if shared.registry.is_held(client_id) {
        return;
    }
    let deadline = crate::durable::now_ms() + u64::from(delay_secs) * 1000;
    let key = match shared.durable.save_will(client_id, deadline, tag, &msg).await {
        Ok(key) => Some(key),
        Err(e) => {
            tracing::error!(client_id, error = %e, "cannot store a delayed will; kept in memory only");
            None
        }
    };
    will_at(shared, back, msg, deadline, key);
}

/// Publishes the delayed wills saved by a broker that stopped before they were due: each at
/// its deadline (at once if it has passed), unless its client comes back first.
pub(crate) fn restore_wills(shared: &Arc<Shared>, wills: Vec<(String, String, u64, diglot_core::Message)>) {
    for (key, client_id, deadline, msg) in wills {
        let back = shared.registry.on_return(&client_id);
        if shared.registry.is_held(&client_id) {
            // Its client is back already (the listeners are open): no will.
            let shared = shared.clone();
            tokio::spawn(async move {
                if let Err(e) = shared.durable.delete_will(&key).await {
                    tracing::error!(error = %e, "cannot delete a delayed will from the store");
                }
            });
            continue;
        }
        will_at(shared, back, msg, deadline, Some(key));
    }
}

/// Publishes `msg` at `deadline_ms` (unix ms) unless `back` (its client's return) is cancelled
/// before; then deletes its saved copy `key`. When the broker stops first, a saved will stays
/// in the store for the next start (a restart ends neither the delay nor the session, MQTT 5
/// §3.1.3.2.2); one that could not be saved is published then, rather than lost.
fn will_at(
    shared: &Arc<Shared>,
    back: tokio_util::sync::CancellationToken,
    msg: diglot_core::Message,
    deadline_ms: u64,
    key: Option<String>,
) {
    let tasks = shared.wills.clone();
    let shared = shared.clone();
    let mut shutdown = shared.shutdown.clone();
    tasks.spawn(async move {
        let wait = Duration::from_millis(deadline_ms.saturating_sub(crate::durable::now_ms()));
        let publish_it = tokio::select! {
            _ = back.cancelled() => false,
            _ = shutdown.wait_for(|down| *down) => {
                if key.is_some() {
                    return;
                }
                true
            }
            _ = tokio::time::sleep(wait) => true,
        };
        if publish_it {
            if let Err(e) = publish(&shared, msg).await {
                tracing::warn!(error = %e, "delayed will message was not stored");
            }
        }
        if let Some(key) = key {
            if let Err(e) = shared.durable.delete_will(&key).await {
                tracing::error!(error = %e, "cannot delete a delayed will from the store");
            }
        }
    });
}

/// Deletes a persistent session `secs` after its connection ended, unless the client comes
/// back first. The deadline is kept in the store, so a restart keeps it.
async fn schedule_session_expiry(shared: &Arc<Shared>, client_id: &str, queue: &str, secs: u32) {
    let deadline = crate::durable::now_ms() + u64::from(secs) * 1000;
    if let Err(e) = shared.durable.set_session_deadline(queue, deadline).await {
        tracing::error!(queue, error = %e, "cannot record a session's expiry");
    }
    expire_session_at(shared.clone(), shared.registry.on_return(client_id), queue.to_string(), deadline);
}

/// Deletes session queue `queue` at `deadline_ms` unless `back` is cancelled first.
pub(crate) fn expire_session_at(
    shared: Arc<Shared>,
    back: tokio_util::sync::CancellationToken,
    queue: String,
    deadline_ms: u64,
) {
    tokio::spawn(async move {
        let wait = Duration::from_millis(deadline_ms.saturating_sub(crate::durable::now_ms()));
        let mut shutdown = shared.shutdown.clone();
        tokio::select! {
            _ = back.cancelled() => return,
            // The deadline is in the store: the next start takes it up again. Not holding the
            // broker (and its store) past its stop lets a restart in the same process open it.
            _ = shutdown.wait_for(|down| *down) => return,
            _ = tokio::time::sleep(wait) => {}
        }
        if shared.durable.has_consumers(&queue) {
            return;
        }
        if let Some(id) = queue.strip_prefix(diglot_core::SESSION_QUEUE_PREFIX) {
            shared.qos2.lock().remove(id);
        }
        match shared.durable.delete(&shared.router, &queue).await {
            Ok(true) => tracing::info!(queue, "session expired"),
            Ok(false) => {}
            Err(e) => tracing::error!(queue, error = %e, "cannot delete an expired session"),
        }
    });
}
