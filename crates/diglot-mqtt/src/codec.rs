//! The wire: packet framing, protocol-level detection, and a thin wrapper over rmqtt-codec.
//!
//! Diglot finds packet boundaries itself (the fixed header's Remaining Length, MQTT §2.2.3)
//! so that the size limit is checked against the whole packet as soon as its header is in,
//! long before the packet completes, and so that the codec only ever sees one complete packet
//! and keeps no partial state. Before the first CONNECT is decoded, [`detect`] reads the
//! protocol name and level to choose the v3 codec (levels 3 and 4) or the v5 codec (level 5).
//!
//! Decoded packets of both versions are turned into one version-neutral [`Inbound`], so the
//! session logic is written once. Replies are encoded by [`Wire`] from neutral arguments.
//!
//! This module knows no session state and no reason-code policy (that is `reason.rs`).

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use diglot_core::{Message, Output, WireSlot};
use rmqtt_codec::error::DecodeError;
use rmqtt_codec::types::{Publish, QoS as WireQos};
use rmqtt_codec::{v3, v5};
use tokio_util::codec::{Decoder, Encoder};

/// The MQTT protocol level of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    /// MQTT 3.1, protocol name `MQIsdp`, level 3.
    V31,
    /// MQTT 3.1.1, protocol name `MQTT`, level 4.
    V311,
    /// MQTT 5.0, protocol name `MQTT`, level 5.
    V5,
}

impl Version {
    /// The label for logs (`Adapter::protocol`).
    pub(crate) fn label(self) -> &'static str {
        match self {
            Version::V31 => "mqtt/3.1",
            Version::V311 => "mqtt/3.1.1",
            Version::V5 => "mqtt/5.0",
        }
    }

    /// Whether this is MQTT 5.
    pub(crate) fn is_v5(self) -> bool {
        self == Version::V5
    }
}

/// What the front of the input buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frame {
    /// Not a whole packet yet.
    Incomplete,
    /// A whole packet of this many bytes (fixed header included).
    Packet(usize),
    /// A packet whose header announces this many bytes, more than the limit.
    TooLarge(usize),
    /// The Remaining Length runs past its fourth byte [MQTT-1.5.5] (§2.2.3).
    Malformed,
}

/// Finds the first packet in `buf`, checking its announced size against `max` bytes as soon
/// as the fixed header is complete.
pub(crate) fn frame(buf: &[u8], max: usize) -> Frame {
    let mut remaining = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else { return Frame::Incomplete };
        remaining |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let total = 2 + i + remaining;
            if total > max {
                return Frame::TooLarge(total);
            }
            return if buf.len() >= total { Frame::Packet(total) } else { Frame::Incomplete };
        }
    }
    Frame::Malformed
}

/// The first byte of a QoS 0 PUBLISH with DUP and RETAIN clear: as an MQTT 3.x subscriber
/// would be sent it.
pub(crate) const PLAIN_PUBLISH_BYTE: u8 = 0x30;

/// Whether a complete packet's Remaining Length takes as few bytes as its value needs, as the
/// broker's own encoder writes it (a peer may pad it: 0x80 0x00 is 0).
pub(crate) fn minimal_length(packet: &[u8]) -> bool {
    let mut n = 0;
    while packet.get(1 + n).is_some_and(|b| b & 0x80 != 0) {
        n += 1;
    }
    let used = n + 1;
    let value = packet.len().saturating_sub(1 + used);
    let needed = match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    used == needed
}

/// The first byte of a CONNECT packet: type 1, reserved flags 0 [MQTT-2.2.2-2].
pub(crate) const CONNECT_BYTE: u8 = 0x10;

/// What the protocol name and level of a complete CONNECT packet say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detect {
    /// A level Diglot speaks.
    Supported(Version),
    /// A known protocol name with a level Diglot does not speak [MQTT-3.1.2-2].
    UnsupportedLevel,
    /// Not an MQTT protocol name, or too short to tell [MQTT-3.1.2-1].
    BadName,
}

/// Reads the protocol name and level of the complete CONNECT packet `packet` (fixed header
/// included). `MQTT` goes with level 4 or 5, `MQIsdp` with level 3.
pub(crate) fn detect(packet: &[u8]) -> Detect {
    // Skip the fixed header: one type byte, then the Remaining Length bytes.
    let Some(len_bytes) = packet.iter().skip(1).take(4).position(|b| b & 0x80 == 0) else {
        return Detect::BadName;
    };
    let body = &packet[(2 + len_bytes).min(packet.len())..];
    let (name, level) = match body {
        [0, 4, b'M', b'Q', b'T', b'T', level, ..] => ("MQTT", *level),
        [0, 6, b'M', b'Q', b'I', b's', b'd', b'p', level, ..] => ("MQIsdp", *level),
        _ => return Detect::BadName,
    };
    match (name, level) {
        ("MQIsdp", 3) => Detect::Supported(Version::V31),
        ("MQTT", 4) => Detect::Supported(Version::V311),
        ("MQTT", 5) => Detect::Supported(Version::V5),
        _ => Detect::UnsupportedLevel,
    }
}

/// A CONNECT of either version, in one shape.
#[derive(Debug)]
pub(crate) struct ConnectReq {
    /// Clean Session (3.x) / Clean Start (5).
    pub clean_start: bool,
    /// Keep Alive in seconds.
    pub keep_alive: u16,
    /// The client identifier as sent (maybe empty).
    pub client_id: ByteString,
    /// User Name, if the flag was set.
    pub username: Option<ByteString>,
    /// Password, if the flag was set.
    pub password: Option<Bytes>,
    /// The will, if the Will Flag was set.
    pub will: Option<v5::LastWill>,
    /// MQTT 5 Receive Maximum.
    pub receive_max: Option<NonZeroU16>,
    /// MQTT 5 Maximum Packet Size.
    pub max_packet_size: Option<NonZeroU32>,
    /// MQTT 5 Authentication Method (enhanced authentication, §4.12).
    pub auth_method: Option<ByteString>,
    /// MQTT 5 Authentication Data.
    pub auth_data: Option<Bytes>,
    /// MQTT 5 Session Expiry Interval.
    pub session_expiry_secs: u32,
    /// MQTT 5 Topic Alias Maximum: how many aliases the server may use towards the client.
    pub topic_alias_max: u16,
    /// MQTT 5 Request Problem Information (default 1; always 1 in 3.x).
    pub request_problem_info: bool,
    /// MQTT 5 Request Response Information (default 0).
    pub request_response_info: bool,
}

impl ConnectReq {
    fn from_v3(c: v3::Connect) -> ConnectReq {
        let will = c.last_will.map(|w| v5::LastWill {
            qos: w.qos,
            retain: w.retain,
            topic: w.topic,
            message: w.message,
            will_delay_interval_sec: None,
            correlation_data: None,
            message_expiry_interval: None,
            content_type: None,
            user_properties: Vec::new(),
            is_utf8_payload: None,
            response_topic: None,
        });
        ConnectReq {
            clean_start: c.clean_session,
            keep_alive: c.keep_alive,
            client_id: c.client_id,
            username: c.username,
            password: c.password,
            will,
            receive_max: None,
            max_packet_size: None,
            auth_method: None,
            auth_data: None,
            session_expiry_secs: 0,
            topic_alias_max: 0,
            request_problem_info: true,
            request_response_info: false,
        }
    }

    fn from_v5(c: v5::Connect) -> ConnectReq {
        ConnectReq {
            clean_start: c.clean_start,
            keep_alive: c.keep_alive,
            client_id: c.client_id,
            username: c.username,
            password: c.password,
            will: c.last_will,
            receive_max: c.receive_max,
            max_packet_size: c.max_packet_size,
            auth_method: c.auth_method,
            auth_data: c.auth_data,
            session_expiry_secs: c.session_expiry_interval_secs,
            topic_alias_max: c.topic_alias_max,
            request_problem_info: c.request_problem_info,
            request_response_info: c.request_response_info,
        }
    }
}

/// One requested subscription.
#[derive(Debug)]
pub(crate) struct SubReq {
    /// The filter text as sent.
    pub filter: ByteString,
    /// Requested maximum QoS (0..=2).
    pub qos: u8,
    /// MQTT 5 No Local.
    pub no_local: bool,
    /// MQTT 5 Retain As Published.
    pub retain_as_published: bool,
    /// MQTT 5 Retain Handling (0, 1 or 2; 0 in 3.x).
    pub retain_handling: u8,
}

/// A packet from the client, of either version, in one shape.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// CONNECT.
    Connect(Box<ConnectReq>),
    /// PUBLISH (v3 and v5 share the codec's type; `properties` is `None` in v3).
    Publish(Box<Publish>),
    /// PUBACK.
    PubAck(NonZeroU16),
    /// PUBREC, with its MQTT 5 reason code (0 in 3.x).
    PubRec(NonZeroU16, u8),
    /// PUBREL.
    PubRel(NonZeroU16),
    /// PUBCOMP.
    PubComp(NonZeroU16),
    /// SUBSCRIBE.
    Subscribe {
        /// Packet Identifier.
        packet_id: NonZeroU16,
        /// MQTT 5 Subscription Identifier.
        sub_id: Option<NonZeroU32>,
        /// The filters, in order.
        filters: Vec<SubReq>,
    },
    /// UNSUBSCRIBE.
    Unsubscribe {
        /// Packet Identifier.
        packet_id: NonZeroU16,
        /// The filters, in order.
        filters: Vec<ByteString>,
    },
    /// PINGREQ.
    PingReq,
    /// DISCONNECT, with its MQTT 5 reason code (0 in 3.x) and Session Expiry Interval.
    Disconnect {
        /// Reason code.
        reason: u8,
        /// MQTT 5 Session Expiry Interval, if present.
        session_expiry_secs: Option<u32>,
    },
    /// MQTT 5 AUTH (§3.15).
    Auth {
        /// Reason code: 0x00 Success, 0x18 Continue authentication, 0x19 Re-authenticate.
        reason: u8,
        /// Authentication Method.
        method: Option<ByteString>,
        /// Authentication Data.
        data: Option<Bytes>,
    },
    /// A packet only a server may send (CONNACK, SUBACK, UNSUBACK, PINGRESP); the name is for
    /// the close reason.
    Unexpected(&'static str),
}

fn from_v3(p: v3::Packet) -> Inbound {
    use v3::Packet as P;
    match p {
        P::Connect(c) => Inbound::Connect(Box::new(ConnectReq::from_v3(*c))),
        P::Publish(p) => Inbound::Publish(p),
        P::PublishAck { packet_id } => Inbound::PubAck(packet_id),
        P::PublishReceived { packet_id } => Inbound::PubRec(packet_id, 0),
        P::PublishRelease { packet_id } => Inbound::PubRel(packet_id),
        P::PublishComplete { packet_id } => Inbound::PubComp(packet_id),
        P::Subscribe { packet_id, topic_filters } => Inbound::Subscribe {
            packet_id,
            sub_id: None,
            filters: topic_filters
                .into_iter()
                .map(|(filter, qos)| SubReq {
                    filter,
                    qos: qos.value(),
                    no_local: false,
                    retain_as_published: false,
                    retain_handling: 0,
                })
                .collect(),
        },
        P::Unsubscribe { packet_id, topic_filters } => Inbound::Unsubscribe { packet_id, filters: topic_filters },
        P::PingRequest => Inbound::PingReq,
        P::Disconnect => Inbound::Disconnect { reason: 0, session_expiry_secs: None },
        P::ConnectAck(_) => Inbound::Unexpected("CONNACK"),
        P::SubscribeAck { .. } => Inbound::Unexpected("SUBACK"),
        P::UnsubscribeAck { .. } => Inbound::Unexpected("UNSUBACK"),
        P::PingResponse => Inbound::Unexpected("PINGRESP"),
    }
}

fn from_v5(p: v5::Packet) -> Inbound {
    use v5::Packet as P;
    match p {
        P::Connect(c) => Inbound::Connect(Box::new(ConnectReq::from_v5(*c))),
        P::Publish(p) => Inbound::Publish(p),
        P::PublishAck(a) => Inbound::PubAck(a.packet_id),
        P::PublishReceived(a) => Inbound::PubRec(a.packet_id, a.reason_code.into()),
        P::PublishRelease(a) => Inbound::PubRel(a.packet_id),
        P::PublishComplete(a) => Inbound::PubComp(a.packet_id),
        P::Subscribe(s) => Inbound::Subscribe {
            packet_id: s.packet_id,
            sub_id: s.id,
            filters: s
                .topic_filters
                .into_iter()
                .map(|(filter, o)| SubReq {
                    filter,
                    qos: o.qos.value(),
                    no_local: o.no_local,
                    retain_as_published: o.retain_as_published,
                    retain_handling: o.retain_handling.into(),
                })
                .collect(),
        },
        P::Unsubscribe(u) => Inbound::Unsubscribe { packet_id: u.packet_id, filters: u.topic_filters },
        P::PingRequest => Inbound::PingReq,
        P::Disconnect(d) => {
            Inbound::Disconnect { reason: d.reason_code.into(), session_expiry_secs: d.session_expiry_interval_secs }
        }
        P::ConnectAck(_) => Inbound::Unexpected("CONNACK"),
        P::SubscribeAck(_) => Inbound::Unexpected("SUBACK"),
        P::UnsubscribeAck(_) => Inbound::Unexpected("UNSUBACK"),
        P::PingResponse => Inbound::Unexpected("PINGRESP"),
        P::Auth(a) => Inbound::Auth { reason: a.reason_code.into(), method: a.auth_method, data: a.auth_data },
    }
}

#[derive(Debug)]
enum Codec {
    V3(v3::Codec),
    V5(v5::Codec),
}

/// The longest Reason String Diglot sends (§3.14.2.2.2 "a human readable string designed
/// for diagnostics"): longer texts are cut at a character boundary.
const MAX_REASON_BYTES: usize = 120;

/// A Reason String for `text`, at most [`MAX_REASON_BYTES`] long.
pub(crate) fn reason_string(text: &str) -> ByteString {
    let mut end = text.len().min(MAX_REASON_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    ByteString::from(&text[..end])
}

/// The codec of one connection, chosen after detection, with encoders for every packet the
/// server sends. Each encoder writes one packet and ends one frame of the [`Output`].
///
/// Once CONNECT is accepted, [`Wire::set_client_max`] records the client's MQTT 5 Maximum
/// Packet Size: a PUBLISH larger than that is not written [MQTT-3.1.2-25], and any other
/// packet that would be too large because of its Reason String goes out without it
/// [MQTT-3.1.2-26] (§3.1.2.11.4).
#[derive(Debug)]
pub(crate) struct Wire {
    version: Version,
    codec: Codec,
    client_max: Option<NonZeroU32>,
}

impl Wire {
    /// The codec for `version`. Size limits are enforced by [`frame`], so the codec's own
    /// limits are off (0).
    pub(crate) fn new(version: Version) -> Wire {
        let codec = match version {
            Version::V5 => Codec::V5(v5::Codec::new(0, 0)),
            Version::V31 | Version::V311 => Codec::V3(v3::Codec::new(0)),
        };
        Wire { version, codec, client_max: None }
    }

    /// The protocol level.
    pub(crate) fn version(&self) -> Version {
        self.version
    }

    /// The client's MQTT 5 Maximum Packet Size.
    pub(crate) fn set_client_max(&mut self, max: Option<NonZeroU32>) {
        self.client_max = max;
    }

    /// Decodes one complete packet, as found by [`frame`].
    pub(crate) fn decode(&mut self, mut packet: BytesMut) -> Result<Inbound, DecodeError> {
        // rmqtt-codec 0.3 refuses an MQTT 5 CONNECT with an empty client id and Clean Start 0,
        // the MQTT 3.1.1 rule [MQTT-3.1.3-8] that MQTT 5 dropped: there an empty id is
        // assigned a unique one, and the CONNECT is processed as if the client had sent that
        // id [MQTT-3.1.3-6] [MQTT-3.1.3-7], whatever its Clean Start. So such a CONNECT is
        // decoded with the flag set, and the client's Clean Start 0 is put back afterwards.
        let clean_start_was_0 = match self.codec {
            Codec::V5(_) => set_clean_start_of_connect(&mut packet),
            Codec::V3(_) => false,
        };
        // rmqtt-codec 0.3 reads only the QoS bits of a 3.1.1 SUBSCRIBE's options byte; the
        // others are reserved, and a packet with any of them set is malformed [MQTT-3.8.3-4].
        if matches!(self.codec, Codec::V3(_)) && v3_subscribe_has_reserved_bits(&packet) {
            return Err(DecodeError::MalformedPacket);
        }
        // Nor does it check the length of packets whose length is fixed, or (in MQTT 5) that
        // a CONNECT without a will has no Will QoS or Will Retain [MQTT-3.1.2-11]
        // [MQTT-3.1.2-13], which its 3.1.1 decoder does check.
        if has_wrong_fixed_length(self.version, &packet) {
            return Err(DecodeError::InvalidLength);
        }
        if matches!(self.codec, Codec::V5(_)) && connect_has_will_flags_without_will(&packet) {
            return Err(DecodeError::InvalidConnectFlags);
        }
        // And it lets U+0000 through in UTF-8 strings, which makes a packet malformed
        // [MQTT-1.5.3-2] [MQTT-1.5.4-2]. (A PUBLISH's topic name is checked as it becomes a
        // `Topic`.)
        let decoded = match &mut self.codec {
            Codec::V3(c) => match c.decode(&mut packet)? {
                Some((p, _)) if v3_has_nul(&p) => return Err(DecodeError::Utf8Error),
                other => other.map(|(p, _)| from_v3(p)),
            },
            Codec::V5(c) => match c.decode(&mut packet)? {
                Some((p, _)) if v5_has_nul(&p) => return Err(DecodeError::Utf8Error),
                other => other.map(|(p, _)| from_v5(p)),
            },
        };
        let decoded = match decoded {
            Some(Inbound::Connect(mut c)) if clean_start_was_0 => {
                c.clean_start = false;
                Some(Inbound::Connect(c))
            }
            other => other,
        };
        // `frame` handed over exactly one whole packet, so the codec must have produced it and
        // consumed every byte; anything else means the lengths inside disagree.
        match decoded {
            Some(p) if packet.is_empty() => Ok(p),
            _ => Err(DecodeError::InvalidLength),
        }
    }

    fn put_v3(&mut self, p: v3::Packet, out: &mut Output) -> bool {
        let Codec::V3(c) = &mut self.codec else { return false };
        let start = out.len();
        finish(start, c.encode(p, out.buf()), out)
    }

    /// Writes an MQTT 5 packet other than PUBLISH; if it exceeds the client's Maximum Packet
    /// Size, it is written again without its Reason String.
    fn put_v5(&mut self, p: v5::Packet, out: &mut Output) -> bool {
        let client_max = self.client_max;
        let Codec::V5(c) = &mut self.codec else { return false };
        let start = out.len();
        let fallback = strip_reason(&p);
        let r = c.encode(p, out.buf());
        if let (Ok(()), Some(max), Some(plain)) = (&r, client_max, fallback) {
            if out.buf().len() - start > max.get() as usize {
                out.buf().truncate(start);
                return finish(start, c.encode(plain, out.buf()), out);
            }
        }
        finish(start, r, out)
    }

    /// CONNACK for MQTT 3.x.
    pub(crate) fn connack_v3(&mut self, code: u8, session_present: bool, out: &mut Output) {
        let return_code = v3::ConnectAckReason::try_from(code).unwrap_or(v3::ConnectAckReason::ServiceUnavailable);
        // Session Present is 0 whenever the return code is not 0 [MQTT-3.2.2-4].
        let session_present = session_present && code == 0;
        self.put_v3(v3::Packet::ConnectAck(v3::ConnectAck { return_code, session_present }), out);
    }

    /// CONNACK for MQTT 5.
    pub(crate) fn connack_v5(&mut self, ack: v5::ConnectAck, out: &mut Output) {
        self.put_v5(v5::Packet::ConnectAck(Box::new(ack)), out);
    }

    /// PUBLISH. Returns whether it was written: an MQTT 5 packet larger than the client's
    /// Maximum Packet Size is discarded [MQTT-3.1.2-25].
    pub(crate) fn publish(&mut self, p: Publish, out: &mut Output) -> bool {
        let client_max = self.client_max;
        let Codec::V5(c) = &mut self.codec else {
            return self.put_v3(v3::Packet::Publish(Box::new(p)), out);
        };
        let start = out.len();
        match c.encode(v5::Packet::Publish(Box::new(p)), out.buf()) {
            Ok(()) if client_max.is_some_and(|max| out.buf().len() - start > max.get() as usize) => {
                out.buf().truncate(start);
                false
            }
            r => finish(start, r, out),
        }
    }

    /// A QoS 0 PUBLISH of `msg` with no per-subscriber property, from the encoding that every
    /// subscriber of this protocol version shares ([`diglot_core::Encodings`]): encoded once
    /// per message, then copied into `out`, where RETAIN is set if asked (bit 0 of the fixed
    /// header, §3.3.1.3), so that one encoding serves both values. Returns whether it was
    /// written, as [`Wire::publish`] does.
    pub(crate) fn publish_shared(&mut self, msg: &Message, retain: bool, out: &mut Output) -> bool {
        let slot = match self.version {
            Version::V5 => WireSlot::Mqtt5Qos0,
            Version::V31 | Version::V311 => WireSlot::Mqtt3Qos0,
        };
        let codec = &mut self.codec;
        let bytes = msg.encoded.get_or_encode(slot, || {
            let properties = matches!(codec, Codec::V5(_)).then(|| crate::props::to_publish(msg.props.as_deref()));
            let p = Publish {
                dup: false,
                retain: false,
                qos: WireQos::AtMostOnce,
                topic: ByteString::from(msg.topic.as_str()),
                packet_id: None,
                payload: msg.payload.clone(),
                properties,
            };
            let mut buf = BytesMut::new();
            let r = match codec {
                Codec::V3(c) => c.encode(v3::Packet::Publish(Box::new(p)), &mut buf),
                Codec::V5(c) => c.encode(v5::Packet::Publish(Box::new(p)), &mut buf),
            };
            if let Err(e) = r {
                // Only a bug makes encoding fail; empty bytes make every delivery skip it.
                tracing::warn!(error = %e, "cannot encode MQTT packet");
                buf.clear();
            }
            buf.freeze()
        });
        if bytes.is_empty() || self.client_max.is_some_and(|max| bytes.len() > max.get() as usize) {
            return false;
        }
        let start = out.len();
        out.buf().extend_from_slice(bytes);
        if retain {
            out.buf()[start] |= 0x01;
        }
        out.end_frame();
        true
    }

    /// PUBACK (`code` and `reason` are MQTT 5's; 3.x has neither).
    pub(crate) fn puback(&mut self, packet_id: NonZeroU16, code: u8, reason: Option<&str>, out: &mut Output) {
        match self.version {
            Version::V5 => self.put_v5(v5::Packet::PublishAck(ack(packet_id, code, reason)), out),
            _ => self.put_v3(v3::Packet::PublishAck { packet_id }, out),
        };
    }

    /// PUBREC.
    pub(crate) fn pubrec(&mut self, packet_id: NonZeroU16, code: u8, reason: Option<&str>, out: &mut Output) {
        match self.version {
            Version::V5 => self.put_v5(v5::Packet::PublishReceived(ack(packet_id, code, reason)), out),
            _ => self.put_v3(v3::Packet::PublishReceived { packet_id }, out),
        };
    }

    /// PUBREL.
    pub(crate) fn pubrel(&mut self, packet_id: NonZeroU16, code: u8, out: &mut Output) {
        match self.version {
            Version::V5 => self.put_v5(v5::Packet::PublishRelease(ack2(packet_id, code)), out),
            _ => self.put_v3(v3::Packet::PublishRelease { packet_id }, out),
        };
    }

    /// PUBCOMP.
    pub(crate) fn pubcomp(&mut self, packet_id: NonZeroU16, code: u8, out: &mut Output) {
        match self.version {
            Version::V5 => self.put_v5(v5::Packet::PublishComplete(ack2(packet_id, code)), out),
            _ => self.put_v3(v3::Packet::PublishComplete { packet_id }, out),
        };
    }

    /// SUBACK with one code per filter: a granted QoS (0..=2) or a failure code (≥ 0x80).
    pub(crate) fn suback(&mut self, packet_id: NonZeroU16, codes: &[u8], reason: Option<&str>, out: &mut Output) {
        match self.version {
            Version::V5 => {
                let status = codes
                    .iter()
                    .map(|&c| v5::SubscribeAckReason::try_from(c).unwrap_or(v5::SubscribeAckReason::UnspecifiedError))
                    .collect();
                let reason_string = reason.map(reason_string);
                let ack = v5::SubscribeAck { packet_id, properties: Vec::new(), reason_string, status };
                self.put_v5(v5::Packet::SubscribeAck(ack), out)
            }
            _ => {
                let status = codes
                    .iter()
                    .map(|&c| match v3::QoS::try_from(c) {
                        Ok(q) => v3::SubscribeReturnCode::Success(q),
                        Err(_) => v3::SubscribeReturnCode::Failure,
                    })
                    .collect();
                self.put_v3(v3::Packet::SubscribeAck { packet_id, status }, out)
            }
        };
    }

    /// UNSUBACK (MQTT 5 carries one reason code per filter; 3.x none).
    pub(crate) fn unsuback(&mut self, packet_id: NonZeroU16, codes: &[u8], out: &mut Output) {
        match self.version {
            Version::V5 => {
                let status = codes
                    .iter()
                    .map(|&c| {
                        v5::UnsubscribeAckReason::try_from(c).unwrap_or(v5::UnsubscribeAckReason::UnspecifiedError)
                    })
                    .collect();
                let ack = v5::UnsubscribeAck { packet_id, properties: Vec::new(), reason_string: None, status };
                self.put_v5(v5::Packet::UnsubscribeAck(ack), out)
            }
            _ => self.put_v3(v3::Packet::UnsubscribeAck { packet_id }, out),
        };
    }

    /// PINGRESP.
    pub(crate) fn pingresp(&mut self, out: &mut Output) {
        match self.version {
            Version::V5 => self.put_v5(v5::Packet::PingResponse, out),
            _ => self.put_v3(v3::Packet::PingResponse, out),
        };
    }

    /// An MQTT 5 AUTH from the server with `code` and Authentication Method `method`
    /// (3.x has none; nothing is written there).
    pub(crate) fn auth(&mut self, code: u8, method: &str, out: &mut Output) {
        let Ok(reason_code) = v5::AuthReasonCode::try_from(code) else { return };
        let a = v5::Auth { reason_code, auth_method: Some(ByteString::from(method)), ..v5::Auth::default() };
        self.put_v5(v5::Packet::Auth(a), out);
    }

    /// An MQTT 5 DISCONNECT from the server (3.x has none; nothing is written there), with
    /// an optional Reason String.
    pub(crate) fn disconnect(&mut self, code: u8, reason: Option<&str>, out: &mut Output) {
        let reason_code =
            v5::DisconnectReasonCode::try_from(code).unwrap_or(v5::DisconnectReasonCode::UnspecifiedError);
        let d = v5::Disconnect { reason_string: reason.map(reason_string), ..v5::Disconnect::new(reason_code) };
        self.put_v5(v5::Packet::Disconnect(d), out);
    }
}

/// The packet without its Reason String, if it has one.
fn strip_reason(p: &v5::Packet) -> Option<v5::Packet> {
    let mut p = p.clone();
    let had = match &mut p {
        v5::Packet::ConnectAck(a) => a.reason_string.take().is_some(),
        v5::Packet::PublishAck(a) | v5::Packet::PublishReceived(a) => a.reason_string.take().is_some(),
        v5::Packet::SubscribeAck(a) => a.reason_string.take().is_some(),
        v5::Packet::UnsubscribeAck(a) => a.reason_string.take().is_some(),
        v5::Packet::Disconnect(d) => d.reason_string.take().is_some(),
        _ => false,
    };
    had.then_some(p)
}

/// Whether an MQTT 5 PUBLISH packet (fixed header included) that the codec refused carries a
/// Topic Alias of 0, which is "Topic Alias invalid" rather than a malformed packet
/// [MQTT-3.3.2-8] (§3.3.2.3.4).
pub(crate) fn publish_has_alias_zero(packet: &[u8]) -> bool {
    fn scan(packet: &[u8]) -> Option<bool> {
        let (&first, rest) = packet.split_first()?;
        if first >> 4 != 3 {
            return None;
        }
        let (_, n) = varint(rest)?;
        let mut b = rest.get(n..)?;
        let topic_len = usize::from(u16::from_be_bytes([*b.first()?, *b.get(1)?]));
        b = b.get(2 + topic_len..)?;
        if (first >> 1) & 0b11 != 0 {
            b = b.get(2..)?;
        }
        let (len, n) = varint(b)?;
        let mut props = b.get(n..n + len)?;
        while let Some((&id, rest)) = props.split_first() {
            let skip = match id {
                0x01 => 1,
                0x02 => 4,
                0x23 => {
                    if rest.get(..2)? == [0, 0] {
                        return Some(true);
                    }
                    2
                }
                0x03 | 0x08 | 0x09 => 2 + usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?])),
                0x0B => varint(rest)?.1,
                0x26 => {
                    let k = 2 + usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
                    let v = rest.get(k..)?;
                    k + 2 + usize::from(u16::from_be_bytes([*v.first()?, *v.get(1)?]))
                }
                _ => return None,
            };
            props = rest.get(skip..)?;
        }
        Some(false)
    }
    scan(packet).unwrap_or(false)
}

/// Whether the complete packet `packet` is an MQTT 3.1.1 SUBSCRIBE with a reserved bit set in
/// the Requested QoS byte of one of its filters (§3.8.3.1: the upper six bits).
fn v3_subscribe_has_reserved_bits(packet: &[u8]) -> bool {
    fn scan(packet: &[u8]) -> Option<bool> {
        let (&first, rest) = packet.split_first()?;
        if first >> 4 != 8 {
            return None;
        }
        let (_, n) = varint(rest)?;
        // After the Packet Identifier: (length, filter, options) until the end.
        let mut b = rest.get(n + 2..)?;
        while !b.is_empty() {
            let len = usize::from(u16::from_be_bytes([*b.first()?, *b.get(1)?]));
            let options = *b.get(2 + len)?;
            if options & 0b1111_1100 != 0 {
                return Some(true);
            }
            b = b.get(3 + len..)?;
        }
        Some(false)
    }
    // A packet that does not scan is left to the codec, which refuses it.
    scan(packet).unwrap_or(false)
}

/// Whether the complete packet `packet` has a Remaining Length other than its type's only one:
/// PINGREQ and DISCONNECT have no variable header or payload, and in 3.x the PUBACK, PUBREC,
/// PUBREL and PUBCOMP are a Packet Identifier alone (§3.4–§3.7, §3.12, §3.14). (MQTT 5
/// DISCONNECT and acknowledgements may carry a reason code and properties.)
fn has_wrong_fixed_length(version: Version, packet: &[u8]) -> bool {
    let Some((&first, rest)) = packet.split_first() else { return false };
    // The type first: a PUBLISH, the usual packet, costs one comparison.
    let want = match first >> 4 {
        12 => 0,
        14 if !version.is_v5() => 0,
        4..=7 if !version.is_v5() => 2,
        _ => return false,
    };
    varint(rest).is_some_and(|(len, _)| len != want)
}

/// Whether the complete packet `packet` is a CONNECT of protocol name `MQTT` whose Connect
/// Flags have the Will Flag clear and Will QoS or Will Retain set.
fn connect_has_will_flags_without_will(packet: &[u8]) -> bool {
    const WILL: u8 = 0b0000_0100;
    const WILL_QOS_RETAIN: u8 = 0b0011_1000;
    if packet.first() != Some(&CONNECT_BYTE) {
        return false;
    }
    let Some((_, n)) = packet.get(1..).and_then(varint) else { return false };
    let body = 1 + n;
    if packet.get(body..body + 6) != Some(b"\x00\x04MQTT".as_slice()) {
        return false;
    }
    packet.get(body + 7).is_some_and(|&flags| flags & WILL == 0 && flags & WILL_QOS_RETAIN != 0)
}

/// Whether `s` holds U+0000, which no MQTT UTF-8 string may [MQTT-1.5.3-2] [MQTT-1.5.4-2].
fn nul(s: &str) -> bool {
    s.as_bytes().contains(&0)
}

fn nul_in_opt(s: &Option<ByteString>) -> bool {
    s.as_deref().is_some_and(nul)
}

fn nul_in_props(props: &v5::UserProperties) -> bool {
    props.iter().any(|(k, v)| nul(k) || nul(v))
}

/// Whether a decoded MQTT 3.x packet from a client holds U+0000 in a UTF-8 string other than a
/// PUBLISH's topic name.
fn v3_has_nul(p: &v3::Packet) -> bool {
    use v3::Packet as P;
    match p {
        P::Connect(c) => {
            nul(&c.client_id) || nul_in_opt(&c.username) || c.last_will.as_ref().is_some_and(|w| nul(&w.topic))
        }
        P::Subscribe { topic_filters, .. } => topic_filters.iter().any(|(f, _)| nul(f)),
        P::Unsubscribe { topic_filters, .. } => topic_filters.iter().any(|f| nul(f)),
        _ => false,
    }
}

/// Whether a decoded MQTT 5 packet from a client holds U+0000 in a UTF-8 string (or string
/// pair) other than a PUBLISH's topic name.
fn v5_has_nul(p: &v5::Packet) -> bool {
    use v5::Packet as P;
    match p {
        P::Connect(c) => {
            nul(&c.client_id)
                || nul_in_opt(&c.username)
                || nul_in_opt(&c.auth_method)
                || nul_in_props(&c.user_properties)
                || c.last_will.as_ref().is_some_and(|w| {
                    nul(&w.topic)
                        || nul_in_opt(&w.content_type)
                        || nul_in_opt(&w.response_topic)
                        || nul_in_props(&w.user_properties)
                })
        }
        P::Publish(p) => p.properties.as_ref().is_some_and(|pp| {
            nul_in_opt(&pp.content_type) || nul_in_opt(&pp.response_topic) || nul_in_props(&pp.user_properties)
        }),
        P::PublishAck(a) | P::PublishReceived(a) => nul_in_opt(&a.reason_string) || nul_in_props(&a.properties),
        P::PublishRelease(a) | P::PublishComplete(a) => nul_in_opt(&a.reason_string) || nul_in_props(&a.properties),
        P::Subscribe(s) => s.topic_filters.iter().any(|(f, _)| nul(f)) || nul_in_props(&s.user_properties),
        P::Unsubscribe(u) => u.topic_filters.iter().any(|f| nul(f)) || nul_in_props(&u.user_properties),
        P::Disconnect(d) => {
            nul_in_opt(&d.reason_string) || nul_in_opt(&d.server_reference) || nul_in_props(&d.user_properties)
        }
        P::Auth(a) => nul_in_opt(&a.auth_method) || nul_in_opt(&a.reason_string) || nul_in_props(&a.user_properties),
        _ => false,
    }
}

/// If the complete packet `packet` is a CONNECT of protocol name `MQTT` whose Connect Flags
/// (§3.1.2.3) have Clean Start 0, sets that flag and returns true; otherwise leaves the packet
/// as it is and returns false.
fn set_clean_start_of_connect(packet: &mut [u8]) -> bool {
    const CLEAN_START: u8 = 0b0000_0010;
    if packet.first() != Some(&CONNECT_BYTE) {
        return false;
    }
    let Some(len_bytes) = packet.iter().skip(1).take(4).position(|b| b & 0x80 == 0) else {
        return false;
    };
    // The type byte, the Remaining Length, the name `MQTT` with its length, the level.
    let body = 2 + len_bytes;
    if packet.get(body..body + 6) != Some(b"\x00\x04MQTT".as_slice()) {
        return false;
    }
    match packet.get_mut(body + 7) {
        Some(flags) if *flags & CLEAN_START == 0 => {
            *flags |= CLEAN_START;
            true
        }
        _ => false,
    }
}

/// A Variable Byte Integer and the number of bytes it took.
fn varint(b: &[u8]) -> Option<(usize, usize)> {
    let mut v = 0usize;
    for (i, &byte) in b.iter().take(4).enumerate() {
        v |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// CONNACK with return code 0x01 (unacceptable protocol version) in the 3.1.1 format, for a
/// client whose level Diglot does not speak [MQTT-3.1.2-2].
pub(crate) fn connack_unsupported_level(out: &mut Output) {
    let mut wire = Wire::new(Version::V311);
    wire.connack_v3(0x01, false, out);
}

fn ack(packet_id: NonZeroU16, code: u8, reason: Option<&str>) -> v5::PublishAck {
    v5::PublishAck {
        packet_id,
        reason_code: v5::PublishAckReason::try_from(code).unwrap_or(v5::PublishAckReason::UnspecifiedError),
        properties: Vec::new(),
        reason_string: reason.map(reason_string),
    }
}

fn ack2(packet_id: NonZeroU16, code: u8) -> v5::PublishAck2 {
    v5::PublishAck2 {
        packet_id,
        reason_code: v5::PublishAck2Reason::try_from(code).unwrap_or(v5::PublishAck2Reason::PacketIdNotFound),
        properties: Vec::new(),
        reason_string: None,
    }
}

/// Ends the frame just encoded, or drops what an encoder error left half-written. Encoding
/// server packets fails only on a bug, so it is logged rather than surfaced.
fn finish<E: std::fmt::Display>(start: usize, r: Result<(), E>, out: &mut Output) -> bool {
    match r {
        Ok(()) => {
            out.end_frame();
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode MQTT packet");
            out.buf().truncate(start);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_by_remaining_length() {
        assert_eq!(frame(&[], 100), Frame::Incomplete);
        assert_eq!(frame(&[0xc0], 100), Frame::Incomplete);
        assert_eq!(frame(&[0xc0, 0x00], 100), Frame::Packet(2));
        assert_eq!(frame(&[0x30, 0x03, 0, 1], 100), Frame::Incomplete);
        assert_eq!(frame(&[0x30, 0x03, 0, 1, b'a', 0xff], 100), Frame::Packet(5));
        // 200 = 0xc8 0x01: two length bytes; the limit is checked before the body arrives.
        assert_eq!(frame(&[0x30, 0xc8, 0x01], 100), Frame::TooLarge(203));
        assert_eq!(frame(&[0x30, 0xc8], 100), Frame::Incomplete);
        assert_eq!(frame(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], usize::MAX), Frame::Malformed);
    }

    #[test]
    fn detects_levels() {
        let c = |name: &[u8], level: u8| {
            let mut v = vec![0x10, 0];
            v.extend_from_slice(&(name.len() as u16).to_be_bytes());
            v.extend_from_slice(name);
            v.push(level);
            v[1] = (v.len() - 2) as u8;
            detect(&v)
        };
        assert_eq!(c(b"MQTT", 4), Detect::Supported(Version::V311));
        assert_eq!(c(b"MQTT", 5), Detect::Supported(Version::V5));
        assert_eq!(c(b"MQIsdp", 3), Detect::Supported(Version::V31));
        assert_eq!(c(b"MQTT", 3), Detect::UnsupportedLevel);
        assert_eq!(c(b"MQTT", 6), Detect::UnsupportedLevel);
        assert_eq!(c(b"MQIsdp", 4), Detect::UnsupportedLevel);
        assert_eq!(c(b"MQTX", 4), Detect::BadName);
        assert_eq!(c(b"", 4), Detect::BadName);
        assert_eq!(detect(&[0x10]), Detect::BadName);
    }

    #[test]
    fn finds_a_zero_topic_alias() {
        let enc = |qos: u8, props: &[u8]| {
            let mut body = vec![0, 1, b't'];
            if qos > 0 {
                body.extend_from_slice(&[0, 1]);
            }
            body.push(props.len() as u8);
            body.extend_from_slice(props);
            body.extend_from_slice(b"payload");
            let mut v = vec![0x30 | qos << 1, body.len() as u8];
            v.extend(body);
            v
        };
        assert!(publish_has_alias_zero(&enc(0, &[0x23, 0, 0])));
        assert!(publish_has_alias_zero(&enc(1, &[0x01, 1, 0x02, 0, 0, 0, 9, 0x03, 0, 1, b'x', 0x23, 0, 0])));
        assert!(publish_has_alias_zero(&enc(0, &[0x26, 0, 1, b'k', 0, 1, b'v', 0x0B, 0x81, 0x01, 0x23, 0, 0])));
        assert!(!publish_has_alias_zero(&enc(0, &[0x23, 0, 1])));
        assert!(!publish_has_alias_zero(&enc(0, &[0x23, 0])));
        assert!(!publish_has_alias_zero(&enc(0, &[0x7f, 0, 0])));
        assert!(!publish_has_alias_zero(&[0x82, 0x03, 0x23, 0, 0]));
        assert!(!publish_has_alias_zero(&[]));
    }

    #[test]
    fn reason_strings_are_cut_at_a_char_boundary() {
        assert_eq!(&reason_string("short")[..], "short");
        let long = "é".repeat(100);
        let r = reason_string(&long);
        assert!(r.len() <= MAX_REASON_BYTES && r.len() >= MAX_REASON_BYTES - 1);
    }

    #[test]
    fn remaining_lengths_are_minimal_only_in_their_shortest_form() {
        assert!(minimal_length(&[0x30, 0x00]));
        assert!(minimal_length(&[0x30, 0x02, 0x00, 0x00]));
        // 0 written in two bytes: a valid length, but not how the broker writes it.
        assert!(!minimal_length(&[0x30, 0x80, 0x00]));
        let mut two = vec![0x30, 0x80, 0x01];
        two.resize(3 + 128, 0);
        assert!(minimal_length(&two));
        let mut padded = vec![0x30, 0xff, 0x80, 0x00];
        padded.resize(4 + 127, 0);
        assert!(!minimal_length(&padded));
    }

    #[test]
    fn sets_clean_start_of_a_connect_only() {
        // CONNECT, Remaining Length, "MQTT", level 5, flags: Clean Start 0, then 1.
        let mut p = [0x10, 10, 0, 4, b'M', b'Q', b'T', b'T', 5, 0b0000_0100, 0, 0];
        assert!(set_clean_start_of_connect(&mut p));
        assert_eq!(p[9], 0b0000_0110);
        assert!(!set_clean_start_of_connect(&mut p), "already set");
        // Not a CONNECT, another protocol name, cut short: untouched, no panic.
        let mut publish = [0x30, 10, 0, 4, b'M', b'Q', b'T', b'T', 5, 0, 0, 0];
        assert!(!set_clean_start_of_connect(&mut publish));
        let mut mqisdp = [0x10, 12, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 0];
        assert!(!set_clean_start_of_connect(&mut mqisdp));
        for len in 0..10 {
            let mut short = [0x10, 10, 0, 4, b'M', b'Q', b'T', b'T', 5, 0][..len].to_vec();
            assert!(!set_clean_start_of_connect(&mut short));
        }
        assert!(!set_clean_start_of_connect(&mut [0x10, 0xff, 0xff, 0xff, 0xff, 0xff]));
    }
}
