//! Durable queues at run time: the bridge between the router, the store and consumers.
//!
//! A durable queue (an MQTT persistent session, a STOMP `/queue/<name>`, a STOMP durable topic
//! subscription, a dead-letter queue) lives in the store; this module keeps, per queue, a
//! bounded window of its entries in memory and hands them to consumers:
//!
//! - **Publish**: the router reports which queues a message matched. A message that is QoS ≥ 1
//!   for a queue is appended to the store (once, whatever the number of queues) and the
//!   publisher's acknowledgement waits for that write under the durability policy. A QoS 0
//!   message is only offered to a consumer that is online, and never stored.
//! - **Dispatch**: entries go to consumers in seq order, round-robin over the consumers that
//!   have room in their prefetch window. Every delivery is recorded in the store, so that the
//!   delivery count (and the `redelivered` flag) survive a restart.
//! - **Acknowledge**: an ack deletes the entry. A consumer that leaves returns its
//!   unacknowledged entries, which are redelivered first (lowest seq first) to the next
//!   consumer; entries still in its outbox, never sent, go back with their delivery count as
//!   it was ([`Durable::unsent`]). A message delivered more than `max_redeliveries` times goes
//!   to `$dlq/<queue>`.
//! - **Bindings**: a queue subscribes to topic filters through the router; the bindings are
//!   kept in the store (under `\0bind/<queue>` in the sessions partition, a key no client id
//!   can take since client ids cannot hold NUL) and restored at start.
//!
//! Locks are never held across an `.await`: each operation changes the queue's state under
//! its mutex and returns the store work to do, which runs afterwards.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use dashmap::DashMap;
use diglot_core::{
    named_queue, queue_topic, ConnId, Delivery, DurableRef, Filter, KeptSubscription, Message, Outbox, PublishError,
    Qos, Qos2Flows, RetainChange, Router, SubId, Subscriber,
};
use diglot_store::{AppendError, QueueId, Seq, Store, StoreError, StoredMessage};
use parking_lot::Mutex;

/// Most entries of one queue held in memory; the rest stay in the store until needed.
const WINDOW: usize = 1024;

/// The sessions-partition key prefix for a queue's bindings.
const BINDINGS_KEY: &str = "\0bind/";

/// The sessions-partition key prefix for when a session queue ends if nobody resumes it: a
/// deadline (unix ms, 8 bytes) while its client is away, or its Session Expiry Interval
/// (seconds, 4 bytes) while its client is connected ([`Durable::set_session_in_use`]).
const EXPIRY_KEY: &str = "\0expiry/";

/// The sessions-partition key prefix for the subscriptions a session queue's session keeps
/// outside its bindings ([`diglot_core::KeptSubscription`]).
const SUBS_KEY: &str = "\0subs/";

/// The sessions-partition key prefix for a delayed will waiting to be published: then the
/// deadline and a number that tells wills of one client apart (16 hex digits each), `/`, and
/// the client id ([`Durable::save_will`]).
const WILL_KEY: &str = "\0will/";

/// The sessions-partition key prefix for a session queue's QoS 2 exchanges under way while
/// its client is away ([`diglot_core::Qos2Flows`]).
const QOS2_KEY: &str = "\0qos2/";

/// The sessions-partition key prefix of the will of a connected client
/// ([`Durable::save_connected_will`]): then the time it was saved and the connection's id (16
/// hex digits each), `/`, and the client id.
const CONNECTED_WILL_KEY: &str = "\0cwill/";

/// One consumer of a queue: a subscription of a connection.
struct Consumer {
    conn: ConnId,
    sub: SubId,
    outbox: Arc<Outbox>,
    prefetch: usize,
    inflight: usize,
}

/// An entry in memory, waiting for a consumer.
struct Ready {
    msg: Arc<Message>,
    /// Deliveries recorded so far.
    deliveries: u32,
}

/// An entry handed to a consumer and not yet acknowledged.
struct Inflight {
    conn: ConnId,
    sub: SubId,
    msg: Arc<Message>,
    deliveries: u32,
}

#[derive(Default)]
struct State {
    consumers: Vec<Consumer>,
    next: usize,
    ready: BTreeMap<u64, Ready>,
    inflight: HashMap<u64, Inflight>,
    /// The lowest seq that may be in the store but is not in memory; `None` when memory holds
    /// every entry of the queue.
    unloaded_from: Option<u64>,
    loading: bool,
    /// The lowest and highest seq appended while a read of the store was under way: not put
    /// in memory then (the window beyond the read is not known yet); those the read did not
    /// return are left for the next read.
    appended_while_loading: Option<(u64, u64)>,
    /// The seqs the reads of the store returned, as `first..=last` ranges (adjacent ones
    /// merged: reads one after another make one), newest last: an append whose completion
    /// comes after a read already took its entry (and the entry may have been delivered and
    /// acknowledged since) is not put in memory a second time.
    read_ranges: VecDeque<(u64, u64)>,
    /// Purges so far, and how many there had been when the read under way began: a read that
    /// a purge overtook may return entries the purge has deleted since, so it is dropped.
    purges: u64,
    purges_at_load: u64,
    bindings: Vec<(Filter, Qos)>,
}

impl State {
    /// Whether entry `seq` is in memory, or was read from the store before (and may have been
    /// settled since): then it is not taken into memory again.
    fn has_taken(&self, seq: u64) -> bool {
        self.ready.contains_key(&seq)
            || self.inflight.contains_key(&seq)
            || self.read_ranges.iter().any(|&(first, last)| (first..=last).contains(&seq))
    }
}

/// How many separate ranges of reads a queue remembers ([`State::read_ranges`]).
const READ_RANGES: usize = 8;

/// Store work that an operation on a queue's state asks for, carried out without the lock.
#[derive(Default)]
struct Work {
    /// Deliveries to record (seq).
    record: Vec<u64>,
    /// Entries to dead-letter.
    dead: Vec<(u64, Arc<Message>)>,
    /// Entries whose message expired before delivery: deleted.
    expired: Vec<u64>,
    /// The in-memory window ran low and the store has more.
    load: bool,
}

impl Work {
    fn is_empty(&self) -> bool {
        self.record.is_empty() && self.dead.is_empty() && self.expired.is_empty() && !self.load
    }
}

/// A queue as the admin API, the dashboard and metrics show it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct QueueView {
    pub(crate) name: String,
    /// Entries in the store (ready and unacknowledged).
    pub(crate) depth: u64,
    /// Bytes charged to the queue.
    pub(crate) bytes: u64,
    pub(crate) consumers: usize,
    /// Entries delivered and not yet acknowledged.
    pub(crate) inflight: u64,
    /// Entries waiting for a consumer: depth minus inflight.
    pub(crate) lag: u64,
    /// The topic filters that feed it.
    pub(crate) bindings: Vec<String>,
}

/// A durable queue's run-time state.
pub(crate) struct Queue {
    id: QueueId,
    name: String,
    /// An expired entry that went out before stays until it is acknowledged
    /// ([`diglot_store::QueueLimits::keeps_started_entries`]).
    keeps_started: bool,
    state: Mutex<State>,
}

impl Queue {
    fn new(id: QueueId, name: String, in_store: bool, limits: &diglot_store::QueueLimits) -> Queue {
        let state = State { unloaded_from: in_store.then_some(0), ..State::default() };
        Queue { id, keeps_started: limits.keeps_started_entries(&name), name, state: Mutex::new(state) }
    }

    /// The queue's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn dispatch(&self, st: &mut State, max_redeliveries: u32) -> Work {
        let mut work = Work::default();
        // A dead-letter queue keeps its messages whatever their delivery count.
        let max_redeliveries = if self.name.starts_with("$dlq/") { u32::MAX } else { max_redeliveries };
        let now = std::time::Instant::now();
        // An expired entry is deleted, unless it went out before and the queue keeps such
        // entries (an MQTT session's: its onward delivery has begun).
        let keeps_started = self.keeps_started;
        while let Some((&seq, ready)) = st.ready.first_key_value() {
            if ready.msg.is_expired(now) && !(keeps_started && ready.deliveries > 0) {
                st.ready.remove(&seq);
                work.expired.push(seq);
                continue;
            }
            if ready.deliveries > max_redeliveries {
                if let Some(r) = st.ready.remove(&seq) {
                    work.dead.push((seq, r.msg));
                }
                continue;
            }
            let n = st.consumers.len();
            let Some(idx) = (0..n).map(|i| (st.next + i) % n).find(|&i| {
                let c = &st.consumers[i];
                c.inflight < c.prefetch && c.outbox.has_room()
            }) else {
                break;
            };
            let Some(Ready { msg, deliveries }) = st.ready.remove(&seq) else { break };
            let qos = self.delivery_qos(&st.bindings, &msg);
            let c = &mut st.consumers[idx];
            let delivery = Delivery {
                msg: msg.clone(),
                sub: c.sub,
                qos,
                durable: Some(DurableRef { queue: self.id.0, seq }),
                redeliveries: deliveries,
                retained: msg.retained_copy,
            };
            if c.outbox.try_push(delivery) != diglot_core::PushOutcome::Queued {
                st.ready.insert(seq, Ready { msg, deliveries });
                break;
            }
            c.inflight += 1;
            let (conn, sub) = (c.conn, c.sub);
            st.next = idx + 1;
            st.inflight.insert(seq, Inflight { conn, sub, msg, deliveries: deliveries + 1 });
            work.record.push(seq);
        }
        if st.ready.len() < WINDOW / 2 && st.unloaded_from.is_some() && !st.loading && !st.consumers.is_empty() {
            work.load = true;
        }
        work
    }

    /// Starts a read of the store: the seq to read after (`None`: from the start), or `None`
    /// if memory holds everything or a read is under way.
    ///
    /// While the read is under way the queue keeps what it had: the entries it reads are not
    /// in memory, so none of them can be delivered or acknowledged meanwhile, and entries
    /// appended meanwhile wait for the read's end (put in memory at once, they would go out
    /// before older ones still in the store, and could be read a second time).
    fn begin_load(&self, st: &mut State) -> Option<Option<u64>> {
        let from = st.unloaded_from?;
        if st.loading {
            return None;
        }
        st.loading = true;
        st.appended_while_loading = None;
        st.purges_at_load = st.purges;
        Some(from.checked_sub(1))
    }

    /// Ends a read of the store that started after `after` and returned `entries` (seq,
    /// deliveries so far, message), all there were past `after` if `exhausted`.
    fn end_load(&self, st: &mut State, after: Option<u64>, entries: Vec<(u64, u32, Arc<Message>)>, exhausted: bool) {
        if st.purges != st.purges_at_load {
            self.load_failed(st);
            return;
        }
        st.loading = false;
        let appended = st.appended_while_loading.take();
        let first = after.map_or(0, |s| s + 1);
        let mut last = None;
        for (seq, deliveries, msg) in entries {
            last = Some(seq);
            // In memory, or read before and settled since (an acknowledged entry's deletion
            // may not have reached the store yet).
            if st.has_taken(seq) {
                continue;
            }
            st.ready.insert(seq, Ready { msg, deliveries });
        }
        if let Some(last) = last {
            match st.read_ranges.back_mut() {
                Some(range) if range.1.saturating_add(1) >= first && range.0 <= last.saturating_add(1) => {
                    *range = (range.0.min(first), range.1.max(last));
                }
                _ => {
                    if st.read_ranges.len() == READ_RANGES {
                        st.read_ranges.pop_front();
                    }
                    st.read_ranges.push_back((first, last));
                }
            }
        }
        // What may still be in the store and not in memory: past the read if it stopped at the
        // window, and what was appended during it outside what it returned (below `first`: an
        // append that completed late; past `last`: one the read did not see).
        let rest = if exhausted { None } else { last.map(|last| last + 1) };
        let missed = appended.and_then(|(lo, hi)| match last {
            None => Some(lo),
            Some(_) if lo < first => Some(lo),
            Some(last) if hi > last => Some(lo.max(last + 1)),
            Some(_) => None,
        });
        st.unloaded_from = [missed, rest].into_iter().flatten().min();
    }

    /// A read of the store failed: what it was to read, and what was appended during it,
    /// stays in the store for the next read.
    fn load_failed(&self, st: &mut State) {
        st.loading = false;
        let appended = st.appended_while_loading.take().map(|(lo, _)| lo);
        st.unloaded_from = [appended, st.unloaded_from].into_iter().flatten().min();
    }

    /// The QoS an entry goes out at: never 0 (only an acknowledgement takes it off the queue),
    /// and from an MQTT session's queue at most the highest QoS granted to the session's
    /// subscriptions that match it [MQTT-3.8.4-8], which its bindings carry, also after a
    /// reconnect that did not subscribe again. The bindings of other queues only mark what is
    /// stored (QoS 1).
    fn delivery_qos(&self, bindings: &[(Filter, Qos)], msg: &Message) -> Qos {
        let mut qos = msg.qos;
        if self.name.starts_with(diglot_core::SESSION_QUEUE_PREFIX) {
            if let Some(granted) = bindings.iter().filter(|(f, _)| f.matches(&msg.topic)).map(|(_, q)| *q).max() {
                qos = qos.min(granted);
            }
        }
        qos.max(Qos::AtLeastOnce)
    }

    /// Takes a freshly appended entry into memory, unless the window is full, a read of the
    /// store is under way (the entry is left to a read), or a read took it already.
    fn on_appended(&self, st: &mut State, seq: u64, msg: Arc<Message>) {
        if st.has_taken(seq) {
            return;
        }
        if st.loading {
            st.appended_while_loading =
                Some(st.appended_while_loading.map_or((seq, seq), |(lo, hi)| (lo.min(seq), hi.max(seq))));
            return;
        }
        if st.unloaded_from.is_none() && st.ready.len() < WINDOW {
            st.ready.insert(seq, Ready { msg, deliveries: 0 });
        } else {
            st.unloaded_from = Some(st.unloaded_from.map_or(seq, |u| u.min(seq)));
        }
    }

    /// Returns a consumer's unacknowledged entries to the front of the queue.
    fn detach(&self, st: &mut State, conn: ConnId, sub: Option<SubId>) {
        st.consumers.retain(|c| !(c.conn == conn && sub.is_none_or(|s| s == c.sub)));
        let returned: Vec<u64> = st
            .inflight
            .iter()
            .filter(|(_, i)| i.conn == conn && sub.is_none_or(|s| s == i.sub))
            .map(|(&seq, _)| seq)
            .collect();
        for seq in returned {
            if let Some(i) = st.inflight.remove(&seq) {
                st.ready.insert(seq, Ready { msg: i.msg, deliveries: i.deliveries });
            }
        }
    }

    /// Takes an entry out of a consumer's window. Returns it if it was inflight to `conn`.
    fn settle(&self, st: &mut State, conn: ConnId, seq: u64) -> Option<Inflight> {
        if st.inflight.get(&seq).is_none_or(|i| i.conn != conn) {
            return None;
        }
        let i = st.inflight.remove(&seq)?;
        if let Some(c) = st.consumers.iter_mut().find(|c| c.conn == i.conn && c.sub == i.sub) {
            c.inflight = c.inflight.saturating_sub(1);
        }
        Some(i)
    }
}

/// The store's reply to an append, once it is durable.
pub(crate) type AppendReply = Result<Vec<Result<Seq, AppendError>>, StoreError>;

/// A message's store write under way, from [`Durable::submit`].
pub(crate) struct Append {
    /// The queues it goes to.
    pub(crate) queues: Vec<Arc<Queue>>,
    /// Resolves when the write is durable.
    pub(crate) write: std::pin::Pin<Box<dyn std::future::Future<Output = AppendReply> + Send>>,
}

/// What a consumer asks for when it attaches.
pub(crate) struct ConsumerSpec {
    pub(crate) conn: ConnId,
    pub(crate) sub: SubId,
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) prefetch: u16,
}

/// Every durable queue of the broker.
pub(crate) struct Durable {
    store: Store,
    by_name: Mutex<HashMap<String, Arc<Queue>>>,
    by_id: DashMap<u64, Arc<Queue>>,
    max_redeliveries: u32,
    /// Where queue events go to be published on `$SYS/broker/events/...`.
    events: std::sync::OnceLock<tokio::sync::mpsc::Sender<QueueEvent>>,
    /// Events that found the channel full and were dropped.
    pub(crate) events_dropped: std::sync::atomic::AtomicU64,
    /// Told a named queue's consumer count when it may have changed (a cluster node only).
    consumers_hook: std::sync::OnceLock<ConsumersHook>,
}

/// Told a named queue's name (`<name>` of `/queue/<name>`) and its consumer count here.
pub(crate) type ConsumersHook = Box<dyn Fn(&str, usize) + Send + Sync>;

/// The store name prefix of the named queues (`/queue/<name>`), the ones a cluster shares.
const NAMED_PREFIX: &str = "queue/";

/// Something that happened to a durable queue that operators want to see as it happens.
#[derive(Debug, Clone)]
pub(crate) enum QueueEvent {
    /// A publish was refused because the queue is at its limit.
    Full {
        /// The queue.
        queue: String,
        /// The refused message's topic.
        topic: String,
    },
    /// A message went to the dead-letter queue.
    DeadLettered {
        /// The queue it left.
        queue: String,
        /// Its dead-letter queue.
        dead_letter_queue: String,
        /// The message's topic.
        topic: String,
    },
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The storable form of a message, with its expiry as wall-clock time.
pub(crate) fn to_stored(msg: &Message) -> StoredMessage {
    let now = std::time::Instant::now();
    let expires_ms = msg.expires_at.map(|at| {
        msg.expires_unix_ms.unwrap_or_else(|| now_ms() + at.saturating_duration_since(now).as_millis() as u64)
    });
    StoredMessage::from_message(msg, now_ms(), expires_ms)
}

/// What the store keeps for sessions besides their bindings ([`Durable::saved_sessions`]).
#[derive(Default)]
pub(crate) struct SavedSessions {
    /// When each waiting session ends: (session queue, unix ms).
    pub(crate) deadlines: Vec<(String, u64)>,
    /// The QoS 2 exchanges under way of sessions whose client is away: (session queue, flows).
    pub(crate) qos2: Vec<(String, Qos2Flows)>,
    /// Delayed wills: (key, client id, deadline in unix ms, message).
    pub(crate) wills: Vec<(String, String, u64, Message)>,
}

/// A stored message back as a broker message with id `id`.
pub(crate) fn from_stored(stored: &StoredMessage, id: u64) -> Message {
    let mut msg = stored.to_message(id);
    msg.expires_unix_ms = stored.expires_ms;
    msg.expires_at = stored
        .expires_ms
        .map(|ms| std::time::Instant::now() + std::time::Duration::from_millis(ms.saturating_sub(now_ms())));
    msg
}

/// The client id at the end of a will's key after its prefix: two 16-digit hex numbers (a
/// deadline or a time, and a tag), `/`, the client id.
fn will_key_client(rest: &str) -> Option<&str> {
    rest.get(33..).filter(|_| rest.get(32..33) == Some("/"))
}

/// The big-endian `u32` at `at` in a stored value, if it is that long.
fn be_u32(value: &[u8], at: usize) -> Option<u32> {
    value.get(at..)?.first_chunk().copied().map(u32::from_be_bytes)
}

fn store_err(e: StoreError) -> PublishError {
    PublishError::Store(e.to_string())
}

impl Durable {
    /// Takes over an open store: a run-time queue for every stored queue, and every stored
    /// binding back in the router. Blocking (reads the store); call it at start-up.
    pub(crate) fn restore(store: Store, router: &Router) -> Result<Durable, StoreError> {
        let max_redeliveries = store.config().max_redeliveries;
        let durable = Durable {
            store,
            by_name: Mutex::new(HashMap::new()),
            by_id: DashMap::new(),
            max_redeliveries,
            events: std::sync::OnceLock::new(),
            events_dropped: std::sync::atomic::AtomicU64::new(0),
            consumers_hook: std::sync::OnceLock::new(),
        };
        for info in durable.store.queues() {
            let limits = durable.store.config().queue_defaults;
            durable.insert(Arc::new(Queue::new(info.id, info.name, info.depth > 0, &limits)));
        }
        let mut bindings = 0;
        for (key, value) in durable.store.sessions()? {
            let Some(name) = key.strip_prefix(BINDINGS_KEY) else { continue };
            let Some(queue) = durable.get(name) else {
                tracing::warn!(queue = name, "bindings of a queue that no longer exists; ignored");
                continue;
            };
            let list = decode_bindings(&value)
                .ok_or_else(|| StoreError::Corrupt(format!("bindings record of queue {name}")))?;
            for (filter, qos) in &list {
                router.subscribe(filter, Subscriber::queue(queue.id.0, *qos));
                bindings += 1;
            }
            queue.state.lock().bindings = list;
        }
        for (topic, stored) in durable.store.retained()? {
            let msg = from_stored(&stored, router.next_msg_id());
            if msg.topic.as_str() != topic {
                return Err(StoreError::Corrupt(format!("retained record {topic:?} holds topic {}", msg.topic)));
            }
            router.retained().restore(Arc::new(msg));
        }
        tracing::info!(
            queues = durable.by_id.len(),
            bindings,
            retained = router.retained().len(),
            "durable queues and retained messages restored"
        );
        Ok(durable)
    }

    fn insert(&self, q: Arc<Queue>) {
        self.by_id.insert(q.id.0, q.clone());
        self.by_name.lock().insert(q.name.clone(), q);
    }

    /// The queue called `name`, if it exists.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Queue>> {
        self.by_name.lock().get(name).cloned()
    }

    /// The queue called `name`, created if needed.
    pub(crate) async fn ensure(&self, name: &str) -> Result<Arc<Queue>, StoreError> {
        if let Some(q) = self.get(name) {
            return Ok(q);
        }
        let store = self.store.clone();
        let owned = name.to_string();
        let id = tokio::task::spawn_blocking(move || store.queue(&owned))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))??;
        let mut by_name = self.by_name.lock();
        let limits = self.store.config().queue_defaults;
        let q = by_name
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(Queue::new(id, name.to_string(), false, &limits)));
        self.by_id.insert(id.0, q.clone());
        Ok(q.clone())
    }

    /// The named queue `name` (STOMP `/queue/<name>`, MQTT `$queue/<name>`), created and
    /// bound to its topic if it does not exist yet.
    pub(crate) async fn ensure_named(&self, router: &Router, name: &str) -> Result<(), StoreError> {
        let queue = named_queue(name);
        if self.get(&queue).is_some_and(|q| !q.state.lock().bindings.is_empty()) {
            return Ok(());
        }
        let Ok(filter) = Filter::new(&queue_topic(name)) else { return Ok(()) };
        let q = self.ensure(&queue).await?;
        self.bind(router, &q, filter, Qos::AtLeastOnce, false).await
    }

    /// Binds a queue to a filter (or updates the binding's QoS) and saves the bindings. With
    /// `exclusive` the filter replaces every other binding of the queue (a STOMP durable
    /// subscription has exactly one filter; subscribing again with another one moves it).
    pub(crate) async fn bind(
        &self,
        router: &Router,
        q: &Arc<Queue>,
        filter: Filter,
        qos: Qos,
        exclusive: bool,
    ) -> Result<(), StoreError> {
        router.subscribe(&filter, Subscriber::queue(q.id.0, qos));
        let encoded = {
            let mut st = q.state.lock();
            let before = st.bindings.len();
            if exclusive {
                st.bindings.retain(|(f, _)| {
                    if *f != filter {
                        router.unbind_queue(f, q.id.0);
                    }
                    *f == filter
                });
            }
            let removed = st.bindings.len() != before;
            match st.bindings.iter_mut().find(|(f, _)| *f == filter) {
                Some(b) if b.1 == qos && !removed => return Ok(()),
                Some(b) => b.1 = qos,
                None => st.bindings.push((filter, qos)),
            }
            encode_bindings(&st.bindings)
        };
        self.store.put_session(&format!("{BINDINGS_KEY}{}", q.name), &encoded).await
    }

    /// Removes a queue's binding and saves the bindings.
    pub(crate) async fn unbind(&self, router: &Router, q: &Arc<Queue>, filter: &Filter) -> Result<(), StoreError> {
        router.unbind_queue(filter, q.id.0);
        let encoded = {
            let mut st = q.state.lock();
            let before = st.bindings.len();
            st.bindings.retain(|(f, _)| f != filter);
            if st.bindings.len() == before {
                return Ok(());
            }
            encode_bindings(&st.bindings)
        };
        self.store.put_session(&format!("{BINDINGS_KEY}{}", q.name), &encoded).await
    }

    /// Deletes a queue with its bindings and entries. Returns whether it existed.
    pub(crate) async fn delete(&self, router: &Router, name: &str) -> Result<bool, StoreError> {
        let Some(q) = self.by_name.lock().remove(name) else {
            // A connection that ended after its session queue was deleted may have recorded
            // its expiry and QoS 2 state: they go too.
            self.delete_session_records(name).await?;
            return Ok(false);
        };
        self.by_id.remove(&q.id.0);
        let bindings = std::mem::take(&mut q.state.lock().bindings);
        for (filter, _) in &bindings {
            router.unbind_queue(filter, q.id.0);
        }
        self.store.delete_session(&format!("{BINDINGS_KEY}{name}")).await?;
        self.delete_session_records(name).await?;
        self.store.drop_queue(name).await
    }

    /// Deletes what the sessions partition keeps for queue `name` besides its bindings: its
    /// deadline, QoS 2 exchanges and kept subscriptions.
    async fn delete_session_records(&self, name: &str) -> Result<(), StoreError> {
        for prefix in [EXPIRY_KEY, QOS2_KEY, SUBS_KEY] {
            self.store.delete_session(&format!("{prefix}{name}")).await?;
        }
        Ok(())
    }

    /// Stores a routed message in the durable queues it matched, first half: offers QoS 0 to online consumers and queues
    /// the store write. Writes submitted one after another keep that order in every queue;
    /// the caller awaits [`Append::write`] and then calls [`Durable::complete`], in the same
    /// order, so that a pipelining publisher's messages are dispatched in publish order.
    pub(crate) async fn submit(
        &self,
        msg: &Arc<Message>,
        queues: &[(u64, Qos)],
    ) -> Result<Option<Append>, PublishError> {
        let mut persistent = Vec::new();
        for &(id, qos) in queues {
            let Some(q) = self.by_id.get(&id).map(|q| q.clone()) else { continue };
            if msg.qos.min(qos) >= Qos::AtLeastOnce {
                persistent.push(q);
            } else {
                self.offer_transient(&q, msg);
            }
        }
        if persistent.is_empty() {
            return Ok(None);
        }
        let ids: Vec<QueueId> = persistent.iter().map(|q| q.id).collect();
        let write = self.store.append_submit(&to_stored(msg), &ids).await.map_err(store_err)?;
        Ok(Some(Append { queues: persistent, write: Box::pin(write) }))
    }

    /// Stores a copy of the retained message `msg` in the session queue `queue` alone, for a
    /// subscription just made at `qos` (at least 1): first half, as [`Durable::submit`].
    /// `None` if the queue does not exist.
    pub(crate) async fn submit_retained_copy(
        &self,
        queue: &str,
        msg: &Message,
        id: u64,
        qos: Qos,
    ) -> Result<Option<(Arc<Message>, Append)>, PublishError> {
        let Some(q) = self.get(queue) else { return Ok(None) };
        let mut copy = Message::received(msg.topic.clone(), bytes::Bytes::new(), qos, msg.retain, msg.received_at);
        // The retained message's payload is its own allocation already: shared, not copied.
        copy.payload = msg.payload.clone();
        copy.id = id;
        copy.expires_at = msg.expires_at;
        copy.expires_unix_ms = msg.expires_unix_ms;
        copy.props = msg.props.clone();
        copy.retained_copy = true;
        let copy = Arc::new(copy);
        let append = self.submit(&copy, &[(q.id.0, qos)]).await?;
        Ok(append.map(|append| (copy, append)))
    }

    /// Second half of storing a routed message: hands the stored message to the queues'
    /// consumers, or says which queue refused it.
    pub(crate) async fn complete(
        &self,
        msg: &Arc<Message>,
        queues: Vec<Arc<Queue>>,
        results: Result<Vec<Result<Seq, AppendError>>, StoreError>,
    ) -> Result<(), PublishError> {
        let results = results.map_err(store_err)?;
        let mut full = None;
        for (q, result) in queues.iter().zip(results) {
            match result {
                Ok(seq) => {
                    let work = {
                        let mut st = q.state.lock();
                        q.on_appended(&mut st, seq.0, msg.clone());
                        q.dispatch(&mut st, self.max_redeliveries)
                    };
                    self.run(q, work).await;
                }
                Err(AppendError::QueueFull(_)) => {
                    tracing::warn!(queue = q.name(), "durable queue full; publish refused");
                    self.event(QueueEvent::Full { queue: q.name().to_string(), topic: msg.topic.to_string() });
                    full = Some(q.name().to_string());
                }
                Err(AppendError::UnknownQueue(_)) => {}
            }
        }
        match full {
            Some(name) => Err(PublishError::QueueFull(name)),
            None => Ok(()),
        }
    }

    /// Saves a change of a topic's retained message. `$SYS` topics are not saved.
    pub(crate) async fn save_retained(&self, msg: &Message, change: RetainChange) -> Result<(), StoreError> {
        if msg.topic.is_dollar() && msg.topic.as_str().starts_with("$SYS/") {
            return Ok(());
        }
        match change {
            RetainChange::Stored => self.store.put_retained(msg.topic.as_str(), &to_stored(msg)).await,
            RetainChange::Cleared => self.store.delete_retained(msg.topic.as_str()).await,
            RetainChange::Unchanged => Ok(()),
        }
    }

    /// Records when a session whose client has gone ends if nobody resumes it (unix ms).
    pub(crate) async fn set_session_deadline(&self, queue: &str, deadline_ms: u64) -> Result<(), StoreError> {
        self.store.put_session(&format!("{EXPIRY_KEY}{queue}"), &deadline_ms.to_be_bytes()).await
    }

    /// Records that a session is in use: it does not expire while its client is connected.
    /// Its connection's end records a deadline ([`Durable::set_session_deadline`]); if the
    /// broker stops without ending the connection (`kill -9`, a crash), the next start counts
    /// the session's Session Expiry Interval `expiry_secs` from then, as if the connection had
    /// ended at that start. `None`: the session never expires.
    pub(crate) async fn set_session_in_use(&self, queue: &str, expiry_secs: Option<u32>) -> Result<(), StoreError> {
        let key = format!("{EXPIRY_KEY}{queue}");
        match expiry_secs {
            Some(secs) => self.store.put_session(&key, &secs.to_be_bytes()).await,
            None => self.store.delete_session(&key).await,
        }
    }

    /// Saves the QoS 2 exchanges a session (queue `queue`) has under way while its client is
    /// away, or forgets them (`None`).
    pub(crate) async fn save_qos2(&self, queue: &str, flows: Option<&Qos2Flows>) -> Result<(), StoreError> {
        let key = format!("{QOS2_KEY}{queue}");
        match flows {
            Some(flows) => self.store.put_session(&key, &flows.encode()).await,
            None => self.store.delete_session(&key).await,
        }
    }

    /// Saves a delayed will that is due at `deadline_ms` (unix ms): it is published after a
    /// restart if the broker stopped before. `tag` tells this will from the client's others.
    /// Returns the key to delete it with ([`Durable::delete_will`]).
    pub(crate) async fn save_will(
        &self,
        client_id: &str,
        deadline_ms: u64,
        tag: u64,
        msg: &Message,
    ) -> Result<String, StoreError> {
        let key = format!("{WILL_KEY}{deadline_ms:016x}{tag:016x}/{client_id}");
        let encoded = to_stored(msg).encode().map_err(StoreError::Encode)?;
        self.store.put_session(&key, &encoded).await?;
        Ok(key)
    }

    /// Saves the will of a connected client ([`diglot_core::Action::SaveWill`]): a broker that
    /// stops without closing the connection (`kill -9`, a crash) publishes it when it starts
    /// again, `delay_secs` after that unless the client comes back first, with its Message
    /// Expiry Interval `expiry_secs` counted from then. `tag` (the connection's id) and the
    /// time tell it from the client's other wills. Returns the key to delete it with
    /// ([`Durable::delete_will`]).
    pub(crate) async fn save_connected_will(
        &self,
        client_id: &str,
        tag: u64,
        delay_secs: u32,
        expiry_secs: Option<u32>,
        msg: &Message,
    ) -> Result<String, StoreError> {
        // The time as well as the connection id: connection ids start again with the process.
        let key = format!("{CONNECTED_WILL_KEY}{:016x}{tag:016x}/{client_id}", now_ms());
        let mut stored = to_stored(msg);
        stored.expires_ms = None;
        let mut value = delay_secs.to_be_bytes().to_vec();
        value.extend(expiry_secs.unwrap_or(0).to_be_bytes());
        value.extend(stored.encode().map_err(StoreError::Encode)?);
        self.store.put_session(&key, &value).await?;
        Ok(key)
    }

    /// Deletes a will saved with [`Durable::save_will`] or [`Durable::save_connected_will`]
    /// (published, scheduled, or its client came back).
    pub(crate) async fn delete_will(&self, key: &str) -> Result<(), StoreError> {
        self.store.delete_session(key).await
    }

    /// What the sessions partition keeps for sessions besides their bindings, read in one
    /// pass at start-up. A record that does not decode is logged and left out.
    pub(crate) fn saved_sessions(&self) -> Result<SavedSessions, StoreError> {
        let mut out = SavedSessions::default();
        for (key, value) in self.store.sessions()? {
            if let Some(queue) = key.strip_prefix(EXPIRY_KEY) {
                let deadline = match value.len() {
                    8 => value.first_chunk().copied().map(u64::from_be_bytes),
                    // In use when the broker stopped without ending its connection: that
                    // connection ended now.
                    4 => be_u32(&value, 0).map(|secs| now_ms().saturating_add(u64::from(secs) * 1000)),
                    _ => None,
                };
                match deadline {
                    Some(deadline) => out.deadlines.push((queue.to_string(), deadline)),
                    None => tracing::error!(queue, "corrupt session deadline; left out"),
                }
            } else if let Some(queue) = key.strip_prefix(QOS2_KEY) {
                match Qos2Flows::decode(&value) {
                    Some(flows) => out.qos2.push((queue.to_string(), flows)),
                    None => tracing::error!(queue, "corrupt QoS 2 state of a session; left out"),
                }
            } else if let Some(rest) = key.strip_prefix(WILL_KEY) {
                let parsed = rest
                    .get(..16)
                    .and_then(|d| u64::from_str_radix(d, 16).ok())
                    .zip(will_key_client(rest))
                    .zip(StoredMessage::decode(&value).ok());
                match parsed {
                    Some(((deadline, client_id), stored)) => {
                        let client_id = client_id.to_string();
                        out.wills.push((key, client_id, deadline, from_stored(&stored, 0)));
                    }
                    None => tracing::error!(key = %key.escape_debug(), "corrupt delayed will; left out"),
                }
            } else if let Some(rest) = key.strip_prefix(CONNECTED_WILL_KEY) {
                // The will of a client that was connected when the broker stopped without
                // closing its connection: that connection ended now.
                let client_id = will_key_client(rest);
                let (delay, expiry) = (be_u32(&value, 0), be_u32(&value, 4));
                let stored = value.get(8..).and_then(|b| StoredMessage::decode(b).ok());
                match (client_id, delay, expiry, stored) {
                    (Some(client_id), Some(delay), Some(expiry), Some(stored)) => {
                        let due = std::time::Duration::from_secs(u64::from(delay));
                        let mut msg = from_stored(&stored, 0);
                        msg.expires_at = (expiry > 0)
                            .then(|| std::time::Instant::now() + due + std::time::Duration::from_secs(expiry.into()));
                        let deadline = now_ms() + u64::from(delay) * 1000;
                        out.wills.push((key.clone(), client_id.to_string(), deadline, msg));
                    }
                    _ => tracing::error!(key = %key.escape_debug(), "corrupt will of a connected client; left out"),
                }
            }
        }
        Ok(out)
    }

    /// The subscriptions session queue `queue`'s session keeps outside its bindings. A record
    /// that does not decode is logged and read as none.
    pub(crate) async fn kept_subscriptions(&self, queue: &str) -> Result<Vec<KeptSubscription>, StoreError> {
        // A store read blocks: off the reactor.
        let (store, key) = (self.store.clone(), format!("{SUBS_KEY}{queue}"));
        let read = tokio::task::spawn_blocking(move || store.get_session(&key));
        let Some(bytes) = read.await.map_err(|e| StoreError::Task(e.to_string()))?? else { return Ok(Vec::new()) };
        Ok(KeptSubscription::decode_list(&bytes).unwrap_or_else(|| {
            tracing::error!(queue, "corrupt record of a session's subscriptions; read as none");
            Vec::new()
        }))
    }

    /// Saves the subscriptions session queue `queue`'s session keeps outside its bindings.
    pub(crate) async fn save_subscriptions(&self, queue: &str, subs: &[KeptSubscription]) -> Result<(), StoreError> {
        let key = format!("{SUBS_KEY}{queue}");
        if subs.is_empty() {
            self.store.delete_session(&key).await
        } else {
            self.store.put_session(&key, &KeptSubscription::encode_list(subs)).await
        }
    }

    /// Sends queue events to `tx` from now on (only the first sender set is kept).
    pub(crate) fn send_events_to(&self, tx: tokio::sync::mpsc::Sender<QueueEvent>) {
        let _ = self.events.set(tx);
    }

    /// Hands an event over without waiting; a full channel drops it, and counts the drop.
    fn event(&self, event: QueueEvent) {
        let Some(tx) = self.events.get() else { return };
        if tx.try_send(event).is_err() {
            self.events_dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Calls `observe` with the duration of every store sync (the flush latency histogram).
    pub(crate) fn observe_syncs(&self, observe: impl Fn(std::time::Duration) + Send + Sync + 'static) {
        self.store.observe_syncs(observe);
    }

    /// Why the store refuses writes, if it does (a failed sync).
    pub(crate) fn store_failure(&self) -> Option<String> {
        self.store.failure()
    }

    /// The store's counters (drops, expiries, dead-lettering, syncs).
    pub(crate) fn store_stats(&self) -> diglot_store::StoreStats {
        self.store.stats()
    }

    /// Every queue with its depth, bytes, consumers and lag, ordered by name.
    pub(crate) fn views(&self) -> Vec<QueueView> {
        let queues: Vec<Arc<Queue>> = self.by_name.lock().values().cloned().collect();
        let mut out: Vec<QueueView> = queues
            .iter()
            .map(|q| {
                let (consumers, inflight, bindings) = {
                    let st = q.state.lock();
                    let bindings = st.bindings.iter().map(|(f, _)| f.to_string()).collect();
                    (st.consumers.len(), st.inflight.len() as u64, bindings)
                };
                let (depth, bytes) = self.store.queue_info(q.id).map_or((0, 0), |i| (i.depth, i.bytes));
                QueueView {
                    name: q.name.clone(),
                    depth,
                    bytes,
                    consumers,
                    inflight,
                    lag: depth.saturating_sub(inflight),
                    bindings,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Deletes every entry of queue `name` that is not being delivered right now (those are
    /// settled by their consumers as usual). The queue, its bindings and its consumers stay.
    /// Returns how many entries were deleted, or `None` if there is no such queue.
    pub(crate) async fn purge(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let Some(q) = self.get(name) else { return Ok(None) };
        let mut purged = 0u64;
        // What is in memory and not inflight goes first, then whatever the store still holds.
        let ready: Vec<u64> = {
            let mut st = q.state.lock();
            st.purges += 1;
            let seqs = st.ready.keys().copied().collect();
            st.ready.clear();
            seqs
        };
        for seq in ready {
            match self.store.ack(q.id, Seq(seq)).await {
                Ok(()) => purged += 1,
                Err(StoreError::NoSuchEntry { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let mut after = None;
        loop {
            let store = self.store.clone();
            let id = q.id;
            let batch = tokio::task::spawn_blocking(move || store.read(id, after, 1024))
                .await
                .map_err(|e| StoreError::Task(e.to_string()))??;
            let Some(last) = batch.last().map(|e| e.seq) else { break };
            after = Some(last);
            for entry in batch {
                if q.state.lock().inflight.contains_key(&entry.seq.0) {
                    continue;
                }
                match self.store.ack(q.id, entry.seq).await {
                    Ok(()) => purged += 1,
                    Err(StoreError::NoSuchEntry { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        tracing::info!(queue = name, purged, "queue purged");
        Ok(Some(purged))
    }

    /// Sets what is told of named queues whose consumer count may have changed (once).
    pub(crate) fn set_consumers_hook(&self, hook: ConsumersHook) {
        let _ = self.consumers_hook.set(hook);
    }

    /// Every named queue (`<name>` of `/queue/<name>`) with consumers here, with their count.
    pub(crate) fn named_consumers(&self) -> Vec<(String, usize)> {
        let by_name = self.by_name.lock();
        by_name
            .iter()
            .filter_map(|(name, q)| {
                Some((name.strip_prefix(NAMED_PREFIX)?.to_string(), q.state.lock().consumers.len()))
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// The id the router knows the named queue `name` by, if it exists here.
    pub(crate) fn named_id(&self, name: &str) -> Option<u64> {
        self.get(&diglot_core::named_queue(name)).map(|q| q.id.0)
    }

    fn consumers_changed(&self, q: &Queue, count: usize) {
        if let (Some(hook), Some(name)) = (self.consumers_hook.get(), q.name.strip_prefix(NAMED_PREFIX)) {
            hook(name, count);
        }
    }

    /// Whether a queue has a consumer attached.
    pub(crate) fn has_consumers(&self, name: &str) -> bool {
        self.get(name).is_some_and(|q| !q.state.lock().consumers.is_empty())
    }

    /// Hands a QoS 0 message to one online consumer of the queue, if one has room; it is not
    /// stored, as MQTT allows for QoS 0 [MQTT-3.1.2-5 note].
    fn offer_transient(&self, q: &Queue, msg: &Arc<Message>) {
        let mut st = q.state.lock();
        let n = st.consumers.len();
        if let Some(idx) = (0..n).map(|i| (st.next + i) % n).find(|&i| st.consumers[i].outbox.has_room()) {
            let c = &st.consumers[idx];
            let _ = c.outbox.try_push(Delivery::new(msg.clone(), c.sub, Qos::AtMostOnce));
            st.next = idx + 1;
        }
    }

    /// Attaches a consumer and starts dispatching to it.
    pub(crate) async fn consume(&self, q: &Arc<Queue>, spec: ConsumerSpec) {
        let work = {
            let mut st = q.state.lock();
            st.consumers.retain(|c| !(c.conn == spec.conn && c.sub == spec.sub));
            st.consumers.push(Consumer {
                conn: spec.conn,
                sub: spec.sub,
                outbox: spec.outbox,
                prefetch: usize::from(spec.prefetch.max(1)),
                inflight: 0,
            });
            self.consumers_changed(q, st.consumers.len());
            q.dispatch(&mut st, self.max_redeliveries)
        };
        self.run(q, work).await;
    }

    /// Takes back a delivery that never reached its connection's adapter (the connection
    /// ended with it in its outbox): the entry goes back to the queue with the delivery count
    /// it had, in memory and in the store, so that its next delivery is not flagged as a
    /// redelivery (MQTT DUP, STOMP `redelivered`) and does not count toward
    /// `max_redeliveries`. Call it before [`Durable::detach`], which hands it on.
    pub(crate) async fn unsent(&self, conn: ConnId, at: DurableRef) {
        let Some(q) = self.queue_of(at) else { return };
        {
            let mut st = q.state.lock();
            let Some(i) = q.settle(&mut st, conn, at.seq) else { return };
            st.ready.insert(at.seq, Ready { msg: i.msg, deliveries: i.deliveries.saturating_sub(1) });
        }
        // The store's count was raised by a record submitted when the entry was dispatched;
        // if that record is still on its way, the store may keep one delivery too many, which
        // only a restart would show (as a redelivery flag).
        if let Err(e) = self.store.unrecord_delivery_unsynced(q.id, Seq(at.seq)).await {
            tracing::debug!(queue = q.name(), seq = at.seq, error = %e, "cannot take a delivery record back");
        }
    }

    /// Detaches a connection's consumer (`sub`), or all its consumers of this queue (`None`);
    /// their unacknowledged entries are redelivered to the remaining consumers.
    pub(crate) async fn detach(&self, q: &Arc<Queue>, conn: ConnId, sub: Option<SubId>) {
        let work = {
            let mut st = q.state.lock();
            let before = st.consumers.len();
            q.detach(&mut st, conn, sub);
            if st.consumers.len() != before {
                self.consumers_changed(q, st.consumers.len());
            }
            q.dispatch(&mut st, self.max_redeliveries)
        };
        self.run(q, work).await;
    }

    /// The queue of a durable delivery.
    pub(crate) fn queue_of(&self, at: DurableRef) -> Option<Arc<Queue>> {
        self.by_id.get(&at.queue).map(|q| q.clone())
    }

    /// A consumer acknowledged an entry: delete it and dispatch more.
    ///
    /// The deletion is handed to the store's writer without waiting for its sync: the next
    /// delivery must not wait a group commit per acknowledgement (that capped a drain at about
    /// one message per sync). The entry is settled in memory at once, so it is never delivered
    /// again by this process; a crash before the next sync may redeliver it after the restart,
    /// which at-least-once delivery allows (MQTT DUP=1, STOMP `redelivered:true`).
    pub(crate) async fn ack(&self, conn: ConnId, at: DurableRef) {
        let Some(q) = self.queue_of(at) else { return };
        let settled = q.settle(&mut q.state.lock(), conn, at.seq);
        if settled.is_none() {
            tracing::debug!(queue = q.name(), seq = at.seq, conn, "ack for an entry not inflight to this connection");
            return;
        }
        if let Err(e) = self.store.ack_unsynced(q.id, Seq(at.seq)).await {
            tracing::error!(queue = q.name(), seq = at.seq, error = %e, "cannot delete an acknowledged entry");
        }
        let work = q.dispatch(&mut q.state.lock(), self.max_redeliveries);
        self.run(&q, work).await;
    }

    /// A consumer refused an entry: redeliver it, or dead-letter it.
    pub(crate) async fn nack(&self, conn: ConnId, at: DurableRef, requeue: bool) {
        let Some(q) = self.queue_of(at) else { return };
        let work = {
            let mut st = q.state.lock();
            let Some(i) = q.settle(&mut st, conn, at.seq) else { return };
            if requeue {
                st.ready.insert(at.seq, Ready { msg: i.msg, deliveries: i.deliveries });
                q.dispatch(&mut st, self.max_redeliveries)
            } else {
                let mut work = q.dispatch(&mut st, self.max_redeliveries);
                work.dead.push((at.seq, i.msg));
                work
            }
        };
        self.run(&q, work).await;
    }

    /// Carries out the store work an operation asked for, until there is none left.
    async fn run(&self, q: &Arc<Queue>, mut work: Work) {
        loop {
            if work.is_empty() {
                return;
            }
            if !work.record.is_empty() {
                // Handed to the store's writer, which applies jobs in order; nobody waits for
                // the sync, so neither a slow disk nor a long drain holds up delivery. A crash
                // before the next sync under-counts these deliveries by one.
                let store = self.store.clone();
                let (id, seqs) = (q.id, std::mem::take(&mut work.record));
                tokio::spawn(async move {
                    for seq in seqs {
                        if let Err(e) = store.record_delivery_unsynced(id, Seq(seq)).await {
                            tracing::warn!(queue = %id, seq, error = %e, "cannot record a delivery");
                            return;
                        }
                    }
                });
            }
            for seq in std::mem::take(&mut work.expired) {
                tracing::debug!(queue = q.name(), seq, "message expired before delivery");
                match self.store.ack(q.id, Seq(seq)).await {
                    Ok(()) | Err(StoreError::NoSuchEntry { .. }) => {}
                    Err(e) => tracing::warn!(queue = q.name(), seq, error = %e, "cannot delete an expired entry"),
                }
            }
            for (seq, msg) in std::mem::take(&mut work.dead) {
                self.dead_letter(q, seq, msg).await;
            }
            if std::mem::take(&mut work.load) {
                work = self.load(q).await;
            }
        }
    }

    async fn dead_letter(&self, q: &Arc<Queue>, seq: u64, msg: Arc<Message>) {
        match self.store.dead_letter(q.id, Seq(seq)).await {
            Ok((dlq_id, dlq_seq)) => {
                let dlq_name = format!("$dlq/{}", q.name());
                tracing::warn!(queue = q.name(), seq, dead_letter_queue = %dlq_name, "message dead-lettered");
                self.event(QueueEvent::DeadLettered {
                    queue: q.name().to_string(),
                    dead_letter_queue: dlq_name.clone(),
                    topic: msg.topic.to_string(),
                });
                let dlq = match self.get(&dlq_name) {
                    Some(d) => d,
                    None => {
                        let d = Arc::new(Queue::new(dlq_id, dlq_name, false, &self.store.config().queue_defaults));
                        self.insert(d.clone());
                        d
                    }
                };
                let work = {
                    let mut st = dlq.state.lock();
                    dlq.on_appended(&mut st, dlq_seq.0, msg);
                    dlq.dispatch(&mut st, self.max_redeliveries)
                };
                Box::pin(self.run(&dlq, work)).await;
            }
            Err(StoreError::NoSuchEntry { .. }) => {}
            Err(e) => tracing::error!(queue = q.name(), seq, error = %e, "cannot dead-letter a message"),
        }
    }

    /// Reads the next part of the queue from the store into memory ([`Queue::begin_load`],
    /// [`Queue::end_load`]).
    async fn load(&self, q: &Arc<Queue>) -> Work {
        let Some(after) = q.begin_load(&mut q.state.lock()) else { return Work::default() };
        // Ends the read as failed if it does not end otherwise: on an error, and if this future
        // is dropped while it waits (an HTTP publish whose client went away), so that the queue
        // is not left loading for good.
        let mut unfinished = LoadGuard(Some(q));
        let store = self.store.clone();
        let id = q.id;
        let read = tokio::task::spawn_blocking(move || store.read(id, after.map(Seq), WINDOW)).await;
        let entries = match read {
            Ok(Ok(entries)) => entries,
            Ok(Err(e)) => {
                tracing::error!(queue = q.name(), error = %e, "cannot read a durable queue");
                return Work::default();
            }
            Err(e) => {
                tracing::error!(queue = q.name(), error = %e, "durable queue read task failed");
                return Work::default();
            }
        };
        let exhausted = entries.len() < WINDOW;
        let entries =
            entries.into_iter().map(|e| (e.seq.0, e.delivery_count, Arc::new(from_stored(&e.msg, e.msg_id)))).collect();
        let mut st = q.state.lock();
        q.end_load(&mut st, after, entries, exhausted);
        unfinished.0 = None;
        q.dispatch(&mut st, self.max_redeliveries)
    }

    /// Flushes and closes the store.
    pub(crate) async fn close(&self) {
        if let Err(e) = self.store.clone().close().await {
            tracing::error!(error = %e, "closing the store failed");
        }
    }
}

/// A read of the store under way ([`Durable::load`]): ends it as failed when dropped, unless
/// taken out first.
struct LoadGuard<'a>(Option<&'a Queue>);

impl Drop for LoadGuard<'_> {
    fn drop(&mut self) {
        if let Some(q) = self.0.take() {
            q.load_failed(&mut q.state.lock());
        }
    }
}

/// Bindings as bytes: one `qos<TAB>length<TAB>filter<LF>` record each. The filter is
/// length-prefixed because a filter may itself contain a newline or a tab.
fn encode_bindings(list: &[(Filter, Qos)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (filter, qos) in list {
        out.extend_from_slice(format!("{}\t{}\t", *qos as u8, filter.as_str().len()).as_bytes());
        out.extend_from_slice(filter.as_str().as_bytes());
        out.push(b'\n');
    }
    out
}

fn decode_bindings(mut raw: &[u8]) -> Option<Vec<(Filter, Qos)>> {
    let mut list = Vec::new();
    while !raw.is_empty() {
        let tab = raw.iter().position(|&b| b == b'\t')?;
        let qos = Qos::from_u8(std::str::from_utf8(&raw[..tab]).ok()?.parse().ok()?)?;
        raw = &raw[tab + 1..];
        let tab = raw.iter().position(|&b| b == b'\t')?;
        let len: usize = std::str::from_utf8(&raw[..tab]).ok()?.parse().ok()?;
        raw = &raw[tab + 1..];
        let filter = Filter::new(std::str::from_utf8(raw.get(..len)?).ok()?).ok()?;
        if raw.get(len) != Some(&b'\n') {
            return None;
        }
        raw = &raw[len + 1..];
        list.push((filter, qos));
    }
    Some(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64) -> (u64, u32, Arc<Message>) {
        let topic = diglot_core::Topic::new("t").unwrap();
        (seq, 0, Arc::new(Message::new(topic, bytes::Bytes::from(seq.to_string()), Qos::AtLeastOnce, false)))
    }

    /// An entry appended while the queue reads the store waits for the read's end: put in
    /// memory at once, it went out before the older entries the read stopped short of (in
    /// order of seq, they are next), and one the read had already returned was put in memory a
    /// second time, delivered again after it had been acknowledged.
    #[test]
    fn entries_appended_while_the_store_is_read_keep_their_order_and_come_once() {
        let q = Queue::new(QueueId(1), "q".into(), true, &diglot_store::QueueLimits::default());
        let mut st = q.state.lock();
        // The read from the start returns a full window: more remains in the store.
        let after = q.begin_load(&mut st).expect("a read is due");
        assert_eq!(after, None);
        assert_eq!(q.begin_load(&mut st), None, "one read at a time");
        let newest = WINDOW as u64 + 100;
        let (seq, _, msg) = entry(newest);
        q.on_appended(&mut st, seq, msg);
        let (seq, _, msg) = entry(7);
        q.on_appended(&mut st, seq, msg);
        q.end_load(&mut st, after, (0..WINDOW as u64).map(entry).collect(), false);
        assert_eq!(st.ready.keys().copied().collect::<Vec<_>>(), (0..WINDOW as u64).collect::<Vec<_>>());
        assert_eq!(st.unloaded_from, Some(WINDOW as u64), "the rest of the store is read next, in order");
        // An append whose completion comes after the read took its entry, and after the entry
        // was delivered and acknowledged, does not bring it back.
        st.ready.remove(&9);
        let (seq, _, msg) = entry(9);
        q.on_appended(&mut st, seq, msg);
        assert!(!st.ready.contains_key(&9));
        // The next read, to the end of the store, leaves nothing behind but what was appended
        // during it past what it returned.
        let after = q.begin_load(&mut st).expect("a read is due");
        assert_eq!(after, Some(WINDOW as u64 - 1));
        let (seq, _, msg) = entry(newest + 1);
        q.on_appended(&mut st, seq, msg);
        q.end_load(&mut st, after, (WINDOW as u64..=newest).map(entry).collect(), true);
        assert_eq!(st.unloaded_from, Some(newest + 1));
        assert_eq!(st.ready.len(), WINDOW - 1 + 101, "all but the acknowledged one, once each");
        assert_eq!(st.read_ranges, [(0, newest)], "reads one after another make one range");
        // A failed read keeps everything for the next one.
        let after = q.begin_load(&mut st).expect("a read is due");
        assert_eq!(after, Some(newest));
        let (seq, _, msg) = entry(newest + 2);
        q.on_appended(&mut st, seq, msg);
        q.load_failed(&mut st);
        assert_eq!(st.unloaded_from, Some(newest + 1));
        assert!(!st.loading);
        // A read that a purge overtook is dropped: what it returned may be deleted since.
        let after = q.begin_load(&mut st).expect("a read is due");
        st.purges += 1;
        q.end_load(&mut st, after, vec![entry(newest + 1)], true);
        assert!(!st.ready.contains_key(&(newest + 1)));
        assert_eq!((st.unloaded_from, st.loading), (Some(newest + 1), false), "read again later");
        // A read that returns an acknowledged entry again (its deletion not in the store yet)
        // does not bring it back either.
        st.loading = true;
        q.end_load(&mut st, Some(8), vec![entry(9)], true);
        assert!(!st.ready.contains_key(&9));
    }

    #[test]
    fn bindings_round_trip_and_refuse_garbage() {
        let list = vec![
            (Filter::new("a/+/b").unwrap(), Qos::AtLeastOnce),
            (Filter::new("line\nbreak/#").unwrap(), Qos::AtMostOnce),
        ];
        assert_eq!(decode_bindings(&encode_bindings(&list)).unwrap(), list);
        assert_eq!(decode_bindings(b"").unwrap(), vec![]);
        for bad in [&b"1\t9\tshort\n"[..], b"7\t1\ta\n", b"x", b"1\t1\ta", b"1\t1\ta+\n"] {
            assert!(decode_bindings(bad).is_none(), "{bad:?}");
        }
    }
}
