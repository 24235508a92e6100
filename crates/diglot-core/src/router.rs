//! The router: one topic namespace for every protocol.
//!
//! Adapters subscribe connections to [`Filter`]s and publish [`Message`]s; the router finds the
//! matching subscriptions in the [`Trie`] and pushes one [`Delivery`] per match into each
//! subscriber's bounded [`Outbox`]. It never waits on a subscriber: a full outbox drops QoS 0
//! (counted) or marks the consumer slow.
//!
//! The router does not know protocols, sockets or the store.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use smallvec::SmallVec;

use crate::counter::Counter;
use crate::message::{Delivery, Message, Qos, QueueId};
use crate::outbox::{Outbox, PushOutcome};
use crate::retained::Retained;
use crate::topic::{Filter, Topic};
use crate::trie::Trie;

/// A connection's broker-wide id.
pub type ConnId = u64;

/// A subscription's id, chosen by the subscribing adapter and unique within its connection.
pub type SubId = u32;

/// Where a subscription's matches go.
#[derive(Clone)]
pub enum Target {
    /// Straight into a connection's outbox.
    Conn(Arc<Outbox>),
    /// Into a durable queue: the router only reports the match ([`PublishReport::queues`]);
    /// the caller stores the message and the queue dispatches it to its consumers.
    Queue(QueueId),
}

/// One subscription as the router stores it.
#[derive(Clone)]
pub struct Subscriber {
    /// The subscribing connection (0 for a queue binding).
    pub conn: ConnId,
    /// The adapter's id for this subscription (0 for a queue binding).
    pub sub: SubId,
    /// The highest QoS the subscriber accepts.
    pub qos: Qos,
    /// Where matching deliveries go.
    pub target: Target,
    /// MQTT 5 No Local: skip messages this connection published itself.
    pub no_local: bool,
    /// The share group of an MQTT shared subscription: each message goes to one member.
    pub share: Option<Arc<ShareGroup>>,
    /// MQTT semantics for overlapping subscriptions: one copy per connection, with the highest
    /// QoS of all its matching subscriptions [MQTT-3.3.5-1]. STOMP subscriptions are not
    /// merged: each gets its own MESSAGE.
    pub merge: bool,
}

/// The members of one shared subscription (`$share/<group>/<filter>`) take turns.
#[derive(Debug, Default)]
pub struct ShareGroup {
    next: AtomicUsize,
    /// `$share/<group>/<filter>`: how a cluster names the group (see [`crate::cluster`]).
    key: String,
}

impl ShareGroup {
    /// The group's cluster-wide name, `$share/<group>/<filter>`.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// Whether this node serves a share group (by its [`ShareGroup::key`]) for one message; a
/// cluster node passes one to [`Router::publish_serving`].
pub type Serve<'a> = &'a dyn Fn(&str) -> bool;

impl Subscriber {
    /// A connection's subscription with the given options and no share group.
    pub fn conn(conn: ConnId, sub: SubId, qos: Qos, outbox: Arc<Outbox>, no_local: bool, merge: bool) -> Subscriber {
        Subscriber { conn, sub, qos, target: Target::Conn(outbox), share: None, no_local, merge }
    }

    /// A durable queue's binding to a filter.
    pub fn queue(queue: QueueId, qos: Qos) -> Subscriber {
        Subscriber { conn: 0, sub: 0, qos, target: Target::Queue(queue), share: None, no_local: false, merge: true }
    }

    /// What identifies the subscription on its filter: (connection, sub id) or the queue.
    fn key(&self) -> (bool, u64, SubId) {
        match self.target {
            Target::Conn(_) => (false, self.conn, self.sub),
            Target::Queue(q) => (true, q, 0),
        }
    }
}

/// What one publish did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PublishReport {
    /// Durable queues the message matched, each once, with the highest QoS of its matching
    /// bindings. The caller stores the message in them (QoS ≥ 1) or offers it to their
    /// consumers (QoS 0).
    pub queues: Vec<(QueueId, Qos)>,
    /// Deliveries queued.
    pub delivered: usize,
    /// QoS 0 deliveries dropped at full outboxes.
    pub dropped: usize,
    /// Subscribers found too slow for a QoS ≥ 1 delivery.
    pub slow: usize,
}

/// A routed message that matched durable queues, with them (and the highest QoS of each).
pub type Queued = (Arc<Message>, Vec<(QueueId, Qos)>);

/// Broker-wide message counters.
#[derive(Debug, Default)]
pub struct RouterStats {
    /// Messages published into the router.
    pub published: Counter,
    /// Deliveries queued to subscribers.
    pub delivered: Counter,
    /// Deliveries dropped at full outboxes.
    pub dropped: Counter,
}

/// Told when a filter gets its first plain (not shared) subscription (`true`) or loses its
/// last one (`false`).
pub type InterestHook = Arc<dyn Fn(&Filter, bool) + Send + Sync>;

/// Told a share group's new member count (by its [`ShareGroup::key`]; 0: the last left).
pub type GroupHook = Arc<dyn Fn(&str, usize) + Send + Sync>;

/// Subscriptions per filter and members per share group.
#[derive(Default)]
struct Counts {
    filters: HashMap<Filter, usize>,
    groups: HashMap<String, usize>,
}

/// How many plain subscriptions each filter has and how many members each share group has,
/// for a cluster's view of what this node wants.
#[derive(Default)]
struct Interest {
    counts: Mutex<Counts>,
    hook: std::sync::OnceLock<InterestHook>,
    group_hook: std::sync::OnceLock<GroupHook>,
}

/// The topic router shared by every connection.
pub struct Router {
    trie: RwLock<Trie<Subscriber>>,
    /// Only in a cluster node (see [`Router::tracking_interest`]).
    interest: Option<Interest>,
    shares: Mutex<HashMap<(String, Filter), Weak<ShareGroup>>>,
    retained: Retained,
    next_conn: AtomicU64,
    /// Message ids: shared with the store, which takes its message keys from the same
    /// sequence ([`Router::share_msg_ids`]), so that a message read back from the store never
    /// has the id of another one delivered live.
    next_msg: Arc<AtomicU64>,
    stats: RouterStats,
}

/// A subscription waiting to be merged with the same connection's (or queue's) other
/// matches: (is a queue, connection or queue id), QoS, sub id, target (in the trie, which is
/// read-locked while these live).
type MergeEntry<'g> = ((bool, u64), Qos, SubId, &'g Target);

/// Deliveries staged for their outboxes, pushed in runs to one outbox ([`flush`]); on the stack
/// while small: most batches are a message or a few, to a few subscribers.
type Staged<'g> = SmallVec<[(&'g Outbox, Delivery); 8]>;

/// The subscriptions of one message that merge, on the stack while they are few (one per
/// matching connection, usually one).
type Merge<'g> = SmallVec<[MergeEntry<'g>; 4]>;

thread_local! {
    /// Reused buffer for members of shared subscriptions, keyed by their group.
    static SHARED: RefCell<Vec<(usize, Subscriber)>> = const { RefCell::new(Vec::new()) };
}

impl Default for Router {
    fn default() -> Self {
        Router {
            trie: RwLock::new(Trie::new()),
            interest: None,
            shares: Mutex::new(HashMap::new()),
            retained: Retained::new(),
            next_conn: AtomicU64::new(1),
            next_msg: Arc::new(AtomicU64::new(1)),
            stats: RouterStats::default(),
        }
    }
}

impl Router {
    /// An empty router.
    pub fn new() -> Router {
        Router::default()
    }

    /// An empty router that counts subscriptions per filter, so that a cluster bridge learns
    /// (through [`Router::set_interest_hook`]) which filters this node wants.
    pub fn tracking_interest() -> Router {
        Router { interest: Some(Interest::default()), ..Router::default() }
    }

    /// Sets what is told of filters that gain their first or lose their last subscription.
    /// Does nothing unless the router was made with [`Router::tracking_interest`], or if a
    /// hook is set already.
    pub fn set_interest_hook(&self, hook: InterestHook) {
        if let Some(i) = &self.interest {
            let _ = i.hook.set(hook);
        }
    }

    /// Sets what is told of share groups whose member count changes. Like
    /// [`Router::set_interest_hook`], only with [`Router::tracking_interest`], and once.
    pub fn set_group_hook(&self, hook: GroupHook) {
        if let Some(i) = &self.interest {
            let _ = i.group_hook.set(hook);
        }
    }

    /// The filters with at least one plain (not shared) subscription (empty unless tracking
    /// interest).
    pub fn filters(&self) -> Vec<Filter> {
        self.interest.as_ref().map(|i| i.counts.lock().filters.keys().cloned().collect()).unwrap_or_default()
    }

    /// The share groups with members, by key, with their member count (empty unless tracking
    /// interest).
    pub fn groups(&self) -> Vec<(String, usize)> {
        let Some(i) = &self.interest else { return Vec::new() };
        i.counts.lock().groups.iter().map(|(k, n)| (k.clone(), *n)).collect()
    }

    /// Counts a subscription in or out: a plain one on its filter, a shared one in its group.
    fn count(&self, filter: &Filter, share: Option<&ShareGroup>, added: bool) {
        let Some(i) = &self.interest else { return };
        let mut counts = i.counts.lock();
        // Under the lock, so that the hooks hear the changes in the order they happened.
        if let Some(g) = share {
            let n = counts.groups.entry(g.key.clone()).or_insert(0);
            *n = if added { *n + 1 } else { n.saturating_sub(1) };
            let n = *n;
            if n == 0 {
                counts.groups.remove(&g.key);
            }
            if let Some(hook) = i.group_hook.get() {
                hook(&g.key, n);
            }
            return;
        }
        let changed = if added {
            let n = counts.filters.entry(filter.clone()).or_insert(0);
            *n += 1;
            *n == 1
        } else {
            match counts.filters.get_mut(filter) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    counts.filters.remove(filter);
                    true
                }
                None => false,
            }
        };
        if let (true, Some(hook)) = (changed, i.hook.get()) {
            hook(filter, added);
        }
    }

    /// A fresh connection id.
    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// The retained messages.
    pub fn retained(&self) -> &Retained {
        &self.retained
    }

    /// Broker-wide counters.
    pub fn stats(&self) -> &RouterStats {
        &self.stats
    }

    /// How many subscriptions the router holds.
    pub fn subscription_count(&self) -> usize {
        self.trie.read().len()
    }

    /// The share group `$share/<group>/<filter>`, shared by every member that subscribes to it.
    pub fn share_group(&self, group: &str, filter: &Filter) -> Arc<ShareGroup> {
        let mut shares = self.shares.lock();
        let key = (group.to_string(), filter.clone());
        if let Some(g) = shares.get(&key).and_then(Weak::upgrade) {
            return g;
        }
        shares.retain(|_, w| w.strong_count() > 0);
        let g = Arc::new(ShareGroup { next: AtomicUsize::new(0), key: format!("$share/{group}/{filter}") });
        shares.insert(key, Arc::downgrade(&g));
        g
    }

    /// Adds a subscription. A subscription with the same connection and [`SubId`] on the same
    /// filter is replaced, as MQTT requires for a repeated SUBSCRIBE [MQTT-3.8.4-3].
    /// Returns whether it replaced an existing one (for MQTT 5 Retain Handling 1).
    pub fn subscribe(&self, filter: &Filter, s: Subscriber) -> bool {
        let share = s.share.clone();
        let mut old = None;
        {
            let mut trie = self.trie.write();
            let key = s.key();
            trie.remove(filter, |e| {
                let hit = e.key() == key;
                if hit {
                    old = Some(e.share.clone());
                }
                hit
            });
            trie.insert(filter, s);
        }
        let group_key = |g: &Option<Arc<ShareGroup>>| g.as_ref().map(|g| g.key.clone());
        match &old {
            // Replaced within the same group (or plain by plain): the counts stand.
            Some(o) if group_key(o) == group_key(&share) => {}
            Some(o) => {
                self.count(filter, o.as_deref(), false);
                self.count(filter, share.as_deref(), true);
            }
            None => self.count(filter, share.as_deref(), true),
        }
        old.is_some()
    }

    /// Removes a connection's subscription. Returns whether one existed.
    pub fn unsubscribe(&self, filter: &Filter, conn: ConnId, sub: SubId) -> bool {
        let mut old = None;
        self.trie.write().remove(filter, |e| {
            let hit = e.key() == (false, conn, sub);
            if hit {
                old = Some(e.share.clone());
            }
            hit
        });
        match old {
            Some(share) => {
                self.count(filter, share.as_deref(), false);
                true
            }
            None => false,
        }
    }

    /// Removes a durable queue's binding. Returns whether one existed.
    pub fn unbind_queue(&self, filter: &Filter, queue: QueueId) -> bool {
        let removed = self.trie.write().remove(filter, |e| e.key() == (true, queue, 0)) > 0;
        if removed {
            self.count(filter, None, false);
        }
        removed
    }

    /// Takes message ids from `ids` from now on: the store's sequence of message keys (STOMP
    /// 1.2: every MESSAGE's `message-id` is unique, and a STOMP 1.0 or 1.1 client acknowledges
    /// by it). Call it before the first message is routed.
    pub fn share_msg_ids(&mut self, ids: Arc<AtomicU64>) {
        self.next_msg = ids;
    }

    /// A fresh broker-wide message id.
    pub fn next_msg_id(&self) -> u64 {
        self.next_msg.fetch_add(1, Ordering::Relaxed)
    }

    /// Publishes a message to every matching subscriber and returns the shared message and
    /// what happened. Sets the message id.
    pub fn publish(&self, msg: Message) -> (Arc<Message>, PublishReport) {
        self.route(msg, None, false)
    }

    /// Publishes like [`Router::publish`], but serves only the share groups for which `serve`
    /// says yes: in a cluster, each matched group is served by one node (see
    /// [`crate::cluster::Assignment`]). Plain subscribers and queue bindings all get theirs.
    pub fn publish_serving(&self, msg: Message, serve: Serve<'_>) -> (Arc<Message>, PublishReport) {
        self.route(msg, Some(serve), false)
    }

    /// Publishes to the share groups for which `serve` says yes and to nothing else: in a
    /// cluster, the publishing node serves a group itself when the node it was handed to did
    /// not confirm it in time.
    pub fn publish_groups(&self, msg: Message, serve: Serve<'_>) -> (Arc<Message>, PublishReport) {
        self.route(msg, Some(serve), true)
    }

    fn route(&self, msg: Message, serve: Option<Serve<'_>>, groups_only: bool) -> (Arc<Message>, PublishReport) {
        let trie = self.trie.read();
        let mut merge = Merge::new();
        let mut report = PublishReport::default();
        let msg = self.admit(msg);
        self.route_admitted(&trie, &msg, serve, groups_only, &mut merge, &mut report, &mut |outbox, d, report| {
            push(report, outbox, d)
        });
        drop(merge);
        drop(trie);
        self.count_deliveries(&report);
        (msg, report)
    }

    /// Publishes `msgs` (drained) one after another, each as [`Router::publish`] would, but
    /// under one read of the subscriptions, and with each subscriber's share of a run of
    /// publishes pushed under one lock of its outbox. A run is consecutive messages to the
    /// same topic from the same origin: they match the same subscriptions, so the run is
    /// matched once and each subscriber takes all of it at once (a fan-out of k messages to n
    /// subscribers takes n outbox locks, not k×n). Single messages, and runs whose matches
    /// include a share group or the same connection twice (two STOMP subscriptions on one
    /// destination, whose MESSAGE frames alternate), are routed one at a time, with the
    /// deliveries to one outbox in a row pushed together. Every outbox gets its deliveries in
    /// publish order. Each message that matched durable queues is appended to `queued` with
    /// them, in publish order; the caller stores it.
    pub fn publish_batch(&self, msgs: &mut Vec<Message>, queued: &mut Vec<Queued>) {
        if msgs.is_empty() {
            return;
        }
        let trie = self.trie.read();
        let mut merge = Merge::new();
        let mut staged = Staged::new();
        // A run of messages to one topic, on the stack while short.
        let mut run: SmallVec<[Arc<Message>; 8]> = SmallVec::new();
        let mut conns: Vec<(&Outbox, SubId, Qos)> = Vec::new();
        let mut queues: Vec<(QueueId, Qos)> = Vec::new();
        let mut seen: Vec<usize> = Vec::new();
        let mut total = PublishReport::default();
        let mut msgs = msgs.drain(..).peekable();
        while let Some(first) = msgs.next() {
            run.push(self.admit(first));
            while let Some(m) = msgs.next_if(|m| m.topic == run[0].topic && m.origin == run[0].origin) {
                run.push(self.admit(m));
            }
            if run.iter().any(|m| m.expires_at.is_some()) {
                let now = Instant::now();
                run.retain(|m| !m.is_expired(now));
            }
            let whole = run.len() > 1 && {
                conns.clear();
                queues.clear();
                let shares = SHARED.with(|shared| {
                    let mut shared = shared.borrow_mut();
                    shared.clear();
                    self.collect(&trie, &run[0], false, &mut merge, &mut shared, &mut queues, &mut |o, sub, qos| {
                        conns.push((o, sub, qos))
                    });
                    !shared.is_empty()
                });
                !shares && !repeats_outbox(&conns, &mut seen)
            };
            if whole {
                flush(&mut staged, &mut total);
                for &(outbox, sub, qos) in &conns {
                    let mut deliveries = run.iter().map(|m| Delivery::new(m.clone(), sub, m.qos.min(qos)));
                    outbox.push_all(&mut deliveries, &mut |outcome| count_push(&mut total, outcome));
                }
                if !queues.is_empty() {
                    queued.extend(run.drain(..).map(|m| (m, queues.clone())));
                }
                run.clear();
                continue;
            }
            for msg in run.drain(..) {
                let mut report = PublishReport::default();
                self.route_admitted(&trie, &msg, None, false, &mut merge, &mut report, &mut |outbox, d, _| {
                    staged.push((outbox, d))
                });
                (total.delivered, total.dropped) = (total.delivered + report.delivered, total.dropped + report.dropped);
                if !report.queues.is_empty() {
                    queued.push((msg, report.queues));
                }
            }
        }
        flush(&mut staged, &mut total);
        drop(staged);
        drop(conns);
        drop(merge);
        drop(trie);
        self.count_deliveries(&total);
    }

    fn count_deliveries(&self, report: &PublishReport) {
        if report.delivered > 0 {
            self.stats.delivered.add(report.delivered as u64);
        }
        if report.dropped > 0 {
            self.stats.dropped.add(report.dropped as u64);
        }
    }

    /// Gives a message its id and counts it as published.
    fn admit(&self, mut msg: Message) -> Arc<Message> {
        msg.id = self.next_msg_id();
        self.stats.published.add(1);
        Arc::new(msg)
    }

    /// Routes one admitted message through `trie`: hands every delivery to a connection to
    /// `emit` (in match order, merged per connection where the subscription asks for it),
    /// serves its share groups, and reports the durable queues it matched.
    #[allow(clippy::too_many_arguments)]
    fn route_admitted<'g>(
        &self,
        trie: &'g Trie<Subscriber>,
        msg: &Arc<Message>,
        serve: Option<Serve<'_>>,
        groups_only: bool,
        merge: &mut Merge<'g>,
        report: &mut PublishReport,
        emit: &mut dyn FnMut(&'g Outbox, Delivery, &mut PublishReport),
    ) {
        // No clock read for the usual message, which does not expire.
        if msg.expires_at.is_some() && msg.is_expired(Instant::now()) {
            return;
        }
        let mut queues = std::mem::take(&mut report.queues);
        SHARED.with(|shared| {
            let mut shared = shared.borrow_mut();
            shared.clear();
            self.collect(trie, msg, groups_only, merge, &mut shared, &mut queues, &mut |outbox, sub, qos| {
                emit(outbox, Delivery::new(msg.clone(), sub, msg.qos.min(qos)), report)
            });
            report.queues = queues;
            deliver_shared(report, msg, &mut shared, serve);
        });
    }

    /// The subscriptions `msg` matches in `trie`: each connection's (or, for subscriptions
    /// that merge, each connection's highest QoS, once) to `conn` with the subscription's
    /// QoS, in match order; each durable queue once with its highest QoS to `queues`; and the
    /// members of share groups to `shared`, by group.
    #[allow(clippy::too_many_arguments)]
    fn collect<'g>(
        &self,
        trie: &'g Trie<Subscriber>,
        msg: &Message,
        groups_only: bool,
        merge: &mut Merge<'g>,
        shared: &mut Vec<(usize, Subscriber)>,
        queues: &mut Vec<(QueueId, Qos)>,
        conn: &mut dyn FnMut(&'g Outbox, SubId, Qos),
    ) {
        merge.clear();
        trie.for_each_match(&msg.topic, |s| {
            if s.no_local && msg.origin == Some(s.conn) {
                return;
            }
            if let Some(group) = &s.share {
                shared.push((Arc::as_ptr(group) as usize, s.clone()));
                return;
            }
            if groups_only {
                return;
            }
            match &s.target {
                Target::Conn(outbox) if !s.merge => conn(outbox, s.sub, s.qos),
                target => {
                    let key = s.key();
                    merge.push(((key.0, key.1), s.qos, s.sub, target));
                }
            }
        });
        if merge.len() > 1 {
            // Highest QoS first within each connection or queue, then keep the first of each.
            merge.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            merge.dedup_by_key(|e| e.0);
        }
        for (_, qos, sub, target) in merge.drain(..) {
            match target {
                Target::Conn(outbox) => conn(outbox, sub, qos),
                Target::Queue(q) => queues.push((*q, qos)),
            }
        }
    }

    /// Whether any subscription matches `topic`.
    pub fn has_subscribers(&self, topic: &Topic) -> bool {
        let mut any = false;
        self.trie.read().for_each_match(topic, |_| any = true);
        any
    }
}

/// Gives each matched share group's message to one member: the next in turn that has room,
/// or the next in turn if none has.
fn deliver_shared(
    report: &mut PublishReport,
    msg: &Arc<Message>,
    shared: &mut Vec<(usize, Subscriber)>,
    serve: Option<Serve<'_>>,
) {
    if shared.is_empty() {
        return;
    }
    shared.sort_by_key(|(g, s)| (*g, s.conn, s.sub));
    let mut start = 0;
    while start < shared.len() {
        let group = shared[start].0;
        let end = start + shared[start..].iter().take_while(|(g, _)| *g == group).count();
        let members = &shared[start..end];
        let Some(g) = &members[0].1.share else { break };
        if serve.is_some_and(|serve| !serve(&g.key)) {
            start = end;
            continue;
        }
        let first = g.next.fetch_add(1, Ordering::Relaxed) % members.len();
        let has_room = |s: &Subscriber| match &s.target {
            Target::Conn(o) => o.has_room(),
            Target::Queue(_) => true,
        };
        let pick = (0..members.len()).map(|i| (first + i) % members.len()).find(|&i| has_room(&members[i].1));
        let chosen = &members[pick.unwrap_or(first)].1;
        match &chosen.target {
            Target::Conn(outbox) => {
                let qos = msg.qos.min(chosen.qos);
                push(report, outbox, Delivery::new(msg.clone(), chosen.sub, qos));
            }
            Target::Queue(q) => report.queues.push((*q, chosen.qos)),
        }
        start = end;
    }
    shared.clear();
}

/// Pushes what was staged, each outbox's deliveries under one lock. Messages to different
/// topics (a fleet's) are routed one at a time, so the deliveries to one subscriber come
/// between the others': when more than one message was staged, they are brought together
/// first by a stable sort on the outbox, which keeps each outbox's deliveries in the order
/// they were staged. Nothing orders deliveries to different outboxes against each other.
fn flush(staged: &mut Staged<'_>, total: &mut PublishReport) {
    if let (Some((_, first)), Some((_, last))) = (staged.first(), staged.last()) {
        if !Arc::ptr_eq(&first.msg, &last.msg) {
            staged.sort_by_key(|(o, _)| std::ptr::from_ref::<Outbox>(*o) as usize);
        }
    }
    let mut staged = staged.drain(..).peekable();
    while let Some((outbox, first)) = staged.next() {
        let mut run = std::iter::once(first)
            .chain(std::iter::from_fn(|| staged.next_if(|(o, _)| std::ptr::eq(*o, outbox)).map(|(_, d)| d)));
        outbox.push_all(&mut run, &mut |outcome| count_push(total, outcome));
    }
}

/// Whether two of `conns` go to the same outbox (`seen` is scratch space).
fn repeats_outbox(conns: &[(&Outbox, SubId, Qos)], seen: &mut Vec<usize>) -> bool {
    if conns.len() < 2 {
        return false;
    }
    seen.clear();
    seen.extend(conns.iter().map(|(o, _, _)| std::ptr::from_ref::<Outbox>(*o) as usize));
    seen.sort_unstable();
    seen.windows(2).any(|w| w[0] == w[1])
}

fn push(report: &mut PublishReport, outbox: &Outbox, d: Delivery) {
    count_push(report, outbox.try_push(d));
}

fn count_push(report: &mut PublishReport, outcome: PushOutcome) {
    match outcome {
        PushOutcome::Queued => report.delivered += 1,
        PushOutcome::Dropped => report.dropped += 1,
        PushOutcome::SlowConsumer => report.slow += 1,
        PushOutcome::Closed => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn sub(r: &Router, f: &str, conn: ConnId, id: SubId, qos: Qos, merge: bool) -> Arc<Outbox> {
        let outbox = Arc::new(Outbox::new(100, 1 << 20));
        r.subscribe(&Filter::new(f).unwrap(), Subscriber::conn(conn, id, qos, outbox.clone(), false, merge));
        outbox
    }

    fn msg(t: &str, qos: Qos) -> Message {
        Message::new(Topic::new(t).unwrap(), Bytes::from_static(b"x"), qos, false)
    }

    #[test]
    fn merges_overlapping_mqtt_subscriptions() {
        let r = Router::new();
        let o = sub(&r, "a/+", 1, 1, Qos::AtMostOnce, true);
        r.subscribe(&Filter::new("a/#").unwrap(), Subscriber::conn(1, 2, Qos::AtLeastOnce, o.clone(), false, true));
        let (_, rep) = r.publish(msg("a/b", Qos::AtLeastOnce));
        assert_eq!(rep.delivered, 1);
        let mut v = Vec::new();
        o.drain(&mut v, 10);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].qos, Qos::AtLeastOnce);
        assert_eq!(v[0].sub, 2);
    }

    #[test]
    fn a_batch_routes_like_publishes_one_by_one() {
        let r = Router::new();
        let a = sub(&r, "t/+", 1, 1, Qos::AtMostOnce, true);
        r.subscribe(&Filter::new("t/#").unwrap(), Subscriber::conn(1, 2, Qos::AtLeastOnce, a.clone(), false, true));
        let b = sub(&r, "t/x", 2, 1, Qos::AtMostOnce, false);
        r.subscribe(&Filter::new("t/#").unwrap(), Subscriber::queue(9, Qos::AtLeastOnce));
        let mut msgs: Vec<Message> = (0..5u8)
            .map(|i| {
                let t = if i % 2 == 0 { "t/x" } else { "t/y" };
                Message::new(Topic::new(t).unwrap(), Bytes::from(vec![i]), Qos::AtLeastOnce, false)
            })
            .collect();
        let mut queued = Vec::new();
        r.publish_batch(&mut msgs, &mut queued);
        assert!(msgs.is_empty());
        let drained = |o: &Outbox| {
            let mut v = Vec::new();
            o.drain(&mut v, 100);
            v.iter().map(|d| (d.msg.payload[0], d.sub, d.qos)).collect::<Vec<_>>()
        };
        // Merged per connection (one copy, the highest QoS), in publish order.
        assert_eq!(drained(&a), (0..5).map(|i| (i, 2, Qos::AtLeastOnce)).collect::<Vec<_>>());
        // Only the matching messages, downgraded to the subscription's QoS.
        assert_eq!(drained(&b), [(0, 1, Qos::AtMostOnce), (2, 1, Qos::AtMostOnce), (4, 1, Qos::AtMostOnce)]);
        assert_queued(&queued, &[0, 1, 2, 3, 4], &[(9, Qos::AtLeastOnce)]);
        assert_eq!((r.stats().published.get(), r.stats().delivered.get()), (5, 8));
    }

    #[test]
    fn a_batch_routes_runs_of_one_topic_to_each_subscriber_at_once_in_publish_order() {
        let r = Router::new();
        // Plain subscribers of t/x, one of them MQTT-merged over two filters.
        let a = sub(&r, "t/+", 1, 1, Qos::AtMostOnce, true);
        r.subscribe(&Filter::new("t/#").unwrap(), Subscriber::conn(1, 2, Qos::AtMostOnce, a.clone(), false, true));
        let c = sub(&r, "t/x", 3, 1, Qos::AtMostOnce, false);
        // A publisher that subscribed itself with No Local.
        let own = Arc::new(Outbox::new(100, 1 << 20));
        r.subscribe(&Filter::new("t/#").unwrap(), Subscriber::conn(7, 1, Qos::AtMostOnce, own.clone(), true, true));
        r.subscribe(&Filter::new("t/#").unwrap(), Subscriber::queue(9, Qos::AtMostOnce));
        // Payloads 0..=6: topics x x x y y x x; payload 4 (on t/y) has expired.
        let topics = ["t/x", "t/x", "t/x", "t/y", "t/y", "t/x", "t/x"];
        let mut msgs: Vec<Message> = topics
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut m = Message::new(Topic::new(t).unwrap(), Bytes::from(vec![i as u8]), Qos::AtMostOnce, false);
                m.origin = Some(7);
                if i == 4 {
                    m.expires_at = Some(Instant::now());
                }
                m
            })
            .collect();
        let mut queued = Vec::new();
        r.publish_batch(&mut msgs, &mut queued);
        let drained = |o: &Outbox| {
            let mut v = Vec::new();
            o.drain(&mut v, 100);
            v.iter().map(|d| (d.msg.payload[0], d.sub)).collect::<Vec<_>>()
        };
        assert_eq!(drained(&a), [(0, 2), (1, 2), (2, 2), (3, 2), (5, 2), (6, 2)]);
        assert_eq!(drained(&c), [(0, 1), (1, 1), (2, 1), (5, 1), (6, 1)]);
        assert!(own.is_empty(), "no local");
        assert_queued(&queued, &[0, 1, 2, 3, 5, 6], &[(9, Qos::AtMostOnce)]);
        assert_eq!((r.stats().published.get(), r.stats().delivered.get()), (7, 11));
    }

    #[test]
    fn a_batch_of_a_fleet_s_topics_reaches_each_subscriber_in_publish_order() {
        // Every message to a topic of its own, so each is routed alone and the deliveries
        // are brought together per outbox before they are pushed.
        let r = Router::new();
        let outbox = || Arc::new(Outbox::new(1000, 1 << 20));
        let (all, evens, stomp) = (outbox(), outbox(), outbox());
        r.subscribe(&Filter::new("d/#").unwrap(), Subscriber::conn(1, 1, Qos::AtMostOnce, all.clone(), false, true));
        r.subscribe(
            &Filter::new("d/+/even").unwrap(),
            Subscriber::conn(2, 1, Qos::AtMostOnce, evens.clone(), false, true),
        );
        // Two STOMP subscriptions of one connection: each message's two frames stay together.
        for id in [1, 2] {
            r.subscribe(
                &Filter::new("d/#").unwrap(),
                Subscriber::conn(3, id, Qos::AtMostOnce, stomp.clone(), false, false),
            );
        }
        let mut msgs: Vec<Message> = (0..200u8)
            .map(|i| {
                let t = format!("d/{i}/{}", if i % 2 == 0 { "even" } else { "odd" });
                Message::new(Topic::new(&t).unwrap(), Bytes::from(vec![i]), Qos::AtMostOnce, false)
            })
            .collect();
        r.publish_batch(&mut msgs, &mut Vec::new());
        let drained = |o: &Outbox| {
            let mut v = Vec::new();
            o.drain(&mut v, 1000);
            v.iter().map(|d| (d.msg.payload[0], d.sub)).collect::<Vec<_>>()
        };
        assert_eq!(drained(&all), (0..200).map(|i| (i, 1)).collect::<Vec<_>>());
        assert_eq!(drained(&evens), (0..200).step_by(2).map(|i| (i, 1)).collect::<Vec<_>>());
        assert_eq!(drained(&stomp), (0..200).flat_map(|i| [(i, 1), (i, 2)]).collect::<Vec<_>>());
        assert_eq!(r.stats().delivered.get(), 200 + 100 + 400);
    }

    /// `queued` holds the messages with these one-byte payloads, in publish order (and
    /// increasing ids), each with `queues`.
    fn assert_queued(queued: &[Queued], payloads: &[u8], queues: &[(QueueId, Qos)]) {
        let order: Vec<u8> = queued.iter().map(|(m, _)| m.payload[0]).collect();
        assert_eq!(order, payloads);
        assert!(queued.iter().all(|(_, q)| q == queues));
        let ids: Vec<u64> = queued.iter().map(|(m, _)| m.id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in publish order: {ids:?}");
    }

    #[test]
    fn a_batch_keeps_two_subscriptions_of_one_connection_alternating_and_serves_groups() {
        let r = Router::new();
        // One STOMP connection with two subscriptions that match the same messages: each
        // message's two MESSAGE frames come together, as when published one by one.
        let b = sub(&r, "t/x", 2, 1, Qos::AtMostOnce, false);
        r.subscribe(&Filter::new("t/#").unwrap(), Subscriber::conn(2, 2, Qos::AtMostOnce, b.clone(), false, false));
        let mut msgs: Vec<Message> = (0..3u8)
            .map(|i| Message::new(Topic::new("t/x").unwrap(), Bytes::from(vec![i]), Qos::AtMostOnce, false))
            .collect();
        r.publish_batch(&mut msgs, &mut Vec::new());
        let mut v = Vec::new();
        b.drain(&mut v, 100);
        let got: Vec<(u8, SubId)> = v.iter().map(|d| (d.msg.payload[0], d.sub)).collect();
        let payloads: Vec<u8> = got.iter().map(|g| g.0).collect();
        assert_eq!(payloads, [0, 0, 1, 1, 2, 2], "{got:?}");
        assert!(got.chunks(2).all(|pair| pair[0].1 != pair[1].1), "{got:?}");

        // A share group matched by a run still takes turns, one member per message.
        let f = Filter::new("jobs/+").unwrap();
        let g = r.share_group("workers", &f);
        let members: Vec<Arc<Outbox>> = (0..2).map(|_| Arc::new(Outbox::new(100, 1 << 20))).collect();
        for (i, o) in members.iter().enumerate() {
            let mut s = Subscriber::conn(10 + i as u64, 1, Qos::AtMostOnce, o.clone(), false, true);
            s.share = Some(g.clone());
            r.subscribe(&f, s);
        }
        let plain = sub(&r, "jobs/#", 20, 1, Qos::AtMostOnce, true);
        let mut msgs: Vec<Message> = (0..6).map(|_| msg("jobs/a", Qos::AtMostOnce)).collect();
        r.publish_batch(&mut msgs, &mut Vec::new());
        assert_eq!((members[0].len(), members[1].len(), plain.len()), (3, 3, 6));
    }

    #[test]
    fn a_batch_drops_qos0_at_a_full_outbox_and_counts_it() {
        let r = Router::new();
        let small = Arc::new(Outbox::new(2, 1 << 20));
        r.subscribe(&Filter::new("t").unwrap(), Subscriber::conn(1, 1, Qos::AtMostOnce, small.clone(), false, true));
        let mut msgs: Vec<Message> = (0..5).map(|_| msg("t", Qos::AtMostOnce)).collect();
        r.publish_batch(&mut msgs, &mut Vec::new());
        let mut v = Vec::new();
        small.drain(&mut v, 10);
        assert_eq!(v.len(), 2);
        assert_eq!((r.stats().delivered.get(), r.stats().dropped.get(), small.dropped()), (2, 3, 3));
    }

    #[test]
    fn stomp_subscriptions_each_get_a_copy() {
        let r = Router::new();
        let o = sub(&r, "a/+", 1, 1, Qos::AtLeastOnce, false);
        r.subscribe(&Filter::new("a/#").unwrap(), Subscriber::conn(1, 2, Qos::AtLeastOnce, o.clone(), false, false));
        assert_eq!(r.publish(msg("a/b", Qos::AtMostOnce)).1.delivered, 2);
    }

    #[test]
    fn downgrades_qos_and_unsubscribes() {
        let r = Router::new();
        let o = sub(&r, "x", 7, 1, Qos::AtMostOnce, true);
        r.publish(msg("x", Qos::AtLeastOnce));
        let mut v = Vec::new();
        o.drain(&mut v, 10);
        assert_eq!(v[0].qos, Qos::AtMostOnce);
        assert!(r.unsubscribe(&Filter::new("x").unwrap(), 7, 1));
        assert!(!r.unsubscribe(&Filter::new("x").unwrap(), 7, 1));
        assert_eq!(r.publish(msg("x", Qos::AtLeastOnce)).1.delivered, 0);
    }

    #[test]
    fn queues_are_reported_once_with_their_highest_qos() {
        let r = Router::new();
        r.subscribe(&Filter::new("a/+").unwrap(), Subscriber::queue(9, Qos::AtMostOnce));
        r.subscribe(&Filter::new("a/#").unwrap(), Subscriber::queue(9, Qos::AtLeastOnce));
        r.subscribe(&Filter::new("a/#").unwrap(), Subscriber::queue(4, Qos::AtLeastOnce));
        let (_, rep) = r.publish(msg("a/b", Qos::AtLeastOnce));
        let mut queues = rep.queues.clone();
        queues.sort();
        assert_eq!(queues, vec![(4, Qos::AtLeastOnce), (9, Qos::AtLeastOnce)]);
        assert!(r.unbind_queue(&Filter::new("a/#").unwrap(), 9));
        assert!(!r.unbind_queue(&Filter::new("a/#").unwrap(), 9));
        assert_eq!(r.publish(msg("a/b", Qos::AtLeastOnce)).1.queues.len(), 2);
    }

    #[test]
    fn a_share_group_gives_each_message_to_one_member_in_turn() {
        let r = Router::new();
        let f = Filter::new("jobs/+").unwrap();
        let g = r.share_group("workers", &f);
        let outboxes: Vec<Arc<Outbox>> = (0..3).map(|_| Arc::new(Outbox::new(100, 1 << 20))).collect();
        for (i, o) in outboxes.iter().enumerate() {
            let mut s = Subscriber::conn(i as u64 + 1, 1, Qos::AtLeastOnce, o.clone(), false, true);
            s.share = Some(g.clone());
            r.subscribe(&f, s);
        }
        // Another group on the same filter gets its own copy of each message.
        let other = Arc::new(Outbox::new(100, 1 << 20));
        let mut s = Subscriber::conn(9, 1, Qos::AtLeastOnce, other.clone(), false, true);
        s.share = Some(r.share_group("audit", &f));
        r.subscribe(&f, s);
        for _ in 0..9 {
            assert_eq!(r.publish(msg("jobs/a", Qos::AtLeastOnce)).1.delivered, 2);
        }
        for o in &outboxes {
            assert_eq!(o.len(), 3, "round robin");
        }
        assert_eq!(other.len(), 9);
        assert!(Arc::ptr_eq(&g, &r.share_group("workers", &f)));
    }

    #[test]
    fn expired_messages_are_not_routed() {
        let r = Router::new();
        let o = sub(&r, "x", 1, 1, Qos::AtMostOnce, true);
        let mut m = msg("x", Qos::AtMostOnce);
        m.expires_at = Some(Instant::now());
        assert_eq!(r.publish(m).1.delivered, 0);
        assert!(o.is_empty());
    }

    #[test]
    fn interest_hears_first_and_last_subscriptions_only() {
        let r = Router::tracking_interest();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        r.set_interest_hook(Arc::new(move |f: &Filter, added| s.lock().push((f.to_string(), added))));
        sub(&r, "a/+", 1, 1, Qos::AtMostOnce, true);
        sub(&r, "a/+", 2, 1, Qos::AtMostOnce, true);
        sub(&r, "a/+", 2, 1, Qos::AtLeastOnce, true);
        assert_eq!(r.filters().len(), 1);
        r.unsubscribe(&Filter::new("a/+").unwrap(), 1, 1);
        r.unsubscribe(&Filter::new("a/+").unwrap(), 2, 1);
        assert!(r.filters().is_empty());
        assert_eq!(*seen.lock(), vec![("a/+".to_string(), true), ("a/+".to_string(), false)]);
        assert!(Router::new().filters().is_empty(), "a plain router counts nothing");
    }

    #[test]
    fn publish_serving_skips_the_groups_served_elsewhere() {
        let r = Router::tracking_interest();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        r.set_group_hook(Arc::new(move |k: &str, n| s.lock().push((k.to_string(), n))));
        let f = Filter::new("jobs/+").unwrap();
        let mut outboxes = Vec::new();
        for (conn, group) in [(1, "a"), (2, "a"), (3, "b")] {
            let o = Arc::new(Outbox::new(100, 1 << 20));
            let mut s = Subscriber::conn(conn, 1, Qos::AtLeastOnce, o.clone(), false, true);
            s.share = Some(r.share_group(group, &f));
            r.subscribe(&f, s);
            outboxes.push(o);
        }
        let plain = sub(&r, "jobs/#", 4, 1, Qos::AtLeastOnce, true);
        assert_eq!(r.filters(), vec![Filter::new("jobs/#").unwrap()], "shared members are not plain interest");
        let mut groups = r.groups();
        groups.sort();
        assert_eq!(groups, vec![("$share/a/jobs/+".to_string(), 2), ("$share/b/jobs/+".to_string(), 1)]);
        let (_, rep) = r.publish_serving(msg("jobs/x", Qos::AtLeastOnce), &|k| k == "$share/b/jobs/+");
        assert_eq!(rep.delivered, 2, "the plain subscriber and group b");
        assert_eq!((outboxes[0].len() + outboxes[1].len(), outboxes[2].len(), plain.len()), (0, 1, 1));
        // A hand-off that was not confirmed: only the group, not the plain subscriber again.
        let (_, rep) = r.publish_groups(msg("jobs/x", Qos::AtLeastOnce), &|k| k == "$share/a/jobs/+");
        assert_eq!(rep.delivered, 1, "group a only");
        assert_eq!((outboxes[0].len() + outboxes[1].len(), outboxes[2].len(), plain.len()), (1, 1, 1));
        assert!(r.unsubscribe(&f, 1, 1));
        assert!(r.unsubscribe(&f, 3, 1));
        assert_eq!(r.groups(), vec![("$share/a/jobs/+".to_string(), 1)]);
        assert_eq!(seen.lock().last(), Some(&("$share/b/jobs/+".to_string(), 0)));
        assert_eq!(seen.lock().len(), 5);
    }

    #[test]
    fn resubscribe_replaces() {
        let r = Router::new();
        sub(&r, "x", 7, 1, Qos::AtMostOnce, true);
        sub(&r, "x", 7, 1, Qos::AtLeastOnce, true);
        assert_eq!(r.subscription_count(), 1);
    }
}
