//! The binary encoding of a stored message (the values of the `messages` and `retained`
//! partitions).
//!
//! Format version 1, all integers big-endian, every length a `u32`:
//!
//! ```text
//! u8  version (= 1)
//! u8  flags: bit 0 retain, bit 1 has expiry, bit 2 has props, bit 3 retained copy (a
//!           retained message queued for a new subscription); other bits must be 0
//! u8  qos (0..=2)
//! u64 published, unix millis
//! u64 expires, unix millis                      (only if "has expiry")
//! u32 len + topic (UTF-8, a valid topic name)
//! props                                         (only if "has props"):
//!     u8 flags: bit 0 content type, bit 1 response topic, bit 2 correlation data,
//!               bit 3 UTF-8 payload; other bits must be 0
//!     u32 len + content type (UTF-8)            (if bit 0)
//!     u32 len + response topic (UTF-8)          (if bit 1)
//!     u32 len + correlation data                (if bit 2)
//!     u32 count, then count × (u32 len + key, u32 len + value), UTF-8 user properties
//! u32 len + payload
//! (nothing after the payload)
//! ```
//!
//! Decoding checks every length against the bytes left, every string for UTF-8, the topic
//! for validity, and refuses unknown versions, unknown flag bits and trailing bytes: a corrupt
//! record is an error, never a panic. This module does not know where records are stored.

use bytes::Bytes;
use diglot_core::{Message, Props, Qos, Topic, TopicError};

/// The version byte that [`StoredMessage::encode`] writes.
pub const MESSAGE_FORMAT: u8 = 1;

const F_RETAIN: u8 = 1;
const F_EXPIRY: u8 = 2;
const F_PROPS: u8 = 4;
const F_RETAINED_COPY: u8 = 8;
const P_CONTENT_TYPE: u8 = 1;
const P_RESPONSE_TOPIC: u8 = 2;
const P_CORRELATION: u8 = 4;
const P_UTF8: u8 = 8;

/// A message as the store keeps it: what a subscriber needs to receive it after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The canonical topic.
    pub topic: Topic,
    /// The body.
    pub payload: Bytes,
    /// The QoS it was published with.
    pub qos: Qos,
    /// The MQTT retain flag.
    pub retain: bool,
    /// Optional cross-protocol properties.
    pub props: Option<Box<Props>>,
    /// When it was published, in unix milliseconds.
    pub published_ms: u64,
    /// When it expires, in unix milliseconds (MQTT 5 message expiry, STOMP `expires`).
    pub expires_ms: Option<u64>,
    /// A retained message's copy queued for a new subscription ([`Message::retained_copy`]).
    pub retained_copy: bool,
}

/// Why a record could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The record is empty.
    #[error("empty record")]
    Empty,
    /// The version byte is not one this build reads.
    #[error("unknown message format version {0}")]
    UnknownVersion(u8),
    /// A length or field runs past the end of the record.
    #[error("record is truncated")]
    Truncated,
    /// Bytes follow the payload.
    #[error("{0} unexpected bytes after the payload")]
    Trailing(usize),
    /// A flag byte has bits this version does not define.
    #[error("unknown flag bits {0:#04x}")]
    BadFlags(u8),
    /// The QoS byte is not 0, 1 or 2.
    #[error("invalid qos {0}")]
    BadQos(u8),
    /// A string is not UTF-8.
    #[error("a string is not valid UTF-8")]
    BadUtf8,
    /// The topic is not a valid topic name.
    #[error("invalid topic: {0}")]
    BadTopic(#[from] TopicError),
    /// A field is longer than a `u32` length can say.
    #[error("a field is longer than 4 GiB")]
    TooLarge,
}

impl StoredMessage {
    /// The storable part of a broker message, published at `published_ms` and expiring at
    /// `expires_ms`.
    pub fn from_message(msg: &Message, published_ms: u64, expires_ms: Option<u64>) -> Self {
        StoredMessage {
            topic: msg.topic.clone(),
            payload: msg.payload.clone(),
            qos: msg.qos,
            retain: msg.retain,
            props: msg.props.clone(),
            published_ms,
            expires_ms,
            retained_copy: msg.retained_copy,
        }
    }

    /// A broker message with id `id`, received now, from no connection.
    pub fn to_message(&self, id: u64) -> Message {
        let mut m = Message::new(self.topic.clone(), self.payload.clone(), self.qos, self.retain);
        m.id = id;
        m.props = self.props.clone();
        m.retained_copy = self.retained_copy;
        m
    }

    /// Whether the message's own expiry has passed at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_ms.is_some_and(|e| e <= now_ms)
    }

    /// The encoded record.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(32 + self.topic.as_str().len() + self.payload.len());
        let mut flags = 0;
        if self.retain {
            flags |= F_RETAIN;
        }
        if self.expires_ms.is_some() {
            flags |= F_EXPIRY;
        }
        if self.props.is_some() {
            flags |= F_PROPS;
        }
        if self.retained_copy {
            flags |= F_RETAINED_COPY;
        }
        out.push(MESSAGE_FORMAT);
        out.push(flags);
        out.push(self.qos as u8);
        out.extend_from_slice(&self.published_ms.to_be_bytes());
        if let Some(e) = self.expires_ms {
            out.extend_from_slice(&e.to_be_bytes());
        }
        put_bytes(&mut out, self.topic.as_str().as_bytes())?;
        if let Some(p) = &self.props {
            encode_props(&mut out, p)?;
        }
        put_bytes(&mut out, &self.payload)?;
        Ok(out)
    }

    /// Decodes a record written by [`StoredMessage::encode`].
    pub fn decode(buf: &[u8]) -> Result<StoredMessage, CodecError> {
        let mut r = Reader { buf };
        let version = r.u8().map_err(|_| CodecError::Empty)?;
        if version != MESSAGE_FORMAT {
            return Err(CodecError::UnknownVersion(version));
        }
        let flags = r.u8()?;
        if flags & !(F_RETAIN | F_EXPIRY | F_PROPS | F_RETAINED_COPY) != 0 {
            return Err(CodecError::BadFlags(flags));
        }
        let qos_byte = r.u8()?;
        let qos = Qos::from_u8(qos_byte).ok_or(CodecError::BadQos(qos_byte))?;
        let published_ms = r.u64()?;
        let expires_ms = if flags & F_EXPIRY != 0 { Some(r.u64()?) } else { None };
        let topic = Topic::new(&r.string()?)?;
        let props = if flags & F_PROPS != 0 { Some(Box::new(decode_props(&mut r)?)) } else { None };
        let payload = Bytes::copy_from_slice(r.bytes()?);
        if !r.buf.is_empty() {
            return Err(CodecError::Trailing(r.buf.len()));
        }
        Ok(StoredMessage {
            topic,
            payload,
            qos,
            retain: flags & F_RETAIN != 0,
            props,
            published_ms,
            expires_ms,
            retained_copy: flags & F_RETAINED_COPY != 0,
        })
    }
}

fn encode_props(out: &mut Vec<u8>, p: &Props) -> Result<(), CodecError> {
    let mut flags = 0;
    if p.content_type.is_some() {
        flags |= P_CONTENT_TYPE;
    }
    if p.response_topic.is_some() {
        flags |= P_RESPONSE_TOPIC;
    }
    if p.correlation_data.is_some() {
        flags |= P_CORRELATION;
    }
    if p.utf8_payload {
        flags |= P_UTF8;
    }
    out.push(flags);
    if let Some(ct) = &p.content_type {
        put_bytes(out, ct.as_bytes())?;
    }
    if let Some(rt) = &p.response_topic {
        put_bytes(out, rt.as_bytes())?;
    }
    if let Some(cd) = &p.correlation_data {
        put_bytes(out, cd)?;
    }
    out.extend_from_slice(&len32(p.user.len())?.to_be_bytes());
    for (k, v) in &p.user {
        put_bytes(out, k.as_bytes())?;
        put_bytes(out, v.as_bytes())?;
    }
    Ok(())
}

fn decode_props(r: &mut Reader<'_>) -> Result<Props, CodecError> {
    let flags = r.u8()?;
    if flags & !(P_CONTENT_TYPE | P_RESPONSE_TOPIC | P_CORRELATION | P_UTF8) != 0 {
        return Err(CodecError::BadFlags(flags));
    }
    let content_type = if flags & P_CONTENT_TYPE != 0 { Some(r.string()?) } else { None };
    let response_topic = if flags & P_RESPONSE_TOPIC != 0 { Some(r.string()?) } else { None };
    let correlation_data = if flags & P_CORRELATION != 0 { Some(Bytes::copy_from_slice(r.bytes()?)) } else { None };
    let count = r.u32()? as usize;
    // Each user property takes at least 8 bytes, so a count larger than that is corrupt; this
    // check also keeps a corrupt count from reserving a huge vector.
    if count > r.buf.len() / 8 {
        return Err(CodecError::Truncated);
    }
    let mut user = Vec::with_capacity(count);
    for _ in 0..count {
        let k = r.string()?;
        let v = r.string()?;
        user.push((k, v));
    }
    Ok(Props { content_type, response_topic, correlation_data, utf8_payload: flags & P_UTF8 != 0, user })
}

fn len32(n: usize) -> Result<u32, CodecError> {
    u32::try_from(n).map_err(|_| CodecError::TooLarge)
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) -> Result<(), CodecError> {
    out.extend_from_slice(&len32(b.len())?.to_be_bytes());
    out.extend_from_slice(b);
    Ok(())
}

/// A cursor over a record that fails with [`CodecError::Truncated`] instead of panicking.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.buf.len() < n {
            return Err(CodecError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn string(&mut self) -> Result<String, CodecError> {
        let b = self.bytes()?;
        std::str::from_utf8(b).map(str::to_owned).map_err(|_| CodecError::BadUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> StoredMessage {
        StoredMessage {
            topic: Topic::new("a/b").expect("valid"),
            payload: Bytes::from_static(b"hello"),
            qos: Qos::AtLeastOnce,
            retain: false,
            props: None,
            published_ms: 1_700_000_000_000,
            expires_ms: None,
            retained_copy: false,
        }
    }

    fn rich() -> StoredMessage {
        StoredMessage {
            topic: Topic::new("ü/x.y z").expect("valid"),
            payload: Bytes::from(vec![0u8, 255, 7]),
            qos: Qos::ExactlyOnce,
            retain: true,
            props: Some(Box::new(Props {
                content_type: Some("text/plain".into()),
                response_topic: Some("reply/1".into()),
                correlation_data: Some(Bytes::from_static(b"\x00corr")),
                utf8_payload: true,
                user: vec![("k".into(), "v".into()), ("k".into(), "".into())],
            })),
            published_ms: 42,
            expires_ms: Some(99),
            retained_copy: true,
        }
    }

    #[test]
    fn round_trips() {
        let empty_props = StoredMessage { props: Some(Box::default()), ..plain() };
        let empty_payload = StoredMessage { payload: Bytes::new(), ..plain() };
        for m in [plain(), rich(), empty_props, empty_payload] {
            let enc = m.encode().expect("encodes");
            assert_eq!(enc[0], MESSAGE_FORMAT);
            assert_eq!(StoredMessage::decode(&enc), Ok(m));
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        for m in [plain(), rich()] {
            let enc = m.encode().expect("encodes");
            for cut in 0..enc.len() {
                assert!(StoredMessage::decode(&enc[..cut]).is_err(), "cut at {cut}");
            }
        }
    }

    #[test]
    fn corrupt_records_are_errors() {
        let enc = rich().encode().expect("encodes");
        let mut v = enc.clone();
        v[0] = 9;
        assert_eq!(StoredMessage::decode(&v), Err(CodecError::UnknownVersion(9)));
        let mut v = enc.clone();
        v[1] |= 0x80;
        assert!(matches!(StoredMessage::decode(&v), Err(CodecError::BadFlags(_))));
        let mut v = enc.clone();
        v[2] = 3;
        assert_eq!(StoredMessage::decode(&v), Err(CodecError::BadQos(3)));
        let mut v = enc.clone();
        v.push(0);
        assert_eq!(StoredMessage::decode(&v), Err(CodecError::Trailing(1)));
        assert_eq!(StoredMessage::decode(&[]), Err(CodecError::Empty));

        // A topic length that points past the end.
        let mut v = plain().encode().expect("encodes");
        v[11..15].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(StoredMessage::decode(&v), Err(CodecError::Truncated));
        // A topic that is not valid UTF-8, and one that is not a topic name.
        let mut v = plain().encode().expect("encodes");
        v[15] = 0xff;
        assert_eq!(StoredMessage::decode(&v), Err(CodecError::BadUtf8));
        let mut v = plain().encode().expect("encodes");
        v[15] = b'+';
        assert!(matches!(StoredMessage::decode(&v), Err(CodecError::BadTopic(_))));

        // Flipping any single byte never panics.
        for i in 0..enc.len() {
            let mut v = enc.clone();
            v[i] ^= 0xa5;
            let _ = StoredMessage::decode(&v);
        }
    }
}
