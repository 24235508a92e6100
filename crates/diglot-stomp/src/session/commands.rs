//! The frames of an established session: SEND, SUBSCRIBE, UNSUBSCRIBE, ACK, NACK, BEGIN,
//! COMMIT, ABORT and DISCONNECT (STOMP 1.2 "Client Frames").

use std::time::Instant;

use bytes::Bytes;
use diglot_core::{
    durable_subscription_queue, named_queue, Action, CloseReason, Filter, Message, Output, Props, Qos, Topic,
};

use super::expiry;
use super::fault::Fault;
use super::subs::{AckMode, AddError, Source, Target, Verdict};
use super::tx::{TxError, TxOp};
use super::{Reply, Session};
use crate::destination::{self, SubscribeTo, TEMP_QUEUE_PREFIX};
use crate::frame::{Command, Frame};
use crate::version::Version;

/// SEND headers that configure the frame itself and are not passed on as message properties.
const SEND_CONTROL_HEADERS: [&str; 6] =
    ["destination", "content-length", "receipt", "transaction", "persistent", "expires"];

fn require<'f>(frame: &'f Frame, header: &str) -> Result<&'f str, Fault> {
    frame.header(header).ok_or_else(|| Fault::missing(frame.command, header))
}

/// Whether the boolean header `name` is `true`. Case is ignored, as RabbitMQ does, because
/// Python clients (stomp.py among them) write a `True` header value as `True`.
fn flag(frame: &Frame, name: &str) -> bool {
    frame.header(name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Whether a SUBSCRIBE or UNSUBSCRIBE asks for a durable subscription: `durable:true`, or
/// `persistent:true` as RabbitMQ also accepts.
fn wants_durable(frame: &Frame) -> bool {
    flag(frame, "durable") || flag(frame, "persistent")
}

/// What a SUBSCRIBE sets up once it is validated.
enum Plan {
    /// A plain router subscription.
    Topic(Filter),
    /// A router subscription to the session's temporary queue `name`.
    Temp { name: String, filter: Filter },
    /// Bind the durable queue `queue` to `filter` and consume it.
    Consume { queue: String, durable: bool, filter: Filter, prefetch: u16 },
}

impl Session {
    /// SEND: publish to a `/topic/`, `/queue/` or `/temp-queue/` destination, now or at
    /// COMMIT. A `/temp-queue/<x>` named as the destination or the `reply-to` is subscribed to
    /// first, if it is not yet ([`Session::ensure_temp`]).
    ///
    /// The destination's canonical topic must be one the connection may publish to, checked
    /// here, at SEND, also for a SEND in a transaction; otherwise ERROR `not authorized` and
    /// close, before anything is published or subscribed.
    pub(super) fn on_send(
        &mut self,
        frame: Frame,
        receipt: Option<&str>,
        now: Instant,
        actions: &mut Vec<Action>,
    ) -> Result<Reply, Fault> {
        let dest = require(&frame, "destination")?;
        let topic = match &self.last_send {
            Some((last, topic)) if **last == *dest => topic.clone(),
            _ => {
                let topic = destination::send_topic(dest, &self.temp_token, self.config.topic_separator)?;
                self.last_send = Some((dest.into(), topic.clone()));
                topic
            }
        };
        if !self.may_publish(&topic) {
            return Err(Fault::not_authorized(format!("This connection may not send to {dest:?}.")));
        }
        let tx = frame.header("transaction").map(str::to_owned);
        if let Some(tx) = &tx {
            if !self.txs.is_open(tx) {
                return Err(TxError::Unknown.into());
            }
        }
        let expires_at = match frame.header("expires") {
            None => None,
            Some(v) => expiry::parse(v, now, expiry::unix_ms_now()).map_err(|()| {
                Fault::protocol("invalid expires header", "expires must be a time in ms since the Unix epoch, or 0.")
            })?,
        };
        // Kept as given, so that a STOMP subscriber sees the very same `expires` value.
        let expires_unix_ms = expires_at.and(frame.header("expires")).and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(rt) = frame.header("reply-to").filter(|rt| destination::temp_queue_name(rt).is_some()) {
            self.ensure_temp(rt, actions)?;
        }
        if destination::temp_queue_name(dest).is_some() {
            self.ensure_temp(dest, actions)?;
        }
        let mut frame = frame;
        let built = self.message_from(topic, &mut frame, now);
        // The header list goes back to the decoder for the next frame, emptied.
        self.decoder.recycle(std::mem::take(&mut frame.headers));
        let mut msg = built?;
        msg.expires_at = expires_at;
        msg.expires_unix_ms = expires_unix_ms;
        if let Some(tx) = tx {
            let cost = msg.payload.len() + msg.topic.as_str().len() + msg.props.as_ref().map_or(0, |p| props_size(p));
            self.txs.push(&tx, TxOp::Publish(msg), cost)?;
            return Ok(Reply::Receipt);
        }
        let token = match receipt {
            Some(receipt) => self.receipts.open(receipt, 1).pop(),
            None => self.bare_token(&msg),
        };
        actions.push(Action::Publish { msg, token });
        Ok(if receipt.is_some() { Reply::Done } else { Reply::Receipt })
    }

    /// Subscribes the session to its temporary queue `dest` (`/temp-queue/<x>`) unless some
    /// subscription already reads it: a router subscription to `$temp/<token>/<x>` whose
    /// subscription id is `dest` itself, as RabbitMQ does, with `ack:auto`.
    fn ensure_temp(&mut self, dest: &str, actions: &mut Vec<Action>) -> Result<(), Fault> {
        let SubscribeTo::Temp { name, filter } =
            destination::subscribe_target(dest, &self.temp_token, self.config.topic_separator)?
        else {
            return Ok(());
        };
        if self.subs.has_temp(name) {
            return Ok(());
        }
        let source = Source::Temp { name: name.to_owned(), filter: filter.clone() };
        let sub = self.subs.add(dest, source, AckMode::Auto).map_err(|e| self.add_fault(e, dest))?;
        actions.push(topic_subscribe(filter, sub));
        Ok(())
    }

    /// The ERROR for a subscription that could not be added.
    fn add_fault(&self, e: AddError, id: &str) -> Fault {
        match e {
            AddError::Duplicate => {
                Fault::protocol("duplicate subscription id", format!("Subscription id {id:?} is already in use."))
            }
            AddError::TooMany => {
                self.limits.breaches.hit(diglot_core::Limit::MaxSubscriptions);
                Fault::limit(
                    "too many subscriptions",
                    format!("A connection may hold at most {} subscriptions.", self.limits.max_subscriptions),
                )
            }
        }
    }

    /// A token for a publish without a receipt, if the store may refuse it (QoS ≥ 1: a
    /// persistent SEND or one to a queue), so that a full queue or a store failure still
    /// reaches the client as an ERROR (`Adapter::on_publish_done`). Its success writes
    /// nothing.
    fn bare_token(&mut self, msg: &Message) -> Option<u64> {
        (msg.qos != Qos::AtMostOnce).then(|| self.receipts.bare())
    }

    /// Builds the router message for a SEND, taking its body without copying.
    ///
    /// `persistent:true` makes it QoS 1 (ARCHITECTURE.md "Protocol mapping"); a SEND to a
    /// queue is always QoS 1, as a queue is durable, so a RECEIPT for it means the store has
    /// it. `content-type`, `reply-to` and `correlation-id` become the matching MQTT 5
    /// properties (a `/temp-queue/<x>` reply-to becomes the session's `$temp/<token>/<x>`);
    /// every other header except [`SEND_CONTROL_HEADERS`] becomes a user property, in order,
    /// first occurrence only (STOMP 1.2 "Repeated Header Entries"). A `reply-to` that cannot
    /// be read with the separator is an ERROR `invalid reply-to`.
    fn message_from(&self, topic: Topic, frame: &mut Frame, now: Instant) -> Result<Message, Fault> {
        let persistent = flag(frame, "persistent") || destination::queue_name(topic.as_str()).is_some();
        let qos = if persistent { Qos::AtLeastOnce } else { Qos::AtMostOnce };
        let mut props = Props::default();
        // What the message keeps is copied out: the decoded headers share the connection's
        // read buffer, which a queued message must not hold on to.
        for (name, value) in frame.headers.drain(..) {
            match &*name {
                n if SEND_CONTROL_HEADERS.contains(&n) => {}
                "content-type" if props.content_type.is_none() => props.content_type = Some(value.to_string()),
                "reply-to" if props.response_topic.is_none() => {
                    let canonical =
                        destination::reply_to_canonical(&value, &self.temp_token, self.config.topic_separator)
                            .map_err(Fault::reply_to)?;
                    props.response_topic = Some(canonical);
                }
                "correlation-id" if props.correlation_data.is_none() => {
                    props.correlation_data = Some(Bytes::copy_from_slice(value.as_bytes()));
                }
                "content-type" | "reply-to" | "correlation-id" => {}
                _ => {
                    if !props.user.iter().any(|(n, _)| **n == *name) {
                        props.user.push((name.to_string(), value.to_string()));
                    }
                }
            }
        }
        let mut msg = Message::received(topic, std::mem::take(&mut frame.body), qos, false, now);
        msg.origin = Some(self.info.id);
        if props != Props::default() {
            msg.props = Some(Box::new(props));
        }
        Ok(msg)
    }

    /// SUBSCRIBE.
    ///
    /// To a topic: a router subscription at QoS 1, so that a persistent message keeps its QoS
    /// (the router delivers the lower of the two) and is not dropped silently at a full
    /// outbox; a non-persistent one stays QoS 0. Subscriptions are not merged: overlapping
    /// subscriptions each get their own MESSAGE, as STOMP expects.
    ///
    /// To `/queue/<name>`: [`Action::Bind`] of the named queue to `$queue/<name>` (idempotent)
    /// then [`Action::Consume`] of it. With `durable:true` (or `persistent:true`) on a topic:
    /// the same two actions for the client's durable subscription queue, which needs an `id`
    /// header and a CONNECT `client-id`. Either takes a `prefetch-count` (1 to
    /// `Limits::max_inflight`, default `max_inflight`) for the consumer's window.
    ///
    /// The connection must be allowed to subscribe to the topic filter (durable or not), or
    /// to `$queue/<name>` for a queue; its own `/temp-queue/` is always allowed. Otherwise
    /// ERROR `not authorized` and close, and nothing is subscribed.
    pub(super) fn on_subscribe(&mut self, frame: &Frame, actions: &mut Vec<Action>) -> Result<Reply, Fault> {
        let dest = require(frame, "destination")?;
        let target = destination::subscribe_target(dest, &self.temp_token, self.config.topic_separator)?;
        let allowed = match &target {
            SubscribeTo::Topic(filter) | SubscribeTo::Queue { filter, .. } => self.may_subscribe(filter),
            SubscribeTo::Temp { .. } => true,
        };
        if !allowed {
            return Err(Fault::not_authorized(format!("This connection may not subscribe to {dest:?}.")));
        }
        let id = match frame.header("id") {
            Some(id) => id,
            // STOMP 1.0 made `id` optional: the destination then names the subscription.
            None if self.version == Some(Version::V1_0) && !wants_durable(frame) => dest,
            None => return Err(Fault::missing(Command::Subscribe, "id")),
        };
        let ack = AckMode::parse(frame.header("ack"))
            .ok_or_else(|| Fault::protocol("invalid ack mode", "ack must be auto, client or client-individual."))?;
        let plan = match target {
            SubscribeTo::Queue { name, filter } => {
                Plan::Consume { queue: named_queue(&name), durable: false, filter, prefetch: self.prefetch(frame)? }
            }
            SubscribeTo::Topic(filter) if wants_durable(frame) => {
                let client_id = self.client_id.as_deref().ok_or_else(|| {
                    Fault::protocol(
                        "missing client-id",
                        "A durable subscription needs a client-id header on CONNECT to name it.",
                    )
                })?;
                let queue = durable_subscription_queue(client_id, id);
                Plan::Consume { queue, durable: true, filter, prefetch: self.prefetch(frame)? }
            }
            SubscribeTo::Topic(filter) => Plan::Topic(filter),
            SubscribeTo::Temp { name, filter } => Plan::Temp { name: name.to_owned(), filter },
        };
        let source = match &plan {
            Plan::Topic(filter) => Source::Topic(filter.clone()),
            Plan::Temp { name, filter } => Source::Temp { name: name.clone(), filter: filter.clone() },
            Plan::Consume { queue, durable: true, .. } => Source::Durable(queue.clone()),
            Plan::Consume { queue, durable: false, .. } => Source::Queue(queue.clone()),
        };
        // An explicit subscription to a temporary queue replaces the automatic one.
        if let Plan::Temp { name, .. } = &plan {
            let auto = format!("{TEMP_QUEUE_PREFIX}{name}");
            if self.subs.by_id(&auto).is_some_and(|s| matches!(s.source, Source::Temp { .. })) {
                if let Some((sub, Source::Temp { filter, .. })) = self.subs.remove(&auto) {
                    actions.push(Action::Unsubscribe { filter, sub });
                }
            }
        }
        let sub = self.subs.add(id, source, ack).map_err(|e| self.add_fault(e, id))?;
        match plan {
            Plan::Topic(filter) | Plan::Temp { filter, .. } => actions.push(topic_subscribe(filter, sub)),
            Plan::Consume { queue, filter, prefetch, .. } => {
                actions.push(Action::Bind { queue: queue.clone(), filter, qos: Qos::AtLeastOnce });
                actions.push(Action::Consume { queue, sub, prefetch, auto_ack: ack == AckMode::Auto });
            }
        }
        Ok(Reply::Receipt)
    }

    /// The `prefetch-count` of a SUBSCRIBE to a durable queue: 1 to `Limits::max_inflight`,
    /// or `max_inflight` without the header.
    fn prefetch(&self, frame: &Frame) -> Result<u16, Fault> {
        let max = self.limits.max_inflight.max(1);
        let Some(value) = frame.header("prefetch-count") else { return Ok(max) };
        value
            .parse::<u16>()
            .ok()
            .filter(|n| (1..=max).contains(n) && value.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                Fault::protocol("invalid prefetch-count", format!("prefetch-count must be a number from 1 to {max}."))
            })
    }

    /// UNSUBSCRIBE by `id` (STOMP 1.0 also by `destination`). Unacked messages of the
    /// subscription are forgotten here; a queue consumer's go back to its queue
    /// ([`Action::Unconsume`]), and the queue stays. With `durable:true` (or
    /// `persistent:true`), a durable topic subscription's queue is deleted too
    /// ([`Action::DeleteQueue`]); that also works for an `id` not subscribed on this
    /// connection (a durable subscription left by an earlier one), given a CONNECT
    /// `client-id`.
    pub(super) fn on_unsubscribe(&mut self, frame: &Frame, actions: &mut Vec<Action>) -> Result<Reply, Fault> {
        let id = match (frame.header("id"), self.version) {
            (Some(id), _) => id,
            (None, Some(Version::V1_0)) => require(frame, "destination")?,
            (None, _) => return Err(Fault::missing(Command::Unsubscribe, "id")),
        };
        let delete = wants_durable(frame);
        match self.subs.remove(id) {
            Some((sub, Source::Topic(filter) | Source::Temp { filter, .. })) => {
                actions.push(Action::Unsubscribe { filter, sub })
            }
            Some((sub, Source::Queue(queue))) => actions.push(Action::Unconsume { queue, sub }),
            Some((sub, Source::Durable(queue))) => {
                actions.push(Action::Unconsume { queue: queue.clone(), sub });
                if delete {
                    actions.push(Action::DeleteQueue(queue));
                }
            }
            None => match (self.client_id.as_deref(), frame.header("id")) {
                (Some(client_id), Some(id)) if delete => {
                    actions.push(Action::DeleteQueue(durable_subscription_queue(client_id, id)));
                }
                _ => {
                    return Err(Fault::protocol(
                        "unknown subscription",
                        format!("There is no subscription with id {id:?}."),
                    ))
                }
            },
        }
        Ok(Reply::Receipt)
    }

    /// ACK or NACK, now or at COMMIT. Like ACK, NACK is cumulative on a `client`
    /// subscription. Each settled delivery from a durable queue becomes an [`Action::Ack`],
    /// or an [`Action::Nack`] whose `requeue` is the NACK's `requeue` header (default `true`;
    /// `requeue:false` dead-letters). Other deliveries are only forgotten: a NACKed topic
    /// message is dropped.
    pub(super) fn on_ack(&mut self, frame: &Frame, nack: bool, actions: &mut Vec<Action>) -> Result<Reply, Fault> {
        if nack && self.version == Some(Version::V1_0) {
            return Err(Fault::protocol("unexpected frame", "NACK is not part of STOMP 1.0."));
        }
        let verdict = if nack {
            let requeue = match frame.header("requeue") {
                None => true,
                Some(v) if v.eq_ignore_ascii_case("true") => true,
                Some(v) if v.eq_ignore_ascii_case("false") => false,
                Some(_) => return Err(Fault::protocol("invalid requeue header", "requeue must be true or false.")),
            };
            Verdict::Nack { requeue }
        } else {
            Verdict::Ack
        };
        let targets = self.ack_targets(frame)?;
        match frame.header("transaction") {
            Some(tx) => self.txs.push(tx, TxOp::Settle(targets, verdict), 64)?,
            None => self.settle(targets, verdict, actions),
        }
        Ok(Reply::Receipt)
    }

    /// Settles `targets` and pushes the store's ACK or NACK for each durable delivery among
    /// them, oldest first. A target that an earlier (cumulative) ACK already settled, or whose
    /// subscription is gone, settles nothing.
    fn settle(&mut self, targets: Vec<Target>, verdict: Verdict, actions: &mut Vec<Action>) {
        for t in targets {
            for at in self.subs.settle(t).into_iter().flatten() {
                actions.push(match verdict {
                    Verdict::Ack => Action::Ack(at),
                    Verdict::Nack { requeue } => Action::Nack { at, requeue },
                });
            }
        }
    }

    /// The deliveries an ACK or NACK refers to. STOMP 1.2: `id` is the MESSAGE's `ack` header.
    /// 1.1: `message-id` and `subscription`. 1.0: `message-id` alone, which acknowledges the
    /// message on every subscription holding it. A 1.2 frame without `id` falls back to the
    /// 1.1 headers, and a 1.1 frame without `subscription` to the 1.0 rule.
    fn ack_targets(&self, frame: &Frame) -> Result<Vec<Target>, Fault> {
        let unknown =
            || Fault::protocol("unknown message", format!("{} names no unacknowledged message.", frame.command));
        if self.version == Some(Version::V1_2) {
            if let Some(id) = frame.header("id") {
                let ack = id.parse::<u64>().map_err(|_| unknown())?;
                return self.subs.by_ack(ack).map(|t| vec![t]).ok_or_else(unknown);
            }
        }
        let msg = match frame.header("message-id") {
            Some(msg) => msg.parse::<u64>().map_err(|_| unknown())?,
            // A 1.2 client was told to name the message by `id`: say that.
            None if self.version == Some(Version::V1_2) => return Err(Fault::missing(frame.command, "id")),
            None => return Err(Fault::missing(frame.command, "message-id")),
        };
        let sub = if self.version == Some(Version::V1_0) { None } else { frame.header("subscription") };
        let targets = self.subs.by_message(sub, msg);
        if targets.is_empty() {
            return Err(unknown());
        }
        Ok(targets)
    }

    /// BEGIN.
    pub(super) fn on_begin(&mut self, frame: &Frame) -> Result<Reply, Fault> {
        self.txs.begin(require(frame, "transaction")?)?;
        Ok(Reply::Receipt)
    }

    /// COMMIT: carry out the transaction's SENDs, ACKs and NACKs, in order: each SEND's
    /// [`Action::Publish`] and each durable delivery's [`Action::Ack`] / [`Action::Nack`]
    /// are pushed now. A receipt waits until every SEND of the transaction has been routed.
    pub(super) fn on_commit(
        &mut self,
        frame: &Frame,
        receipt: Option<&str>,
        actions: &mut Vec<Action>,
    ) -> Result<Reply, Fault> {
        let ops = self.txs.commit(require(frame, "transaction")?)?;
        let sends = ops.iter().filter(|op| matches!(op, TxOp::Publish(_))).count();
        let mut tokens = match receipt {
            Some(receipt) if sends > 0 => self.receipts.open(receipt, sends),
            _ => Vec::new(),
        }
        .into_iter();
        let reply = if tokens.len() > 0 { Reply::Done } else { Reply::Receipt };
        for op in ops {
            match op {
                TxOp::Publish(msg) => {
                    let token = if receipt.is_some() { tokens.next() } else { self.bare_token(&msg) };
                    actions.push(Action::Publish { msg, token });
                }
                // A target that an ACK outside the transaction already settled is skipped.
                TxOp::Settle(targets, verdict) => self.settle(targets, verdict, actions),
            }
        }
        Ok(reply)
    }

    /// ABORT.
    pub(super) fn on_abort(&mut self, frame: &Frame) -> Result<Reply, Fault> {
        self.txs.abort(require(frame, "transaction")?)?;
        Ok(Reply::Receipt)
    }

    /// DISCONNECT: abort open transactions, send the receipt if asked, close.
    pub(super) fn on_disconnect(
        &mut self,
        receipt: Option<&str>,
        out: &mut Output,
        actions: &mut Vec<Action>,
    ) -> Reply {
        self.txs.abort_all();
        if let Some(receipt) = receipt {
            self.write_receipt(receipt, out);
        }
        self.close(CloseReason::ClientDisconnect, actions);
        Reply::Done
    }
}

/// A router subscription for a STOMP topic or temporary queue: QoS 1 so that a persistent
/// message keeps its QoS, one copy per subscription (not merged), no retained messages
/// (those are MQTT's; a STOMP subscription starts with what comes next).
fn topic_subscribe(filter: Filter, sub: diglot_core::SubId) -> Action {
    Action::Subscribe {
        filter,
        sub,
        qos: Qos::AtLeastOnce,
        no_local: false,
        merge: false,
        retained: diglot_core::RetainHandling::Never,
        share: None,
    }
}

fn props_size(p: &Props) -> usize {
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    opt(&p.content_type)
        + opt(&p.response_topic)
        + p.correlation_data.as_ref().map_or(0, Bytes::len)
        + p.user.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>()
}
