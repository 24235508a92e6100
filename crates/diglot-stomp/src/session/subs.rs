//! A session's subscriptions and the messages they have delivered but not yet had acked.
//!
//! Each STOMP subscription id (the client's string) maps to a [`SubId`] this module allocates
//! for the router. Subscriptions with `ack:client` or `ack:client-individual` remember every
//! MESSAGE until it is ACKed or NACKed; the total across subscriptions is the connection's
//! prefetch window, bounded by `Limits::max_inflight`.
//!
//! STOMP 1.2 "SUBSCRIBE ack Header": with `client` an ACK is cumulative (it acknowledges that
//! message and every earlier one on the subscription); with `client-individual` it
//! acknowledges that message only. NACK has the same reach.
//!
//! A subscription's messages come from a [`Source`]: the router (a plain `/topic/`
//! subscription) or a durable queue (a `/queue/` subscription or a durable topic
//! subscription). A delivery from a durable queue carries a [`DurableRef`], kept with its
//! unacked entry, so that settling it tells the session which store entries to ACK or NACK.
//!
//! The unacked bookkeeping itself lives in memory: it is forgotten when the subscription or
//! the connection ends. For a durable queue that is safe, because the store still holds every
//! unacknowledged entry and the driver redelivers it when the consumer detaches.

use std::collections::{HashMap, VecDeque};

use rustc_hash::FxHashMap;

use diglot_core::{DurableRef, Filter, SubId};

/// A subscription's `ack` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckMode {
    /// The server considers a message acknowledged once sent.
    Auto,
    /// ACK is cumulative.
    Client,
    /// ACK covers one message.
    ClientIndividual,
}

impl AckMode {
    /// Parses an `ack` header; absent means `auto`.
    pub(crate) fn parse(value: Option<&str>) -> Option<AckMode> {
        match value {
            None | Some("auto") => Some(AckMode::Auto),
            Some("client") => Some(AckMode::Client),
            Some("client-individual") => Some(AckMode::ClientIndividual),
            Some(_) => None,
        }
    }
}

/// Where a subscription's messages come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// The router, through a plain subscription on this filter.
    Topic(Filter),
    /// The named durable queue (`/queue/<name>`), shared with other consumers.
    Queue(String),
    /// The durable queue of a durable topic subscription, owned by this client.
    Durable(String),
    /// The router, through a subscription on the session's temporary queue `name`
    /// (`/temp-queue/<name>`, whose canonical topic is `filter`).
    Temp {
        /// The name after `/temp-queue/`.
        name: String,
        /// `$temp/<session>/<name>`.
        filter: Filter,
    },
}

/// One delivered, unacknowledged message.
#[derive(Debug, Clone, Copy)]
struct Unacked {
    /// The session-unique ack id (the `ack` header in STOMP 1.2).
    ack: u64,
    /// The broker's message id (the `message-id` header).
    msg: u64,
    /// Where the store keeps it, for a delivery from a durable queue.
    durable: Option<DurableRef>,
}

/// One STOMP subscription.
#[derive(Debug)]
pub(crate) struct Sub {
    /// The client's id for it.
    pub(crate) id: String,
    /// The id has nothing to escape, so it is written as it is in every version (a MESSAGE
    /// for it may then be one that another subscriber's delivery encoded).
    pub(crate) plain_id: bool,
    /// A plain id shorter than eight bytes, with the line feed after it, as one word: a
    /// MESSAGE's `subscription` line is checked against it in one comparison.
    pub(crate) id_line: Option<IdLine>,
    /// Where its messages come from.
    pub(crate) source: Source,
    /// The ack mode.
    pub(crate) ack: AckMode,
    /// Delivered and unacknowledged messages, oldest first (ack ids increase).
    unacked: VecDeque<Unacked>,
}

/// A subscription id of at most seven bytes and the line feed that ends it, read as a
/// little-endian word, and the mask of the word's bytes they fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IdLine {
    word: u64,
    mask: u64,
}

impl IdLine {
    fn new(id: &str) -> Option<IdLine> {
        let id = id.as_bytes();
        if id.len() >= 8 {
            return None;
        }
        let mut line = [0u8; 8];
        line[..id.len()].copy_from_slice(id);
        line[id.len()] = b'\n';
        Some(IdLine { word: u64::from_le_bytes(line), mask: u64::MAX >> (8 * (7 - id.len())) })
    }

    /// Whether `at` starts with this id and its line feed.
    pub(crate) fn starts(self, at: &[u8]) -> bool {
        at.first_chunk::<8>().is_some_and(|w| u64::from_le_bytes(*w) & self.mask == self.word)
    }
}

/// A message an ACK or NACK refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target {
    sub: SubId,
    ack: u64,
}

/// What an ACK or NACK says about the messages it settles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// ACK: done with them.
    Ack,
    /// NACK: refused; durable ones go back to their queue (`requeue`) or to the dead-letter
    /// queue.
    Nack {
        /// Redeliver rather than dead-letter.
        requeue: bool,
    },
}

/// Why a subscription could not be added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AddError {
    /// The id is already in use on this connection.
    Duplicate,
    /// The connection holds `max_subscriptions` already.
    TooMany,
}

/// Every subscription of one session.
#[derive(Debug)]
pub(crate) struct Subscriptions {
    by_id: HashMap<String, SubId>,
    /// Keyed by the broker's own ids, so hashed with FxHash (no SipHash per delivery).
    subs: FxHashMap<SubId, Sub>,
    /// Which subscription holds each unacked ack id.
    /// Ack ids are the broker's, sequential; a client's ACK only looks one up.
    by_ack: FxHashMap<u64, SubId>,
    /// How many subscriptions read each temporary queue (by name).
    temps: HashMap<String, usize>,
    next_sub: SubId,
    next_ack: u64,
    max: usize,
}

impl Subscriptions {
    /// No subscriptions; at most `max` at a time.
    pub(crate) fn new(max: usize) -> Subscriptions {
        Subscriptions {
            by_id: HashMap::new(),
            subs: FxHashMap::default(),
            by_ack: FxHashMap::default(),
            temps: HashMap::new(),
            next_sub: 1,
            next_ack: 1,
            max,
        }
    }

    /// Adds a subscription and returns the router id allocated for it.
    pub(crate) fn add(&mut self, id: &str, source: Source, ack: AckMode) -> Result<SubId, AddError> {
        if self.by_id.contains_key(id) {
            return Err(AddError::Duplicate);
        }
        if self.subs.len() >= self.max {
            return Err(AddError::TooMany);
        }
        // Ids wrap after 2^32 subscriptions; skip any still in use.
        while self.subs.contains_key(&self.next_sub) {
            self.next_sub = self.next_sub.wrapping_add(1);
        }
        let sub = self.next_sub;
        self.next_sub = self.next_sub.wrapping_add(1);
        self.by_id.insert(id.to_owned(), sub);
        if let Source::Temp { name, .. } = &source {
            *self.temps.entry(name.clone()).or_default() += 1;
        }
        let plain_id = !crate::codec::needs_escape(id.as_bytes());
        self.subs.insert(
            sub,
            Sub {
                id: id.to_owned(),
                plain_id,
                id_line: plain_id.then(|| IdLine::new(id)).flatten(),
                source,
                ack,
                unacked: VecDeque::new(),
            },
        );
        Ok(sub)
    }

    /// Removes the subscription with the client's `id`, forgetting its unacked messages.
    pub(crate) fn remove(&mut self, id: &str) -> Option<(SubId, Source)> {
        let sub = self.by_id.remove(id)?;
        let s = self.subs.remove(&sub)?;
        for u in &s.unacked {
            self.by_ack.remove(&u.ack);
        }
        if let Source::Temp { name, .. } = &s.source {
            if let Some(n) = self.temps.get_mut(name) {
                *n -= 1;
                if *n == 0 {
                    self.temps.remove(name);
                }
            }
        }
        Some((sub, s.source))
    }

    /// Whether some subscription reads the temporary queue `name`.
    pub(crate) fn has_temp(&self, name: &str) -> bool {
        self.temps.contains_key(name)
    }

    /// The subscription with the client's `id`.
    pub(crate) fn by_id(&self, id: &str) -> Option<&Sub> {
        self.by_id.get(id).and_then(|sub| self.subs.get(sub))
    }

    /// The subscription with router id `sub`.
    pub(crate) fn get(&self, sub: SubId) -> Option<&Sub> {
        self.subs.get(&sub)
    }

    /// How many messages wait for an ACK or NACK, across all subscriptions.
    pub(crate) fn unacked(&self) -> usize {
        self.by_ack.len()
    }

    /// Records a delivery of message `msg` on `sub`, from the store entry `durable` if it came
    /// from a durable queue. Returns the ack id if the subscription needs an acknowledgement.
    #[cfg(test)]
    pub(crate) fn track(&mut self, sub: SubId, msg: u64, durable: Option<DurableRef>) -> Option<u64> {
        self.deliver(sub, msg, durable).and_then(|(ack, _)| ack)
    }

    /// [`Subscriptions::track`] and [`Subscriptions::get`] in one lookup: the subscription a
    /// delivery is for, if it still exists, with the ack id if it needs an acknowledgement.
    pub(crate) fn deliver(&mut self, sub: SubId, msg: u64, durable: Option<DurableRef>) -> Option<(Option<u64>, &Sub)> {
        let s = self.subs.get_mut(&sub)?;
        if s.ack == AckMode::Auto {
            return Some((None, s));
        }
        let ack = self.next_ack;
        self.next_ack += 1;
        s.unacked.push_back(Unacked { ack, msg, durable });
        self.by_ack.insert(ack, sub);
        Some((Some(ack), s))
    }

    /// The message with ack id `ack` (STOMP 1.2 ACK `id`).
    pub(crate) fn by_ack(&self, ack: u64) -> Option<Target> {
        self.by_ack.get(&ack).map(|&sub| Target { sub, ack })
    }

    /// The unacked deliveries of message `msg` on the subscription with the client's id
    /// `sub_id` (STOMP 1.1), or on any subscription (STOMP 1.0, whose ACK names no
    /// subscription: every subscription holding the message is acknowledged).
    pub(crate) fn by_message(&self, sub_id: Option<&str>, msg: u64) -> Vec<Target> {
        let mut found = Vec::new();
        let mut scan = |sub: SubId, s: &Sub| {
            if let Some(u) = s.unacked.iter().find(|u| u.msg == msg) {
                found.push(Target { sub, ack: u.ack });
            }
        };
        match sub_id {
            Some(id) => {
                if let Some((&sub, s)) = self.by_id.get(id).and_then(|sub| self.subs.get_key_value(sub)) {
                    scan(sub, s);
                }
            }
            None => self.subs.iter().for_each(|(&sub, s)| scan(sub, s)),
        }
        found
    }

    /// Settles (ACKs or NACKs) the target: with `client` mode everything up to and including
    /// it, with `client-individual` just it. Returns one entry per settled message, oldest
    /// first, with its store entry if it came from a durable queue (empty if the subscription
    /// is gone or an earlier cumulative ACK already covered the target).
    pub(crate) fn settle(&mut self, t: Target) -> Vec<Option<DurableRef>> {
        let Some(s) = self.subs.get_mut(&t.sub) else { return Vec::new() };
        let Ok(pos) = s.unacked.binary_search_by_key(&t.ack, |u| u.ack) else { return Vec::new() };
        let settled: Vec<Unacked> = match s.ack {
            AckMode::Client => s.unacked.drain(..=pos).collect(),
            AckMode::ClientIndividual | AckMode::Auto => s.unacked.remove(pos).into_iter().collect(),
        };
        for u in &settled {
            self.by_ack.remove(&u.ack);
        }
        settled.into_iter().map(|u| u.durable).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> Source {
        Source::Topic(Filter::new(s).unwrap())
    }

    fn r(seq: u64) -> Option<DurableRef> {
        Some(DurableRef { queue: 9, seq })
    }

    #[test]
    fn client_mode_is_cumulative_and_individual_is_not() {
        let mut s = Subscriptions::new(10);
        let a = s.add("a", f("x"), AckMode::Client).unwrap();
        let b = s.add("b", f("x"), AckMode::ClientIndividual).unwrap();
        let a_acks: Vec<u64> = (1..=3).map(|m| s.track(a, m, None).unwrap()).collect();
        let b_acks: Vec<u64> = (1..=3).map(|m| s.track(b, m, None).unwrap()).collect();
        assert_eq!(s.unacked(), 6);
        assert_eq!(s.settle(s.by_ack(a_acks[1]).unwrap()).len(), 2);
        assert_eq!(s.unacked(), 4);
        assert!(s.by_ack(a_acks[0]).is_none());
        assert_eq!(s.settle(s.by_ack(b_acks[1]).unwrap()).len(), 1);
        assert!(s.by_ack(b_acks[0]).is_some());
        assert_eq!(s.by_message(Some("b"), 3).len(), 1);
        assert_eq!(s.by_message(None, 3).len(), 2);
        assert_eq!(s.by_message(Some("a"), 1).len(), 0);
    }

    #[test]
    fn auto_is_not_tracked_and_limits_hold() {
        let mut s = Subscriptions::new(2);
        let a = s.add("a", f("x"), AckMode::Auto).unwrap();
        assert_eq!(s.track(a, 1, r(1)), None);
        assert_eq!(s.add("a", f("y"), AckMode::Auto), Err(AddError::Duplicate));
        s.add("b", f("y"), AckMode::Client).unwrap();
        assert_eq!(s.add("c", f("y"), AckMode::Auto), Err(AddError::TooMany));
        assert!(s.remove("a").is_some());
        assert!(s.remove("a").is_none());
        s.add("c", f("y"), AckMode::Auto).unwrap();
    }

    #[test]
    fn removing_forgets_unacked() {
        let mut s = Subscriptions::new(2);
        let a = s.add("a", f("x"), AckMode::Client).unwrap();
        s.track(a, 1, None);
        assert_eq!(s.remove("a"), Some((a, f("x"))));
        assert_eq!(s.unacked(), 0);
    }

    #[test]
    fn settling_returns_store_entries_oldest_first() {
        let mut s = Subscriptions::new(3);
        let q = s.add("q", Source::Queue("queue/j".into()), AckMode::Client).unwrap();
        let acks: Vec<u64> = (1..=3).map(|m| s.track(q, m, r(10 + m)).unwrap()).collect();
        assert_eq!(s.settle(s.by_ack(acks[1]).unwrap()), vec![r(11), r(12)]);
        assert_eq!(s.settle(Target { sub: q, ack: acks[0] }), vec![]);
        let i = s.add("i", Source::Durable("$durable/c/i".into()), AckMode::ClientIndividual).unwrap();
        let mixed = [s.track(i, 1, None).unwrap(), s.track(i, 2, r(5)).unwrap()];
        assert_eq!(s.settle(s.by_ack(mixed[1]).unwrap()), vec![r(5)]);
        assert_eq!(s.settle(s.by_ack(mixed[0]).unwrap()), vec![None]);
        assert_eq!(s.get(i).unwrap().source, Source::Durable("$durable/c/i".into()));
    }

    #[test]
    fn temporary_queues_are_counted() {
        let mut s = Subscriptions::new(4);
        let t = |n: &str| Source::Temp { name: n.into(), filter: Filter::new(&format!("$temp/S/{n}")).unwrap() };
        assert!(!s.has_temp("r"));
        s.add("/temp-queue/r", t("r"), AckMode::Auto).unwrap();
        s.add("mine", t("r"), AckMode::Client).unwrap();
        assert!(s.has_temp("r") && !s.has_temp("x"));
        assert_eq!(s.by_id("mine").unwrap().ack, AckMode::Client);
        s.remove("/temp-queue/r");
        assert!(s.has_temp("r"));
        s.remove("mine");
        assert!(!s.has_temp("r"));
    }
}
