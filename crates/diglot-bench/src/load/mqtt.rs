//! Just enough MQTT 3.1.1 for the load generator, written for speed rather than coverage:
//! CONNECT, SUBSCRIBE, PUBLISH (QoS 0 and 1), PUBACK, PINGREQ and DISCONNECT out; CONNACK,
//! SUBACK, PUBLISH, PUBACK and PINGRESP in. It is not the broker's codec on purpose: a bug
//! shared by both would hide itself. No MQTT 5, no QoS 2, no properties.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A packet the load generator cares about.
#[derive(Debug, PartialEq)]
pub enum Packet {
    /// CONNACK: session present flag and return code (0 = accepted) [MQTT-3.2.2].
    ConnAck {
        /// Whether the broker kept a session for this client id.
        session_present: bool,
        /// The connect return code.
        code: u8,
    },
    /// SUBACK: the granted QoS of the first filter (0x80 = failure).
    SubAck(u8),
    /// PUBLISH: QoS, packet id (0 for QoS 0), payload (a slice of the read buffer).
    Publish {
        /// QoS of this delivery.
        qos: u8,
        /// Packet id, 0 for QoS 0.
        pid: u16,
        /// The message payload.
        payload: Bytes,
    },
    /// PUBACK with its packet id.
    PubAck(u16),
    /// Any other packet type (PINGRESP, UNSUBACK …), by its type nibble.
    Other(u8),
}

/// A malformed packet from the peer.
#[derive(Debug)]
pub struct Malformed(pub &'static str);

fn remaining_length(buf: &mut BytesMut, mut n: usize) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if n == 0 {
            return;
        }
    }
}

fn string(buf: &mut BytesMut, s: &[u8]) {
    buf.put_u16(s.len() as u16);
    buf.put_slice(s);
}

/// Appends a CONNECT (protocol level 4) with an optional username and password.
pub fn connect(buf: &mut BytesMut, client_id: &str, clean: bool, keep_alive: u16, login: Option<(&str, &str)>) {
    let mut flags = if clean { 0x02 } else { 0 };
    let mut len = 10 + 2 + client_id.len();
    if let Some((user, pass)) = login {
        flags |= 0xC0;
        len += 4 + user.len() + pass.len();
    }
    buf.put_u8(0x10);
    remaining_length(buf, len);
    string(buf, b"MQTT");
    buf.put_u8(4);
    buf.put_u8(flags);
    buf.put_u16(keep_alive);
    string(buf, client_id.as_bytes());
    if let Some((user, pass)) = login {
        string(buf, user.as_bytes());
        string(buf, pass.as_bytes());
    }
}

/// Appends a SUBSCRIBE of one filter.
pub fn subscribe(buf: &mut BytesMut, pid: u16, filter: &str, qos: u8) {
    buf.put_u8(0x82);
    remaining_length(buf, 2 + 2 + filter.len() + 1);
    buf.put_u16(pid);
    string(buf, filter.as_bytes());
    buf.put_u8(qos);
}

/// Appends a PUBLISH; `pid` is ignored for QoS 0.
pub fn publish(buf: &mut BytesMut, topic: &str, qos: u8, pid: u16, payload: &[u8]) {
    let id_len = if qos > 0 { 2 } else { 0 };
    buf.put_u8(0x30 | (qos << 1));
    remaining_length(buf, 2 + topic.len() + id_len + payload.len());
    string(buf, topic.as_bytes());
    if qos > 0 {
        buf.put_u16(pid);
    }
    buf.put_slice(payload);
}

/// Appends a PUBACK.
pub fn puback(buf: &mut BytesMut, pid: u16) {
    buf.put_slice(&[0x40, 0x02]);
    buf.put_u16(pid);
}

/// Appends a PINGREQ.
pub fn pingreq(buf: &mut BytesMut) {
    buf.put_slice(&[0xC0, 0x00]);
}

/// Appends a DISCONNECT.
pub fn disconnect(buf: &mut BytesMut) {
    buf.put_slice(&[0xE0, 0x00]);
}

/// Takes one complete packet off the front of `buf`; `Ok(None)` if it is not complete yet.
/// A PUBLISH's payload is split off `buf` only if `keep_payload`; otherwise it is skipped and
/// the packet carries an empty one (a throughput run counts messages and reads none of them).
pub fn decode(buf: &mut BytesMut, keep_payload: bool) -> Result<Option<Packet>, Malformed> {
    let mut len = 0usize;
    let mut shift = 0;
    let mut header = 1;
    loop {
        let Some(&byte) = buf.get(header) else { return Ok(None) };
        len |= ((byte & 0x7F) as usize) << shift;
        header += 1;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 21 {
            return Err(Malformed("remaining length over 4 bytes"));
        }
    }
    if buf.len() < header + len {
        return Ok(None);
    }
    let first = buf[0];
    let short = Malformed("packet too short");
    if first >> 4 == 3 && !keep_payload {
        let qos = (first >> 1) & 3;
        let body = &buf[header..header + len];
        let id_len = if qos > 0 { 2 } else { 0 };
        let topic_len = match body {
            [a, b, ..] => usize::from(u16::from_be_bytes([*a, *b])),
            _ => return Err(short),
        };
        let Some(pid) = body.get(2 + topic_len..2 + topic_len + id_len) else { return Err(short) };
        let pid = if qos > 0 { u16::from_be_bytes([pid[0], pid[1]]) } else { 0 };
        buf.advance(header + len);
        return Ok(Some(Packet::Publish { qos, pid, payload: Bytes::new() }));
    }
    let mut body = buf.split_to(header + len).freeze();
    body.advance(header);
    Ok(Some(match first >> 4 {
        2 if body.len() >= 2 => Packet::ConnAck { session_present: body[0] & 1 == 1, code: body[1] },
        3 => {
            let qos = (first >> 1) & 3;
            if body.len() < 2 {
                return Err(short);
            }
            let topic_len = u16::from_be_bytes([body[0], body[1]]) as usize;
            let id_len = if qos > 0 { 2 } else { 0 };
            if body.len() < 2 + topic_len + id_len {
                return Err(short);
            }
            body.advance(2 + topic_len);
            let pid = if qos > 0 { body.get_u16() } else { 0 };
            Packet::Publish { qos, pid, payload: body }
        }
        4 if body.len() >= 2 => Packet::PubAck(u16::from_be_bytes([body[0], body[1]])),
        9 if body.len() >= 3 => Packet::SubAck(body[2]),
        2 | 4 | 9 => return Err(short),
        other => Packet::Other(other),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_round_trips_in_pieces() {
        let mut out = BytesMut::new();
        publish(&mut out, "a/b", 1, 7, &[9u8; 300]);
        publish(&mut out, "a/b", 0, 0, b"x");
        let mut input = BytesMut::new();
        let mut got = Vec::new();
        for byte in out.iter() {
            input.put_u8(*byte);
            while let Some(p) = decode(&mut input, true).expect("well formed") {
                got.push(p);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], Packet::Publish { qos: 1, pid: 7, payload: Bytes::from(vec![9u8; 300]) });
        assert_eq!(got[1], Packet::Publish { qos: 0, pid: 0, payload: Bytes::from_static(b"x") });
        // Without payloads: the same packets, the same ids, nothing left over.
        let mut input = out.clone();
        assert_eq!(
            decode(&mut input, false).ok().flatten(),
            Some(Packet::Publish { qos: 1, pid: 7, payload: Bytes::new() })
        );
        assert_eq!(
            decode(&mut input, false).ok().flatten(),
            Some(Packet::Publish { qos: 0, pid: 0, payload: Bytes::new() })
        );
        assert!(input.is_empty());
        assert!(decode(&mut BytesMut::from(&[0x32, 3, 0, 1, b'a'][..]), false).is_err(), "QoS 1 without its id");
    }

    #[test]
    fn connack_suback_puback() {
        let mut input = BytesMut::from(&[0x20, 2, 1, 0, 0x90, 3, 0, 1, 1, 0x40, 2, 0, 5, 0xD0, 0][..]);
        assert_eq!(decode(&mut input, true).ok().flatten(), Some(Packet::ConnAck { session_present: true, code: 0 }));
        assert_eq!(decode(&mut input, true).ok().flatten(), Some(Packet::SubAck(1)));
        assert_eq!(decode(&mut input, true).ok().flatten(), Some(Packet::PubAck(5)));
        assert_eq!(decode(&mut input, true).ok().flatten(), Some(Packet::Other(13)));
        assert!(input.is_empty());
    }
}
