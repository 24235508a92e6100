//! Messages as the router sees them, independent of the protocol that carried them.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;

use crate::router::{ConnId, SubId};
use crate::topic::Topic;

/// Quality of service, in MQTT's terms. A STOMP `/topic` SEND is QoS 0 unless it carries
/// `persistent:true`, which makes it QoS 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Qos {
    /// At most once.
    AtMostOnce = 0,
    /// At least once.
    AtLeastOnce = 1,
    /// Exactly once.
    ExactlyOnce = 2,
}

impl Qos {
    /// The QoS for a wire value 0..=2, or `None`.
    pub fn from_u8(v: u8) -> Option<Qos> {
        match v {
            0 => Some(Qos::AtMostOnce),
            1 => Some(Qos::AtLeastOnce),
            2 => Some(Qos::ExactlyOnce),
            _ => None,
        }
    }
}

/// Optional message properties that cross protocols: MQTT 5 properties and STOMP headers.
/// Kept behind an `Option<Box<_>>` in [`Message`] so that a plain message stays small.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Props {
    /// MQTT 5 content type / STOMP `content-type`.
    pub content_type: Option<String>,
    /// MQTT 5 response topic / STOMP `reply-to` (canonical topic text).
    pub response_topic: Option<String>,
    /// MQTT 5 correlation data / STOMP `correlation-id`.
    pub correlation_data: Option<Bytes>,
    /// MQTT 5 payload format indicator: the payload is UTF-8 text.
    pub utf8_payload: bool,
    /// MQTT 5 user properties / other STOMP headers, in order.
    pub user: Vec<(String, String)>,
}

/// One published message. It is created once by the publishing adapter and shared by every
/// subscriber through an `Arc`; the payload is a `Bytes` and never copied per subscriber.
#[derive(Debug, Clone)]
pub struct Message {
    /// Broker-wide unique, increasing id (used for STOMP `message-id`).
    pub id: u64,
    /// The canonical topic.
    pub topic: Topic,
    /// The body.
    pub payload: Bytes,
    /// The QoS it was published with.
    pub qos: Qos,
    /// The MQTT retain flag.
    pub retain: bool,
    /// The connection that published it, for MQTT 5 No Local and loop prevention.
    pub origin: Option<ConnId>,
    /// When the message entered the broker.
    pub received_at: Instant,
    /// When the message expires (MQTT 5 Message Expiry Interval, STOMP `expires`): it is not
    /// delivered after that, and MQTT 5 deliveries carry the remaining interval.
    pub expires_at: Option<Instant>,
    /// The same expiry as wall-clock milliseconds since the Unix epoch, when the publisher
    /// gave it that way (STOMP `expires`), so that it is passed on exactly rather than
    /// recomputed from `expires_at`.
    pub expires_unix_ms: Option<u64>,
    /// Optional cross-protocol properties.
    pub props: Option<Box<Props>>,
    /// A retained message's copy queued for a new subscription of an MQTT persistent session:
    /// it goes out from the session queue with RETAIN=1 [MQTT-3.3.1-8], and, being in the
    /// queue, is sent again after a reconnect or restart until it is acknowledged
    /// [MQTT-4.4.0-1].
    pub retained_copy: bool,
    /// The wire bytes that subscribers of one encoding share (see [`Encodings`]).
    pub encoded: Encodings,
}

impl Message {
    /// A message with no properties, stamped now. The id is set by the router.
    ///
    /// A payload that is a slice of a larger buffer (the publisher's read buffer, a Redis
    /// reply) is copied into an allocation of its own size first: otherwise a message waiting
    /// in a slow subscriber's outbox, a durable queue's memory or the retained store would keep
    /// the whole buffer alive, several kilobytes for a small message, and a connection's
    /// outbox would hold far more memory than its byte bound counts. Payloads over
    /// [`Message::OWN_COPY_MAX`] are kept as they are: they make up most of any buffer they
    /// share, so the copy would cost more than it saves.
    pub fn new(topic: Topic, payload: Bytes, qos: Qos, retain: bool) -> Message {
        Message::received(topic, payload, qos, retain, Instant::now())
    }

    /// A message like [`Message::new`] that reached the broker at `at`: an adapter passes the
    /// clock reading of the event that brought it, rather than reading the clock again.
    pub fn received(topic: Topic, payload: Bytes, qos: Qos, retain: bool, at: Instant) -> Message {
        let payload = if payload.is_empty() || payload.len() > Self::OWN_COPY_MAX || payload.is_unique() {
            payload
        } else {
            Bytes::copy_from_slice(&payload)
        };
        Message {
            id: 0,
            topic,
            payload,
            qos,
            retain,
            origin: None,
            received_at: at,
            expires_at: None,
            expires_unix_ms: None,
            props: None,
            retained_copy: false,
            encoded: Encodings::default(),
        }
    }

    /// The largest payload [`Message::new`] copies out of a shared buffer.
    pub const OWN_COPY_MAX: usize = 64 * 1024;

    /// A message that arrived as `wire`, which is already its encoding for `slot` (an MQTT
    /// 3.1.1 QoS 0 PUBLISH is sent to 3.1.1 subscribers exactly as it came in), with the
    /// payload as its last `payload_len` bytes. The payload and that encoding share one
    /// allocation, which the message owns (`wire` must not be a slice of a larger buffer), and
    /// the message is never encoded for `slot` again: a message waiting in an outbox holds its
    /// bytes once instead of twice.
    pub fn with_wire(
        topic: Topic,
        wire: Bytes,
        payload_len: usize,
        qos: Qos,
        retain: bool,
        at: Instant,
        slot: WireSlot,
    ) -> Message {
        let payload = wire.slice(wire.len().saturating_sub(payload_len)..);
        let mut msg = Message::received(topic, Bytes::new(), qos, retain, at);
        msg.payload = payload;
        msg.encoded = Encodings::with(slot, wire);
        msg
    }
}

/// One wire encoding of a message that every subscriber speaking it can share: the bytes
/// depend only on the message, never on the subscriber. Which part of a frame that is, is the
/// protocol adapter's business; the slots only keep them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireSlot {
    /// An MQTT 3.1/3.1.1 QoS 0 PUBLISH with RETAIN 0 (the flag is bit 0 of its first byte).
    Mqtt3Qos0 = 0,
    /// An MQTT 5 QoS 0 PUBLISH with RETAIN 0 and no per-subscriber property (Subscription
    /// Identifier, Topic Alias, remaining Message Expiry Interval).
    Mqtt5Qos0 = 1,
    /// A STOMP 1.0 MESSAGE as the first subscription it went to got it (without `ack`),
    /// behind its WebSocket frame header ([`crate::WsFramed`]): the part after the
    /// per-subscription headers is every subscription's.
    Stomp10 = 2,
    /// The same for STOMP 1.1.
    Stomp11 = 3,
    /// The same for STOMP 1.2.
    Stomp12 = 4,
}

const SLOTS: usize = 5;

/// Lazily filled encodings of one message, shared by all its deliveries (a QoS 0 message to
/// 100 MQTT 3.1.1 subscribers is encoded once, not 100 times). It costs 56 bytes in
/// [`Message`]: the encoding the message arrived as, if it is one of the slots (see
/// [`Message::with_wire`]), and a `OnceLock` of a pointer to the other slots, which is one
/// allocation of about 200 bytes once the first of them is stored, plus the encoded bytes.
/// A clone of a message starts empty, because a clone may be changed before it is shared.
#[derive(Default)]
pub struct Encodings {
    /// The bytes the message arrived as, already one of its encodings.
    arrived: Option<(WireSlot, Bytes)>,
    slots: OnceLock<Box<Slots>>,
}

#[derive(Default)]
struct Slots {
    bytes: [OnceLock<Bytes>; SLOTS],
    /// Whether the payload is valid UTF-8 (a STOMP frame goes out as a text WebSocket message
    /// when it is), found out once for all subscribers.
    utf8: OnceLock<bool>,
}

impl Encodings {
    /// Encodings with `slot` already filled with the bytes the message arrived as, kept in
    /// place (no allocation for the slots).
    pub fn with(slot: WireSlot, bytes: Bytes) -> Encodings {
        Encodings { arrived: Some((slot, bytes)), slots: OnceLock::new() }
    }

    /// The bytes in `slot`, if they were encoded already.
    pub fn get(&self, slot: WireSlot) -> Option<&Bytes> {
        match &self.arrived {
            Some((s, bytes)) if *s == slot => Some(bytes),
            _ => self.slots.get().and_then(|slots| slots.bytes[slot as usize].get()),
        }
    }

    /// The bytes in `slot`, encoded by `encode` if no delivery did it before. If two
    /// deliveries race, both may encode, and one result is kept: they are equal.
    pub fn get_or_encode(&self, slot: WireSlot, encode: impl FnOnce() -> Bytes) -> &Bytes {
        match &self.arrived {
            Some((s, bytes)) if *s == slot => bytes,
            _ => self.slots.get_or_init(Default::default).bytes[slot as usize].get_or_init(encode),
        }
    }

    /// Whether `payload` (the message's) is valid UTF-8: checked once, when encodings are kept
    /// (a message that goes to several connections), else each time.
    /// The answer already kept is read inline (a STOMP delivery asks once per subscriber).
    #[inline]
    pub fn is_utf8(&self, payload: &[u8]) -> bool {
        match self.slots.get().and_then(|slots| slots.utf8.get()) {
            Some(&utf8) => utf8,
            None => self.check_utf8(payload),
        }
    }

    fn check_utf8(&self, payload: &[u8]) -> bool {
        match self.slots.get() {
            Some(slots) => *slots.utf8.get_or_init(|| std::str::from_utf8(payload).is_ok()),
            None => std::str::from_utf8(payload).is_ok(),
        }
    }
}

impl Clone for Encodings {
    fn clone(&self) -> Encodings {
        Encodings::default()
    }
}

impl std::fmt::Debug for Encodings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let filled = self.slots.get().map_or(0, |slots| slots.bytes.iter().filter(|s| s.get().is_some()).count())
            + usize::from(self.arrived.is_some());
        write!(f, "Encodings({filled} filled)")
    }
}

/// A durable queue's id, as the store assigns it.
pub type QueueId = u64;

/// A position in a durable queue: increasing, so seq order is delivery order.
pub type Seq = u64;

/// Where a delivery sits in the store, so that the client's acknowledgement can delete it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DurableRef {
    /// The queue.
    pub queue: QueueId,
    /// The entry.
    pub seq: Seq,
}

/// One message on its way to one subscription of one connection.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The shared message.
    pub msg: Arc<Message>,
    /// The subscription (chosen by the subscribing adapter) that matched.
    pub sub: SubId,
    /// The QoS to deliver with: the lower of the publish QoS and the subscription QoS.
    pub qos: Qos,
    /// Set when the message comes from a durable queue and must be acknowledged with
    /// [`crate::Action::Ack`] (or refused with [`crate::Action::Nack`]) to leave the store.
    pub durable: Option<DurableRef>,
    /// How many times this message was delivered before (0 for a first delivery). A
    /// redelivery is flagged on the wire: MQTT DUP=1, STOMP `redelivered:true`, and both carry
    /// the count (`redelivery-count`).
    pub redeliveries: u32,
    /// The message is a retained message sent because of a new subscription (MQTT sets the
    /// RETAIN flag on it [MQTT-3.3.1-8]).
    pub retained: bool,
}

impl Delivery {
    /// A first, non-durable delivery.
    pub fn new(msg: Arc<Message>, sub: SubId, qos: Qos) -> Delivery {
        Delivery { msg, sub, qos, durable: None, redeliveries: 0, retained: false }
    }
}

impl Message {
    /// Whether the message has expired at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }
}

impl Delivery {
    /// Whether this delivery should use (and fill) the shared encoding in `slot`: the message
    /// goes to other connections too (its `Arc` has other holders), or one of them already
    /// encoded it. A message to a single subscriber is encoded straight into that
    /// subscriber's output instead, which saves a copy and an allocation.
    pub fn shares(&self, slot: WireSlot) -> bool {
        Arc::strong_count(&self.msg) > 1 || self.msg.encoded.get(slot).is_some()
    }

    /// Whether the message was delivered before.
    pub fn is_redelivery(&self) -> bool {
        self.redeliveries > 0
    }

    /// The bytes this delivery charges against its outbox's byte limit: a conservative
    /// estimate of the memory it keeps alive while it waits. That is its message (payload,
    /// topic, and the message's own bookkeeping) and one wire encoding of it: the shared
    /// encoding a fan-out keeps with the message ([`Encodings`]) or this subscriber's own
    /// frame, each about the size of the payload and topic again. It depends only on what
    /// never changes in a message, so the outbox takes off exactly what it added.
    pub fn cost(&self) -> usize {
        2 * (self.msg.payload.len() + self.msg.topic.as_str().len()) + Self::OVERHEAD
    }

    /// What a waiting delivery holds besides its payload and topic bytes, allocator rounding
    /// included: the `Message` and its `Arc` (about 200 bytes), the [`Encodings`] slots
    /// (about 200), the frame's headers, and the outbox's own slot for the `Delivery`.
    const OVERHEAD: usize = 512;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within(part: &[u8], whole: &[u8]) -> bool {
        let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
        p >= w && p < w + whole.len()
    }

    #[test]
    fn a_payload_sliced_from_a_read_buffer_gets_its_own_allocation() {
        let read = Bytes::from(vec![7u8; 8192]);
        let payload = read.slice(100..116);
        let m = Message::new(Topic::new("a/b").unwrap(), payload, Qos::AtMostOnce, false);
        assert_eq!(&m.payload[..], &[7u8; 16][..]);
        assert!(!within(&m.payload, &read), "the message must not keep the read buffer alive");
    }

    #[test]
    fn an_owned_or_large_payload_is_not_copied() {
        let owned = Bytes::from(vec![1u8; 32]);
        let at = owned.as_ptr();
        let m = Message::new(Topic::new("t").unwrap(), owned, Qos::AtMostOnce, false);
        assert_eq!(m.payload.as_ptr(), at);
        let big = Bytes::from(vec![2u8; Message::OWN_COPY_MAX * 2]);
        let part = big.slice(..Message::OWN_COPY_MAX + 1);
        let m = Message::new(Topic::new("t").unwrap(), part, Qos::AtMostOnce, false);
        assert!(within(&m.payload, &big));
    }

    #[test]
    fn a_delivery_costs_its_message_and_one_encoding() {
        let m = Message::new(Topic::new("abcd").unwrap(), Bytes::from(vec![0u8; 1000]), Qos::AtMostOnce, false);
        let d = Delivery::new(Arc::new(m), 1, Qos::AtMostOnce);
        assert_eq!(d.cost(), 2 * 1004 + Delivery::OVERHEAD);
    }

    #[test]
    fn a_message_with_its_wire_bytes_holds_them_once_and_is_not_encoded_again() {
        let wire = Bytes::from(b"\x30\x08\x00\x01thello!".to_vec());
        let at = Instant::now();
        let m = Message::with_wire(
            Topic::new("t").unwrap(),
            wire.clone(),
            6,
            Qos::AtMostOnce,
            false,
            at,
            WireSlot::Mqtt3Qos0,
        );
        assert_eq!(&m.payload[..], b"hello!");
        assert!(within(&m.payload, &wire), "the payload is the wire bytes' tail, not a copy");
        assert_eq!(m.encoded.get(WireSlot::Mqtt3Qos0), Some(&wire));
        assert_eq!(m.encoded.get_or_encode(WireSlot::Mqtt3Qos0, || unreachable!("encoded again")), &wire);
        assert!(m.encoded.get(WireSlot::Mqtt5Qos0).is_none());
        let d = Delivery::new(Arc::new(m), 1, Qos::AtMostOnce);
        assert!(d.shares(WireSlot::Mqtt3Qos0), "an encoding is there: a single subscriber copies it");
    }
}
