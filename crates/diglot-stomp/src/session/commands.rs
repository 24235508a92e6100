//! The frames of an established session: SEND, SUBSCRIBE, UNSUBSCRIBE, ACK, NACK, BEGIN,
//! COMMIT, ABORT and DISCONNECT (STOMP 1.2 "Client Frames").

use std::time::Instant;

use bytes::Bytes;
use diglot_core::{Action, CloseReason, Message, Output, Props, Qos, Topic};

use super::fault::Fault;
use super::subs::{AckMode, AddError, Target};
use super::tx::{TxError, TxOp};
use super::{Reply, Session};
use crate::destination;
use crate::frame::{Command, Frame};
use crate::version::Version;

/// SEND headers that configure the frame itself and are not passed on as message properties.
const SEND_CONTROL_HEADERS: [&str; 5] = ["destination", "content-length", "receipt", "transaction", "persistent"];

fn require<'f>(frame: &'f Frame, header: &str) -> Result<&'f str, Fault> {
    frame.header(header).ok_or_else(|| Fault::missing(frame.command, header))
}

impl Session {
    /// SEND: publish to a `/topic/` destination, now or at COMMIT.
    pub(super) fn on_send(
        &mut self,
        frame: Frame,
        receipt: Option<&str>,
        now: Instant,
        actions: &mut Vec<Action>,
    ) -> Result<Reply, Fault> {
        let topic = destination::send_topic(require(&frame, "destination")?)?;
        let tx = frame.header("transaction").map(str::to_owned);
        if let Some(tx) = &tx {
            if !self.txs.is_open(tx) {
                return Err(TxError::Unknown.into());
            }
        }
        let msg = self.message_from(topic, frame, now);
        if let Some(tx) = tx {
            let cost = msg.payload.len() + msg.topic.as_str().len() + msg.props.as_ref().map_or(0, |p| props_size(p));
            self.txs.push(&tx, TxOp::Publish(msg), cost)?;
            return Ok(Reply::Receipt);
        }
        match receipt {
            Some(receipt) => {
                let token = self.receipts.open(receipt, 1).pop();
                actions.push(Action::Publish { msg, token });
                Ok(Reply::Done)
            }
            None => {
                actions.push(Action::Publish { msg, token: None });
                Ok(Reply::Receipt)
            }
        }
    }

    /// Builds the router message for a SEND, taking its body without copying.
    ///
    /// `persistent:true` makes it QoS 1 (ARCHITECTURE.md "Protocol mapping"). `content-type`,
    /// `reply-to` and `correlation-id` become the matching MQTT 5 properties; every other
    /// header except [`SEND_CONTROL_HEADERS`] becomes a user property, in order, first
    /// occurrence only (STOMP 1.2 "Repeated Header Entries").
    fn message_from(&self, topic: Topic, frame: Frame, now: Instant) -> Message {
        let qos = if frame.header("persistent") == Some("true") { Qos::AtLeastOnce } else { Qos::AtMostOnce };
        let mut props = Props::default();
        for (name, value) in frame.headers {
            match name.as_str() {
                n if SEND_CONTROL_HEADERS.contains(&n) => {}
                "content-type" if props.content_type.is_none() => props.content_type = Some(value),
                "reply-to" if props.response_topic.is_none() => {
                    props.response_topic = Some(destination::reply_to_canonical(&value));
                }
                "correlation-id" if props.correlation_data.is_none() => {
                    props.correlation_data = Some(Bytes::from(value.into_bytes()));
                }
                "content-type" | "reply-to" | "correlation-id" => {}
                _ => {
                    if !props.user.iter().any(|(n, _)| *n == name) {
                        props.user.push((name, value));
                    }
                }
            }
        }
        let mut msg = Message::new(topic, frame.body, qos, false);
        msg.origin = Some(self.info.id);
        msg.received_at = now;
        if props != Props::default() {
            msg.props = Some(Box::new(props));
        }
        msg
    }

    /// SUBSCRIBE. Every STOMP subscription is registered at QoS 1, so that a persistent
    /// message keeps its QoS (the router delivers the lower of the two) and is not dropped
    /// silently at a full outbox; a non-persistent one stays QoS 0. Subscriptions are not
    /// merged: overlapping subscriptions each get their own MESSAGE, as STOMP expects.
    pub(super) fn on_subscribe(&mut self, frame: &Frame, actions: &mut Vec<Action>) -> Result<Reply, Fault> {
        let dest = require(frame, "destination")?;
        let filter = destination::subscribe_filter(dest)?;
        let id = match frame.header("id") {
            Some(id) => id,
            // STOMP 1.0 made `id` optional: the destination then names the subscription.
            None if self.version == Some(Version::V1_0) => dest,
            None => return Err(Fault::missing(Command::Subscribe, "id")),
        };
        let ack = AckMode::parse(frame.header("ack"))
            .ok_or_else(|| Fault::protocol("invalid ack mode", "ack must be auto, client or client-individual."))?;
        let sub = self.subs.add(id, filter.clone(), ack).map_err(|e| match e {
            AddError::Duplicate => {
                Fault::protocol("duplicate subscription id", format!("Subscription id {id:?} is already in use."))
            }
            AddError::TooMany => Fault::limit(
                "too many subscriptions",
                format!("A connection may hold at most {} subscriptions.", self.limits.max_subscriptions),
            ),
        })?;
        actions.push(Action::Subscribe { filter, sub, qos: Qos::AtLeastOnce, no_local: false, merge: false });
        Ok(Reply::Receipt)
    }

    /// UNSUBSCRIBE by `id` (STOMP 1.0 also by `destination`). Unacked messages of the
    /// subscription are forgotten.
    pub(super) fn on_unsubscribe(&mut self, frame: &Frame, actions: &mut Vec<Action>) -> Result<Reply, Fault> {
        let id = match (frame.header("id"), self.version) {
            (Some(id), _) => id,
            (None, Some(Version::V1_0)) => require(frame, "destination")?,
            (None, _) => return Err(Fault::missing(Command::Unsubscribe, "id")),
        };
        let (sub, filter) = self.subs.remove(id).ok_or_else(|| {
            Fault::protocol("unknown subscription", format!("There is no subscription with id {id:?}."))
        })?;
        actions.push(Action::Unsubscribe { filter, sub });
        Ok(Reply::Receipt)
    }

    /// ACK or NACK, now or at COMMIT.
    ///
    /// NACK drops the message for now: redelivery and dead-lettering come with the durable
    /// store. Like ACK, it is cumulative on a `client` subscription.
    pub(super) fn on_ack(&mut self, frame: &Frame, nack: bool) -> Result<Reply, Fault> {
        if nack && self.version == Some(Version::V1_0) {
            return Err(Fault::protocol("unexpected frame", "NACK is not part of STOMP 1.0."));
        }
        let targets = self.ack_targets(frame)?;
        match frame.header("transaction") {
            Some(tx) => self.txs.push(tx, TxOp::Settle(targets), 64)?,
            None => {
                for t in targets {
                    self.subs.settle(t);
                }
            }
        }
        Ok(Reply::Receipt)
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
        let msg = require(frame, "message-id")?.parse::<u64>().map_err(|_| unknown())?;
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

    /// COMMIT: carry out the transaction's SENDs, ACKs and NACKs in order. A receipt waits
    /// until every SEND of the transaction has been routed.
    pub(super) fn on_commit(
        &mut self,
        frame: &Frame,
        receipt: Option<&str>,
        actions: &mut Vec<Action>,
    ) -> Result<Reply, Fault> {
        let ops = self.txs.commit(require(frame, "transaction")?)?;
        let mut messages = Vec::new();
        for op in ops {
            match op {
                TxOp::Publish(msg) => messages.push(msg),
                // A target that an ACK outside the transaction already settled is skipped.
                TxOp::Settle(targets) => targets.into_iter().for_each(|t| {
                    self.subs.settle(t);
                }),
            }
        }
        let mut tokens = match receipt {
            Some(receipt) if !messages.is_empty() => self.receipts.open(receipt, messages.len()),
            _ => Vec::new(),
        }
        .into_iter();
        let reply = if tokens.len() > 0 { Reply::Done } else { Reply::Receipt };
        for msg in messages {
            actions.push(Action::Publish { msg, token: tokens.next() });
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

fn props_size(p: &Props) -> usize {
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    opt(&p.content_type)
        + opt(&p.response_topic)
        + p.correlation_data.as_ref().map_or(0, Bytes::len)
        + p.user.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>()
}
