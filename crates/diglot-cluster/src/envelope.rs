//! The versioned envelope of a message on the cluster's Redis channel (and in the retained
//! hash).
//!
//! Layout, all integers big-endian:
//! ```text
//! "DGM" version:u8(1, 2 or 3) flags:u8 qos:u8
//! origin:str32 topic:str32 expires_unix_ms:u64 (0: none)
//! [version 2 and 3] group_count:u32 (group_key:str32 node_id:str32)*
//! [version 3 only] confirm_id:u64
//! [props, if flags & PROPS] content_type:str32 response_topic:str32 correlation:bytes32
//!                           user_count:u32 (key:str32 value:str32)*
//! payload: the rest
//! ```
//! flags: 1 retain, 2 props present, 4 UTF-8 payload, 8 has content type, 16 has response
//! topic, 32 has correlation data, 64 the publisher assigns groups (set in every envelope a
//! node of this version writes). `str32` is a u32 length and UTF-8 bytes; `bytes32` a u32
//! length and bytes. Lengths are never cut: what a protocol carried crosses unchanged.
//!
//! Version 2 carries the publisher's [`Assignment`]: the node that serves each share group
//! and named queue the message matched. A node writes version 2 only for a message that has
//! one, and version 1 otherwise, so that a node that reads version 1 only (an older release
//! in a rolling upgrade) still takes every other message. Version 3 is version 2 with a
//! confirmation request: a QoS ≥ 1 message whose groups went to other nodes, which each
//! answer with a [`Confirm`] on `<prefix>:confirm:<origin>` once they stored it. An older
//! node rejects version 3 (and counts it); the publisher, unconfirmed, serves the groups
//! itself after `handoff_timeout_ms`. A version 1 envelope without flag
//! 64 comes from such an older node, which assigns nothing: the receiver serves every local
//! group, as that release did.
//!
//! Anyone who can publish on the channel can send anything: [`decode`] checks every length
//! and never panics. It is not an authentication mechanism; Redis ACLs are (see
//! docs/operations.md).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use diglot_core::cluster::Assignment;
use diglot_core::{Message, Props, Qos, Topic};

const MAGIC: &[u8; 3] = b"DGM";
/// The newest envelope version this node writes and reads (it reads 1 and 2 too).
pub const VERSION: u8 = 3;

/// The version of an envelope with an assignment and no confirmation request.
const ASSIGNED: u8 = 2;

/// The version of an envelope without an assignment.
const PLAIN: u8 = 1;

const RETAIN: u8 = 1;
const PROPS: u8 = 2;
const UTF8: u8 = 4;
const CONTENT_TYPE: u8 = 8;
const RESPONSE_TOPIC: u8 = 16;
const CORRELATION: u8 = 32;
const ASSIGNS: u8 = 64;

/// Most group entries read from one envelope (far above any real fan-out of groups).
const MAX_GROUPS: u32 = 4096;

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not a Diglot envelope.
    #[error("not a Diglot envelope")]
    Magic,
    /// A version this node does not read (a newer node in a mixed cluster).
    #[error("envelope version {0} is not supported")]
    Version(u8),
    /// Shorter than its lengths say.
    #[error("truncated envelope")]
    Truncated,
    /// A bad QoS, topic or string.
    #[error("invalid envelope: {0}")]
    Invalid(&'static str),
}

/// A decoded envelope: who published it and the message as the local router takes it.
#[derive(Debug)]
pub struct Envelope {
    /// The node the message was published on.
    pub origin: String,
    /// The message (id 0, no origin connection, stamped now).
    pub msg: Message,
    /// (group key, node id) for each group the publisher assigned; `None` from an older node
    /// that assigns nothing.
    pub groups: Option<Vec<(String, String)>>,
    /// The publisher's request id: the nodes assigned a group confirm under it.
    pub confirm: Option<u64>,
}

fn now_unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn put_str(out: &mut BytesMut, s: &str) {
    // Frames are far below 4 GiB (limits.max_frame_bytes), so a length always fits.
    out.put_u32(s.len() as u32);
    out.put_slice(s.as_bytes());
}

/// Encodes `msg`, published on node `origin`, with no group assignment (version 1).
pub fn encode(origin: &str, msg: &Message) -> Bytes {
    encode_assigned(origin, msg, None)
}

/// Encodes `msg` with the publisher's group assignment: version 2 if it assigns any group,
/// version 1 otherwise.
pub fn encode_assigned(origin: &str, msg: &Message, assignment: Option<&Assignment>) -> Bytes {
    encode_confirmed(origin, msg, assignment, None)
}

/// Encodes `msg` with the publisher's group assignment and, with `confirm`, a confirmation
/// request (version 3; only with some group assigned).
pub fn encode_confirmed(origin: &str, msg: &Message, assignment: Option<&Assignment>, confirm: Option<u64>) -> Bytes {
    let groups = assignment.map_or(&[][..], |a| a.groups.as_slice());
    let confirm = confirm.filter(|_| !groups.is_empty());
    let props = msg.props.as_deref();
    let mut out = BytesMut::with_capacity(40 + origin.len() + msg.topic.as_str().len() + msg.payload.len());
    out.put_slice(MAGIC);
    out.put_u8(match (groups.is_empty(), confirm) {
        (true, _) => PLAIN,
        (false, None) => ASSIGNED,
        (false, Some(_)) => VERSION,
    });
    let mut flags = ASSIGNS | if msg.retain { RETAIN } else { 0 };
    if let Some(p) = props {
        flags |= PROPS;
        flags |= if p.utf8_payload { UTF8 } else { 0 };
        flags |= if p.content_type.is_some() { CONTENT_TYPE } else { 0 };
        flags |= if p.response_topic.is_some() { RESPONSE_TOPIC } else { 0 };
        flags |= if p.correlation_data.is_some() { CORRELATION } else { 0 };
    }
    out.put_u8(flags);
    out.put_u8(msg.qos as u8);
    put_str(&mut out, origin);
    put_str(&mut out, msg.topic.as_str());
    let expires = msg.expires_unix_ms.or_else(|| {
        msg.expires_at.map(|at| now_unix_ms() + at.saturating_duration_since(Instant::now()).as_millis() as u64)
    });
    out.put_u64(expires.unwrap_or(0));
    if !groups.is_empty() {
        out.put_u32(groups.len() as u32);
        for g in groups {
            put_str(&mut out, &g.key);
            put_str(&mut out, &g.node);
        }
    }
    if let Some(id) = confirm {
        out.put_u64(id);
    }
    if let Some(p) = props {
        put_str(&mut out, p.content_type.as_deref().unwrap_or(""));
        put_str(&mut out, p.response_topic.as_deref().unwrap_or(""));
        let c = p.correlation_data.as_deref().unwrap_or(&[]);
        out.put_u32(c.len() as u32);
        out.put_slice(c);
        out.put_u32(p.user.len() as u32);
        for (k, v) in &p.user {
            put_str(&mut out, k);
            put_str(&mut out, v);
        }
    }
    out.put_slice(&msg.payload);
    out.freeze()
}

struct Reader(Bytes);

impl Reader {
    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.0.remaining() < n {
            return Err(DecodeError::Truncated);
        }
        Ok(())
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.0.get_u8())
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        Ok(self.0.get_u32())
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.need(8)?;
        Ok(self.0.get_u64())
    }

    fn bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        self.need(n)?;
        Ok(self.0.split_to(n))
    }

    fn str(&mut self) -> Result<String, DecodeError> {
        let n = self.u32()? as usize;
        let b = self.bytes(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Invalid("a string is not UTF-8"))
    }
}

/// Reads the origin node only, so that a node skips its own messages without decoding them.
pub fn origin(data: &[u8]) -> Option<&str> {
    if data.len() < 10 || &data[..3] != MAGIC || !(PLAIN..=VERSION).contains(&data[3]) {
        return None;
    }
    let n = u32::from_be_bytes([data[6], data[7], data[8], data[9]]) as usize;
    std::str::from_utf8(data.get(10..10usize.checked_add(n)?)?).ok()
}

/// Decodes an envelope; anything malformed is an error, never a panic.
pub fn decode(data: Bytes) -> Result<Envelope, DecodeError> {
    let mut r = Reader(data);
    if r.bytes(3).map_err(|_| DecodeError::Magic)?.as_ref() != MAGIC {
        return Err(DecodeError::Magic);
    }
    let version = r.u8()?;
    if !(PLAIN..=VERSION).contains(&version) {
        return Err(DecodeError::Version(version));
    }
    let flags = r.u8()?;
    let qos = Qos::from_u8(r.u8()?).ok_or(DecodeError::Invalid("QoS"))?;
    let origin = r.str()?;
    let topic = Topic::new(&r.str()?).map_err(|_| DecodeError::Invalid("topic"))?;
    let expires = r.u64()?;
    let groups = if version >= 2 {
        let count = r.u32()?;
        if count > MAX_GROUPS {
            return Err(DecodeError::Invalid("too many groups"));
        }
        let mut groups = Vec::with_capacity((count as usize).min(64));
        for _ in 0..count {
            groups.push((r.str()?, r.str()?));
        }
        Some(groups)
    } else {
        (flags & ASSIGNS != 0).then(Vec::new)
    };
    let confirm = if version >= 3 { Some(r.u64()?) } else { None };
    let props = if flags & PROPS != 0 {
        let content_type = r.str()?;
        let response_topic = r.str()?;
        let n = r.u32()? as usize;
        let correlation = r.bytes(n)?;
        let count = r.u32()?;
        // The count is untrusted: grow as entries really arrive.
        let mut user = Vec::with_capacity((count as usize).min(64));
        for _ in 0..count {
            user.push((r.str()?, r.str()?));
        }
        Some(Box::new(Props {
            content_type: (flags & CONTENT_TYPE != 0).then_some(content_type),
            response_topic: (flags & RESPONSE_TOPIC != 0).then_some(response_topic),
            correlation_data: (flags & CORRELATION != 0).then_some(correlation),
            utf8_payload: flags & UTF8 != 0,
            user,
        }))
    } else {
        None
    };
    let mut msg = Message::new(topic, r.0, qos, flags & RETAIN != 0);
    msg.props = props;
    if expires > 0 {
        msg.expires_unix_ms = Some(expires);
        msg.expires_at = Some(Instant::now() + Duration::from_millis(expires.saturating_sub(now_unix_ms())));
    }
    Ok(Envelope { origin, msg, groups, confirm })
}

const CONFIRM_MAGIC: &[u8; 3] = b"DGC";
const CONFIRM_VERSION: u8 = 1;

/// Longest node id a [`Confirm`] may carry.
const MAX_NODE_ID: usize = 1024;

/// A node's answer to a confirmation request, on `<prefix>:confirm:<origin>`:
/// `"DGC" version:u8(1) confirm_id:u64 node:str32`. It says that `node` stored what the
/// message matched there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    /// The request id from the envelope.
    pub id: u64,
    /// The node that stored it.
    pub node: String,
}

impl Confirm {
    /// Its bytes on the channel.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(16 + self.node.len());
        out.put_slice(CONFIRM_MAGIC);
        out.put_u8(CONFIRM_VERSION);
        out.put_u64(self.id);
        put_str(&mut out, &self.node);
        out.freeze()
    }

    /// Reads one; anything else (a wrong length, version, a huge node id) is an error.
    pub fn decode(data: Bytes) -> Result<Confirm, DecodeError> {
        let mut r = Reader(data);
        if r.bytes(3).map_err(|_| DecodeError::Magic)?.as_ref() != CONFIRM_MAGIC {
            return Err(DecodeError::Magic);
        }
        let version = r.u8()?;
        if version != CONFIRM_VERSION {
            return Err(DecodeError::Version(version));
        }
        let id = r.u64()?;
        let node = r.str()?;
        if node.len() > MAX_NODE_ID || r.0.has_remaining() {
            return Err(DecodeError::Invalid("confirmation"));
        }
        Ok(Confirm { id, node })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Message {
        let mut m = Message::new(Topic::new("a/b c/é").unwrap(), Bytes::from_static(b"hello"), Qos::AtLeastOnce, true);
        m.props = Some(Box::new(Props {
            content_type: Some("text/plain".into()),
            response_topic: None,
            correlation_data: Some(Bytes::from_static(b"\x00\x01")),
            utf8_payload: true,
            user: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
        }));
        m.expires_unix_ms = Some(now_unix_ms() + 60_000);
        m
    }

    #[test]
    fn round_trip() {
        let m = sample();
        let data = encode("node-1:8080", &m);
        assert_eq!(origin(&data), Some("node-1:8080"));
        let e = decode(data).unwrap();
        assert_eq!(e.origin, "node-1:8080");
        assert_eq!(e.msg.topic, m.topic);
        assert_eq!(e.msg.payload, m.payload);
        assert_eq!(e.msg.qos, Qos::AtLeastOnce);
        assert!(e.msg.retain);
        assert_eq!(e.msg.props, m.props);
        assert_eq!(e.msg.expires_unix_ms, m.expires_unix_ms);
        assert!(e.msg.expires_at.is_some());
        let mut long = Message::new(Topic::new("x").unwrap(), Bytes::new(), Qos::AtMostOnce, false);
        long.props = Some(Box::new(Props { user: vec![("big".into(), "é".repeat(40_000))], ..Props::default() }));
        assert_eq!(decode(encode("n", &long)).unwrap().msg.props, long.props, "nothing is cut at 64 KiB");
        let plain = Message::new(Topic::new("x").unwrap(), Bytes::new(), Qos::AtMostOnce, false);
        let e = decode(encode("n", &plain)).unwrap();
        assert!(e.msg.props.is_none() && e.msg.payload.is_empty() && e.msg.expires_at.is_none());
    }

    #[test]
    fn an_assignment_makes_a_version_2_envelope_that_carries_it() {
        use diglot_core::cluster::Assigned;
        let m = sample();
        let a = Assignment {
            groups: vec![
                Assigned { key: "$share/g/a/#".into(), node: "b:1".into(), here: false },
                Assigned { key: "$queue/q".into(), node: "n".into(), here: true },
            ],
        };
        let data = encode_assigned("n", &m, Some(&a));
        assert_eq!((data[3], origin(&data)), (2, Some("n")));
        let e = decode(data.clone()).unwrap();
        let want = vec![("$share/g/a/#".to_string(), "b:1".to_string()), ("$queue/q".to_string(), "n".to_string())];
        assert_eq!(e.groups, Some(want));
        assert_eq!((e.msg.payload, e.msg.props), (m.payload.clone(), m.props.clone()));
        for n in 0..data.len() - b"hello".len() {
            assert!(decode(data.slice(..n)).is_err(), "truncated at {n}");
        }
        assert_eq!(e.confirm, None);
        let asked = encode_confirmed("n", &m, Some(&a), Some(77));
        assert_eq!(asked[3], 3);
        let e = decode(asked.clone()).unwrap();
        assert_eq!((e.confirm, e.groups.map(|g| g.len())), (Some(77), Some(2)));
        assert_eq!(e.msg.payload, m.payload);
        for n in 0..asked.len() - b"hello".len() {
            assert!(decode(asked.slice(..n)).is_err(), "truncated at {n}");
        }
        assert_eq!(encode_confirmed("n", &m, None, Some(1))[3], 1, "nothing assigned: nothing to confirm");
        let plain = encode_assigned("n", &m, Some(&Assignment::default()));
        assert_eq!(plain[3], 1, "no group: version 1, readable by older nodes");
        assert_eq!(decode(plain).unwrap().groups, Some(vec![]));
        // What an older node wrote: version 1 without flag 64.
        let mut old = encode("n", &m).to_vec();
        old[4] &= !ASSIGNS;
        assert_eq!(decode(Bytes::from(old)).unwrap().groups, None);
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error_not_a_panic() {
        let data = encode("n", &sample());
        for n in 0..data.len() - b"hello".len() {
            assert!(decode(data.slice(..n)).is_err(), "truncated at {n}");
        }
        assert_eq!(decode(Bytes::from_static(b"hello world")).unwrap_err(), DecodeError::Magic);
        let mut v = data.to_vec();
        v[3] = 9;
        assert_eq!(decode(Bytes::from(v)).unwrap_err(), DecodeError::Version(9));
        let mut v = data.to_vec();
        v[5] = 3;
        assert_eq!(decode(Bytes::from(v)).unwrap_err(), DecodeError::Invalid("QoS"));
        // Every byte flipped in turn: errors or messages, never a panic.
        for i in 0..data.len() {
            let mut v = data.to_vec();
            v[i] ^= 0xff;
            let _ = decode(Bytes::from(v));
        }
        assert_eq!(origin(b"DGM"), None);
    }

    #[test]
    fn a_confirmation_round_trips_and_garbage_is_an_error() {
        let c = Confirm { id: u64::MAX - 1, node: "b:8080".into() };
        let data = c.encode();
        assert_eq!(Confirm::decode(data.clone()).unwrap(), c);
        for n in 0..data.len() {
            assert!(Confirm::decode(data.slice(..n)).is_err(), "truncated at {n}");
        }
        let mut longer = data.to_vec();
        longer.push(0);
        assert!(Confirm::decode(Bytes::from(longer)).is_err());
        let mut v = data.to_vec();
        v[3] = 2;
        assert_eq!(Confirm::decode(Bytes::from(v)).unwrap_err(), DecodeError::Version(2));
        assert!(Confirm::decode(encode("n", &sample())).is_err());
        for i in 0..data.len() {
            let mut v = data.to_vec();
            v[i] ^= 0xff;
            let _ = Confirm::decode(Bytes::from(v));
        }
    }
}
