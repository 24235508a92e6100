//! SUBSCRIBE and UNSUBSCRIBE (§3.8–§3.11).
//!
//! Each filter is checked on its own: a bad one gets a failure code in the SUBACK and the
//! others are still granted, as if each were its own SUBSCRIBE [MQTT-3.8.4-4]. Each is also
//! checked against the connection's permissions (`auth.rs`): a shared subscription on its
//! inner filter, `$queue/<name>` on the filter `$queue/<name>`; a denied one gets 0x80 (3.x)
//! or 0x87 Not authorized (5), and no subscription, binding or retained messages. Each distinct
//! subscription keeps one [`SubId`] for the life of the connection, so a repeated SUBSCRIBE
//! replaces the subscription in the router rather than adding a second one [MQTT-3.8.4-3].
//! Subscribe actions are pushed before the SUBACK is written: the driver carries out the
//! actions, then flushes, so a message published right after the SUBACK already matches.
//! Up to QoS 2 is granted.
//!
//! Kinds of subscription:
//! - A plain filter: `Action::Subscribe` with `share: None`. Its options are kept by id for
//!   its deliveries: Retain As Published, No Local and the MQTT 5 Subscription Identifier.
//!   Overlapping subscriptions merge (`merge: true`): the router sends one copy per message,
//!   at the highest QoS among them [MQTT-3.3.4-2], and the session puts on it the identifiers
//!   of all that match [MQTT-3.3.4-4] and Retain As Published if any asked for it, as it does
//!   for the session queue's bindings. Retain Handling 0/1/2 maps to
//!   `RetainHandling::Always`/`IfNew`/`Never` (MQTT 3.x: `Always`).
//! - A shared subscription `$share/<group>/<filter>` (§4.8.2; accepted from MQTT 3.x clients
//!   too, as Mosquitto and EMQX do): `Action::Subscribe` with `share: Some(group)` and
//!   `no_local: false`; the router hands each message to one member of the group. The group
//!   must be non-empty and free of `+`, `#` and `/`, and be followed by a valid filter
//!   [MQTT-4.8.2-1] [MQTT-4.8.2-2]. No Local on a shared subscription is a protocol error
//!   that ends the connection [MQTT-3.8.3-4].
//! - A named-queue consumer `$queue/<name>` (as STOMP `/queue/<name>`): `Action::Bind` of
//!   `named_queue(name)` to the topic `queue_topic(name)` at QoS 1, then `Action::Consume`
//!   with the connection's window as prefetch and `auto_ack` when QoS 0 is granted. Its
//!   deliveries are durable and acknowledged like a session queue's. UNSUBSCRIBE pushes
//!   `Action::Unconsume` (the queue and its binding stay).
//!
//! In a session that lives in its durable queue (a persistent one, or a resumed one) a
//! plain filter is not a subscription of the connection but a binding of the session queue
//! (`Action::Bind`/`Action::Unbind`), kept by the store across reconnects and restarts; what
//! matches arrives through the queue's consumer ([`super::SESSION_SUB`]), and the retained
//! messages the Retain Handling asks for are requested with `Action::SendRetained` (for
//! `IfNew`, when the filter was not subscribed on this connection before; bindings made by
//! earlier connections are unknown here). Bindings made by earlier connections are unknown,
//! so an UNSUBSCRIBE there always unbinds and always succeeds. Shared subscriptions and
//! `$queue/` consumers stay subscriptions and consumers of the connection even in a
//! persistent session, and the session keeps them apart (`Action::KeepSubscription`, stored
//! by the driver): the session's next connection subscribes them again right after its
//! CONNACK (`Adapter::restore_subscriptions`). MQTT 5 No Local is not honoured
//! for bindings (`Action::Bind` does not carry it), and the Subscription Identifiers and
//! Retain As Published of bindings are known only for the filters this connection
//! subscribed.

use std::num::{NonZeroU16, NonZeroU32};

use bytestring::ByteString;
use diglot_core::{
    named_queue, queue_topic, session_queue, Action, Filter, KeptSubscription, Output, Qos, RetainHandling, SubId,
    Topic,
};

use super::{Session, SESSION_SUB};
use crate::codec::SubReq;
use crate::reason::{code, SubFailure, Violation};

/// The highest QoS granted to a subscription.
pub(crate) const MAX_GRANTED_QOS: Qos = Qos::ExactlyOnce;

/// The filter prefix of a shared subscription (§4.8.2).
const SHARED_PREFIX: &str = "$share/";

/// The filter prefix of a named-queue consumer.
const QUEUE_PREFIX: &str = "$queue/";

/// What kind of subscription an id stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SubKind {
    /// A subscription of the connection (`Action::Subscribe`).
    Plain,
    /// A binding of the session queue (`Action::Bind`).
    Bound,
    /// A shared subscription of the connection.
    Shared,
    /// A consumer of a named queue.
    Queue {
        /// The queue's name.
        queue: String,
        /// The queue deletes entries as it hands them over (QoS 0 granted).
        auto_ack: bool,
    },
}

/// A subscription's options, kept for its deliveries.
#[derive(Debug, Clone)]
pub(crate) struct SubOpts {
    /// The filter (for `$share/`, the part after the group; for `$queue/`, the queue topic).
    pub(crate) filter: Filter,
    /// The granted QoS.
    pub(crate) granted: Qos,
    /// MQTT 5 Retain As Published.
    pub(crate) rap: bool,
    /// MQTT 5 Subscription Identifier.
    pub(crate) ident: Option<NonZeroU32>,
    /// MQTT 5 No Local.
    pub(crate) no_local: bool,
    /// The kind.
    pub(crate) kind: SubKind,
}

impl SubOpts {
    /// A plain subscription of the connection whose options show on a merged copy: one with a
    /// Subscription Identifier or Retain As Published.
    fn plain_shown_on_copies(&self) -> bool {
        self.kind == SubKind::Plain && (self.ident.is_some() || self.rap)
    }
}

/// What one entry of a SUBSCRIBE or UNSUBSCRIBE names.
#[derive(Debug)]
enum Target {
    /// A plain filter.
    Plain(Filter),
    /// `$share/<group>/<filter>`.
    Shared { group: String, filter: Filter },
    /// `$queue/<name>`.
    Queue(String),
}

impl Target {
    /// Parses a filter as sent.
    fn parse(text: &str) -> Result<Target, SubFailure> {
        // `$temp/<session>/...` carries replies to one STOMP session's `/temp-queue/`: only
        // that session may read it (publishing a reply there stays allowed).
        let inner = text.strip_prefix(SHARED_PREFIX).and_then(|r| r.split_once('/')).map_or(text, |(_, f)| f);
        if inner.starts_with("$temp/") || inner == "$temp" {
            return Err(SubFailure::NotAuthorized);
        }
        if let Some(rest) = text.strip_prefix(SHARED_PREFIX) {
            let (group, filter) = rest.split_once('/').ok_or(SubFailure::InvalidFilter)?;
            if group.is_empty() || group.contains(['+', '#']) {
                return Err(SubFailure::InvalidFilter);
            }
            let filter = Filter::new(filter).map_err(|_| SubFailure::InvalidFilter)?;
            return Ok(Target::Shared { group: group.to_string(), filter });
        }
        if let Some(name) = text.strip_prefix(QUEUE_PREFIX) {
            // The queue's topic must be a valid topic name: no wildcards, not empty.
            if name.is_empty() || Topic::new(text).is_err() {
                return Err(SubFailure::InvalidFilter);
            }
            return Ok(Target::Queue(name.to_string()));
        }
        Filter::new(text).map(Target::Plain).map_err(|_| SubFailure::InvalidFilter)
    }

    /// The canonical text that identifies the subscription on this connection.
    fn key(&self) -> String {
        match self {
            Target::Plain(f) => f.as_str().to_string(),
            Target::Shared { group, filter } => format!("{SHARED_PREFIX}{group}/{}", filter.as_str()),
            Target::Queue(name) => queue_topic(name),
        }
    }
}

/// The core's retain handling for an MQTT 5 Retain Handling value (§3.8.3.1).
fn retain_handling(v: u8) -> RetainHandling {
    match v {
        1 => RetainHandling::IfNew,
        2 => RetainHandling::Never,
        _ => RetainHandling::Always,
    }
}

impl Session {
    /// SUBSCRIBE: subscribe each filter, then answer SUBACK with one code per filter, in order
    /// [MQTT-3.8.4-5].
    pub(super) fn on_subscribe(
        &mut self,
        packet_id: NonZeroU16,
        sub_id: Option<NonZeroU32>,
        filters: Vec<SubReq>,
        out: &mut Output,
        actions: &mut Vec<Action>,
    ) {
        let Some(version) = self.wire.as_ref().map(|w| w.version()) else { return };
        // [MQTT-3.8.3-4] No Local on a shared subscription is a protocol error: nothing of
        // this SUBSCRIBE is carried out.
        if filters.iter().any(|r| r.no_local && r.filter.starts_with(SHARED_PREFIX)) {
            self.fail(Violation::Protocol("No Local set on a shared subscription"), out, actions);
            return;
        }
        let mut failure = None;
        let codes: Vec<u8> = filters
            .iter()
            .map(|req| match self.subscribe_one(req, sub_id, actions) {
                Ok(qos) => qos as u8,
                Err(f) => {
                    failure.get_or_insert(f);
                    f.suback_code(version)
                }
            })
            .collect();
        let reason = failure.and_then(|f| self.problem(f.text()));
        if let Some(wire) = self.wire.as_mut() {
            // [MQTT-3.8.4-2] The SUBACK has the SUBSCRIBE's packet id.
            wire.suback(packet_id, &codes, reason, out);
        }
    }

    /// Subscribes one filter and returns the granted QoS.
    fn subscribe_one(
        &mut self,
        req: &SubReq,
        ident: Option<NonZeroU32>,
        actions: &mut Vec<Action>,
    ) -> Result<Qos, SubFailure> {
        let target = Target::parse(&req.filter)?;
        // The ACL, before anything is created: a denied entry leaves no trace.
        if !self.may_subscribe_to(&target) {
            tracing::debug!(conn = self.info.id, client_id = ?self.client_id, filter = %req.filter, "SUBSCRIBE entry not authorized");
            return Err(SubFailure::NotAuthorized);
        }
        let granted = Qos::from_u8(req.qos).unwrap_or(Qos::AtMostOnce).min(MAX_GRANTED_QOS);
        let key = target.key();
        let existing = self.subs.get(&key).copied();
        let sub = match existing {
            Some(sub) => sub,
            None => self.new_sub_id(&key)?,
        };
        let retained = retain_handling(req.retain_handling);
        let rap = req.retain_as_published;
        // A shared subscription or a `$queue/` consumer of a persistent session is part of the
        // session but not a binding of its queue: the driver keeps it for the next connection.
        if !matches!(target, Target::Plain(_)) && !self.restoring && self.session_queue().is_some() {
            actions.push(Action::KeepSubscription { sub: kept(req, ident), keep: true });
        }
        let opts = match target {
            Target::Plain(filter) => match self.session_queue() {
                Some(queue) => {
                    actions.push(Action::Bind { queue: queue.clone(), filter: filter.clone(), qos: granted });
                    let send = match retained {
                        RetainHandling::Always => true,
                        RetainHandling::IfNew => existing.is_none(),
                        RetainHandling::Never => false,
                    };
                    if send {
                        actions.push(Action::SendRetained { filter: filter.clone(), sub, qos: granted, queue });
                    }
                    SubOpts { filter, granted, rap, ident, no_local: req.no_local, kind: SubKind::Bound }
                }
                None => {
                    actions.push(Action::Subscribe {
                        filter: filter.clone(),
                        sub,
                        qos: granted,
                        no_local: req.no_local,
                        // One copy for all of the connection's overlapping subscriptions, with
                        // the identifiers of all that match (`Session::treatment`).
                        merge: true,
                        retained,
                        share: None,
                    });
                    SubOpts { filter, granted, rap, ident, no_local: req.no_local, kind: SubKind::Plain }
                }
            },
            Target::Shared { group, filter } => {
                actions.push(Action::Subscribe {
                    filter: filter.clone(),
                    sub,
                    qos: granted,
                    no_local: false,
                    merge: ident.is_none(),
                    retained,
                    share: Some(group),
                });
                SubOpts { filter, granted, rap, ident, no_local: false, kind: SubKind::Shared }
            }
            Target::Queue(name) => {
                let queue = named_queue(&name);
                let topic = queue_topic(&name);
                let filter = Filter::new(&topic).map_err(|_| SubFailure::InvalidFilter)?;
                let auto_ack = granted == Qos::AtMostOnce;
                let previous = self.sub_opts.get(&sub).map(|o| &o.kind);
                // A repeated SUBSCRIBE keeps the consumer unless its acknowledgement mode
                // changes, which needs a new consumer.
                let same = matches!(previous, Some(SubKind::Queue { auto_ack: a, .. }) if *a == auto_ack);
                if !same {
                    if previous.is_some() {
                        actions.push(Action::Unconsume { queue: queue.clone(), sub });
                    }
                    actions.push(Action::Bind { queue: queue.clone(), filter: filter.clone(), qos: Qos::AtLeastOnce });
                    actions.push(Action::Consume { queue: queue.clone(), sub, prefetch: self.window, auto_ack });
                }
                SubOpts { filter, granted, rap, ident, no_local: false, kind: SubKind::Queue { queue, auto_ack } }
            }
        };
        self.plain_shown += u32::from(opts.plain_shown_on_copies());
        if let Some(old) = self.sub_opts.insert(sub, opts) {
            self.plain_shown -= u32::from(old.plain_shown_on_copies());
        }
        Ok(granted)
    }

    /// Whether the connection's permissions allow the subscription: a shared one on its
    /// inner filter, a `$queue/<name>` consumer on the filter `$queue/<name>`.
    fn may_subscribe_to(&self, target: &Target) -> bool {
        match target {
            Target::Plain(filter) | Target::Shared { filter, .. } => self.may_subscribe(filter),
            Target::Queue(name) => Filter::new(&queue_topic(name)).is_ok_and(|f| self.may_subscribe(&f)),
        }
    }

    /// The session queue that the filters are bound to, in a session that lives in it
    /// (persistent, or resumed).
    fn session_queue(&self) -> Option<String> {
        match (self.uses_queue, self.client_id.as_deref()) {
            (true, Some(id)) => Some(session_queue(id)),
            _ => None,
        }
    }

    /// A fresh id for a new subscription, within `limits.max_subscriptions`.
    fn new_sub_id(&mut self, key: &str) -> Result<SubId, SubFailure> {
        if self.subs.len() >= self.limits.max_subscriptions {
            self.limits.breaches.hit(diglot_core::Limit::MaxSubscriptions);
            return Err(SubFailure::Quota);
        }
        let sub = self.next_sub;
        if sub == SESSION_SUB {
            return Err(SubFailure::Quota);
        }
        self.next_sub = self.next_sub.checked_add(1).ok_or(SubFailure::Quota)?;
        self.subs.insert(key.to_string(), sub);
        Ok(sub)
    }

    /// UNSUBSCRIBE: remove each known subscription, then answer UNSUBACK [MQTT-3.10.4-4],
    /// with a reason code per filter in MQTT 5 (§3.11.3).
    pub(super) fn on_unsubscribe(
        &mut self,
        packet_id: NonZeroU16,
        filters: Vec<ByteString>,
        out: &mut Output,
        actions: &mut Vec<Action>,
    ) {
        let codes: Vec<u8> = filters
            .iter()
            .map(|f| match Target::parse(f) {
                Err(_) => code::TOPIC_FILTER_INVALID,
                Ok(target) => {
                    if !matches!(target, Target::Plain(_)) && self.session_queue().is_some() {
                        let sub = KeptSubscription { filter: f.to_string(), ..KeptSubscription::default() };
                        actions.push(Action::KeepSubscription { sub, keep: false });
                    }
                    self.unsubscribe_one(target, actions)
                }
            })
            .collect();
        if let Some(wire) = self.wire.as_mut() {
            wire.unsuback(packet_id, &codes, out);
        }
    }

    /// Subscribes again what a resumed persistent session kept outside its queue's bindings
    /// (`Adapter::restore_subscriptions`), once its CONNACK is out. One the ACL refuses now is
    /// forgotten.
    pub(super) fn resubscribe_kept(&mut self, actions: &mut Vec<Action>) {
        self.restoring = true;
        for k in std::mem::take(&mut self.restored_subs) {
            let req = SubReq {
                filter: ByteString::from(k.filter.as_str()),
                qos: k.qos,
                no_local: k.no_local,
                retain_as_published: k.retain_as_published,
                retain_handling: k.retain_handling,
            };
            if let Err(e) = self.subscribe_one(&req, NonZeroU32::new(k.ident), actions) {
                tracing::debug!(conn = self.info.id, filter = %k.filter, ?e, "kept subscription not restored");
                actions.push(Action::KeepSubscription { sub: k, keep: false });
            }
        }
        self.restoring = false;
    }

    /// Removes one subscription and returns its UNSUBACK reason code.
    fn unsubscribe_one(&mut self, target: Target, actions: &mut Vec<Action>) -> u8 {
        let known = self.subs.remove(&target.key());
        let opts = known.and_then(|sub| self.sub_opts.remove(&sub));
        self.plain_shown -= u32::from(opts.as_ref().is_some_and(SubOpts::plain_shown_on_copies));
        match (target, known) {
            // The bindings live with the session queue, not the connection: one made by an
            // earlier connection (or before a restart) is unknown here but may exist, so
            // unbind anyway and report success.
            (Target::Plain(filter), _) if opts.as_ref().map_or(self.uses_queue, |o| o.kind == SubKind::Bound) => {
                match self.session_queue() {
                    Some(queue) => actions.push(Action::Unbind { queue, filter }),
                    None => return code::NO_SUBSCRIPTION_EXISTED,
                }
                code::SUCCESS
            }
            (Target::Plain(filter) | Target::Shared { filter, .. }, Some(sub)) => {
                actions.push(Action::Unsubscribe { filter, sub });
                code::SUCCESS
            }
            (Target::Queue(name), Some(sub)) => {
                actions.push(Action::Unconsume { queue: named_queue(&name), sub });
                code::SUCCESS
            }
            (_, None) => code::NO_SUBSCRIPTION_EXISTED,
        }
    }
}

/// The kept form of a subscription request ([`Action::KeepSubscription`]).
fn kept(req: &SubReq, ident: Option<NonZeroU32>) -> KeptSubscription {
    KeptSubscription {
        filter: req.filter.to_string(),
        qos: req.qos,
        no_local: req.no_local,
        retain_as_published: req.retain_as_published,
        retain_handling: req.retain_handling,
        ident: ident.map_or(0, NonZeroU32::get),
    }
}
