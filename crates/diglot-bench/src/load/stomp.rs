//! Just enough STOMP 1.2 for the load generator: CONNECT, SUBSCRIBE, SEND, ACK and DISCONNECT
//! out; CONNECTED, MESSAGE, RECEIPT and ERROR in, keeping only the headers it needs (`ack`,
//! `message-id`, `receipt-id`, `message`, `content-length`). Heart-beats are declined
//! (`heart-beat:0,0`), but stray EOLs between frames are skipped as the spec allows. Header
//! values are passed back exactly as received, so escaping needs no decoding here. Not the
//! broker's codec on purpose.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The frames the load generator reads.
#[derive(Debug, PartialEq)]
pub enum Frame {
    /// CONNECTED.
    Connected,
    /// MESSAGE: the id to ACK with (`ack`, else `message-id`) and the body.
    Message {
        /// The value to put in the ACK frame's `id` header.
        ack: Option<Bytes>,
        /// The body.
        body: Bytes,
    },
    /// RECEIPT with its `receipt-id`.
    Receipt(Bytes),
    /// ERROR: its `message` header and body.
    Error(String),
    /// Another command.
    Other,
}

/// A malformed frame from the peer.
#[derive(Debug)]
pub struct Malformed(pub &'static str);

/// Appends one frame. A `content-length` header is added whenever there is a body.
pub fn frame(buf: &mut BytesMut, command: &str, headers: &[(&str, &str)], body: &[u8]) {
    buf.put_slice(command.as_bytes());
    buf.put_u8(b'\n');
    for (k, v) in headers {
        buf.put_slice(k.as_bytes());
        buf.put_u8(b':');
        buf.put_slice(v.as_bytes());
        buf.put_u8(b'\n');
    }
    if !body.is_empty() {
        buf.put_slice(b"content-length:");
        buf.put_slice(body.len().to_string().as_bytes());
        buf.put_u8(b'\n');
    }
    buf.put_u8(b'\n');
    buf.put_slice(body);
    buf.put_u8(0);
}

/// Where the headers of the frame at the front of `buf` end: (end of the last header line,
/// start of the body). Each search stops at the first blank line, so a buffer holding many
/// frames is not scanned to its end for every frame.
fn header_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = memchr::memmem::find(buf, b"\n\n").map(|i| (i, i + 2));
    let crlf_window = lf.map_or(buf.len(), |(i, _)| (i + 2).min(buf.len()));
    let crlf = memchr::memmem::find(&buf[..crlf_window], b"\n\r\n").map(|i| (i, i + 3));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Takes one complete frame off the front of `buf`; `Ok(None)` if it is not complete yet.
/// Allocates nothing for a MESSAGE: the `ack` value and the body are slices of the frame's
/// bytes (the generator must not be what limits a fan-out of small messages).
pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, Malformed> {
    let skip = buf.iter().take_while(|b| **b == b'\n' || **b == b'\r').count();
    buf.advance(skip);
    let Some((head_len, body_start)) = header_end(buf) else { return Ok(None) };
    let head = &buf[..head_len];
    let strip = |l: &[u8]| l.len() - usize::from(l.last() == Some(&b'\r'));
    let command_end = memchr::memchr(b'\n', head).unwrap_or(head.len());
    let command = &head[..strip(&head[..command_end])];
    let kind = match command {
        b"CONNECTED" => Kind::Connected,
        b"MESSAGE" => Kind::Message,
        b"RECEIPT" => Kind::Receipt,
        b"ERROR" => Kind::Error,
        _ => Kind::Other,
    };
    // Header values as ranges of `buf`; STOMP 1.2 "Repeated header entries": the first counts.
    let (mut ack, mut message_id, mut receipt, mut message, mut length) = (None, None, None, None, None);
    let mut pos = command_end + 1;
    while pos < head_len {
        let line_end = memchr::memchr(b'\n', &head[pos..]).map_or(head_len, |n| pos + n);
        let line = &head[pos..pos + strip(&head[pos..line_end])];
        let Some(colon) = memchr::memchr(b':', line) else { return Err(Malformed("header without a colon")) };
        let value = pos + colon + 1..pos + line.len();
        let slot = match &line[..colon] {
            b"ack" => &mut ack,
            b"message-id" => &mut message_id,
            b"receipt-id" => &mut receipt,
            b"message" => &mut message,
            b"content-length" => &mut length,
            _ => {
                pos = line_end + 1;
                continue;
            }
        };
        if slot.is_none() {
            *slot = Some(value);
        }
        pos = line_end + 1;
    }
    let body_len = match length {
        Some(l) => std::str::from_utf8(&buf[l])
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .ok_or(Malformed("bad content-length"))?,
        None => match memchr::memchr(0, &buf[body_start..]) {
            Some(n) => n,
            None => return Ok(None),
        },
    };
    if buf.len() < body_start + body_len + 1 {
        return Ok(None);
    }
    if buf[body_start + body_len] != 0 {
        return Err(Malformed("frame not ended by NUL"));
    }
    let whole = buf.split_to(body_start + body_len + 1).freeze();
    let body = whole.slice(body_start..body_start + body_len);
    let text = |r: Option<std::ops::Range<usize>>| r.map(|r| whole.slice(r)).unwrap_or_default();
    Ok(Some(match kind {
        Kind::Connected => Frame::Connected,
        Kind::Message => Frame::Message { ack: ack.or(message_id).map(|r| whole.slice(r)), body },
        Kind::Receipt => Frame::Receipt(text(receipt)),
        Kind::Error => Frame::Error(format!(
            "{}: {}",
            String::from_utf8_lossy(&text(message)),
            String::from_utf8_lossy(&body)
        )),
        Kind::Other => Frame::Other,
    }))
}

/// The commands [`decode`] tells apart.
enum Kind {
    Connected,
    Message,
    Receipt,
    Error,
    Other,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_in_pieces_with_heartbeats() {
        let mut out = BytesMut::new();
        out.put_slice(b"\n\r\n");
        frame(&mut out, "MESSAGE", &[("message-id", "m1"), ("ack", "a1")], b"hello\0x");
        frame(&mut out, "RECEIPT", &[("receipt-id", "7")], b"");
        out.put_slice(b"MESSAGE\r\nmessage-id:m2\r\n\r\nno-length\0");
        let mut input = BytesMut::new();
        let mut got = Vec::new();
        for byte in out.iter() {
            input.put_u8(*byte);
            while let Some(f) = decode(&mut input).expect("well formed") {
                got.push(f);
            }
        }
        assert_eq!(
            got,
            vec![
                Frame::Message { ack: Some(Bytes::from_static(b"a1")), body: Bytes::from_static(b"hello\0x") },
                Frame::Receipt(Bytes::from_static(b"7")),
                Frame::Message { ack: Some(Bytes::from_static(b"m2")), body: Bytes::from_static(b"no-length") },
            ]
        );
    }
}
