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
        let mut digits = [0u8; 20];
        buf.put_slice(decimal(body.len() as u64, &mut digits).as_bytes());
        buf.put_u8(b'\n');
    }
    buf.put_u8(b'\n');
    buf.put_slice(body);
    buf.put_u8(0);
}

/// `n` in decimal, written into `digits` (no allocation: the generator writes one per frame).
pub fn decimal(mut n: u64, digits: &mut [u8; 20]) -> &str {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&digits[at..]).unwrap_or("0")
}

/// Takes one complete frame off the front of `buf`; `Ok(None)` if it is not complete yet.
/// A MESSAGE's id to acknowledge with is only kept if `want_ack` (a client-ack subscription);
/// then it is the one allocation. Otherwise a MESSAGE allocates nothing: its body is split off
/// `buf` (the generator must not be what limits a fan-out of small messages). A MESSAGE's
/// header lines are searched for the headers it needs rather than checked one by one.
/// A MESSAGE's body is split off only if `keep_body` (see the MQTT reader's `decode`).
pub fn decode(buf: &mut BytesMut, want_ack: bool, keep_body: bool) -> Result<Option<Frame>, Malformed> {
    if matches!(buf.first(), Some(b'\n' | b'\r')) {
        let skip = buf.iter().take_while(|b| **b == b'\n' || **b == b'\r').count();
        buf.advance(skip);
    }
    // One pass over the lines: the command, then headers up to the blank line. Until that
    // line has arrived the frame is not complete (and nothing was taken off `buf`).
    let strip = |l: &[u8]| l.len() - usize::from(l.last() == Some(&b'\r'));
    let (command_end, kind) = if buf.starts_with(b"MESSAGE\n") {
        // The frame a fan-out reads most: its command line needs no search.
        (7, Kind::Message)
    } else {
        let Some((command_end, _)) = line_at(buf, 0) else { return Ok(None) };
        let kind = match &buf[..strip(&buf[..command_end])] {
            b"CONNECTED" => Kind::Connected,
            b"MESSAGE" => Kind::Message,
            b"RECEIPT" => Kind::Receipt,
            b"ERROR" => Kind::Error,
            _ => Kind::Other,
        };
        (command_end, kind)
    };
    // Header values as ranges of `buf`; STOMP 1.2 "Repeated header entries": the first counts.
    let (mut ack, mut message_id, mut receipt, mut message, mut length) = (None, None, None, None, None);
    let mut pos = command_end + 1;
    let body_start = if let Kind::Message = kind {
        // The frame a fan-out reads most: one pass over its header lines finds the blank line
        // and the few headers it needs.
        let Some(head) = message_head(buf, command_end + 1, want_ack) else { return Ok(None) };
        (length, ack, message_id) = (head.length, head.ack, head.message_id);
        head.body_start
    } else {
        loop {
            let Some((line_end, colon)) = line_at(buf, pos) else { return Ok(None) };
            let line_len = strip(&buf[pos..line_end]);
            if line_len == 0 {
                break line_end + 1;
            }
            let Some(colon) = colon.filter(|c| *c < pos + line_len) else {
                return Err(Malformed("header without a colon"));
            };
            let value = colon + 1..pos + line_len;
            let slot = match &buf[pos..colon] {
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
    };
    let body_len = match length {
        Some(l) => parse_length(&buf[l]).ok_or(Malformed("bad content-length"))?,
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
    // Only the body is split off as shared bytes; the few header values a frame needs are
    // copied (an `ack` id is a handful of bytes), so a MESSAGE costs one split, not four.
    let copy = |r: Option<std::ops::Range<usize>>| r.map(|r| Bytes::copy_from_slice(&buf[r]));
    let frame = match kind {
        Kind::Connected => Frame::Connected,
        Kind::Message => {
            let ack = if want_ack { copy(ack.or(message_id)) } else { None };
            let body = if keep_body {
                buf.advance(body_start);
                let body = buf.split_to(body_len).freeze();
                buf.advance(1);
                body
            } else {
                buf.advance(body_start + body_len + 1);
                Bytes::new()
            };
            return Ok(Some(Frame::Message { ack, body }));
        }
        Kind::Receipt => Frame::Receipt(copy(receipt).unwrap_or_default()),
        Kind::Error => Frame::Error(format!(
            "{}: {}",
            String::from_utf8_lossy(&copy(message).unwrap_or_default()),
            String::from_utf8_lossy(&buf[body_start..body_start + body_len])
        )),
        Kind::Other => Frame::Other,
    };
    buf.advance(body_start + body_len + 1);
    Ok(Some(frame))
}

/// Whether a WebSocket message's payload is one whole MESSAGE frame and nothing else: it starts
/// with the MESSAGE command line, has a blank line, and its only NUL is its last byte (so no
/// second frame, and no body that needed its `content-length` to be read). Brokers send one
/// frame per WebSocket message (Diglot, RabbitMQ), so a reader that needs neither the body nor
/// the `ack` header can count such a message as it is. A body holding a NUL, frames sharing a
/// message, trailing heart-beats or any other frame go to [`decode`]; `content-length` is not
/// checked here.
pub fn is_one_message(payload: &[u8]) -> bool {
    let Some(rest) = payload.strip_prefix(b"MESSAGE\n").or_else(|| payload.strip_prefix(b"MESSAGE\r\n")) else {
        return false;
    };
    let Some((&0, frame)) = rest.split_last() else { return false };
    if has_nul(frame) {
        return false;
    }
    // The blank line, looked for from the end: a MESSAGE's last line feed is usually the
    // blank line's (a body without line feeds), so the search stops after the body. Eight
    // bytes at a time, in place: calls to `memrchr` (and to `memchr` for the NUL) cost more
    // than the few dozen bytes they looked at (a sixth of the generator's time in a STOMP
    // fan-out), and so did a loop over the bytes.
    let mut end = frame.len();
    while let Some(nl) = last_line_feed(&frame[..end]) {
        let blank = match nl {
            0 => true,
            _ => frame[nl - 1] == b'\n' || (frame[nl - 1] == b'\r' && (nl == 1 || frame[nl - 2] == b'\n')),
        };
        if blank {
            return true;
        }
        end = nl;
    }
    false
}

/// The word of the eight bytes at `at` (little-endian, so byte `i` is bits `8i..8i+8`).
fn word_at(bytes: &[u8], at: usize) -> Option<u64> {
    bytes.get(at..)?.first_chunk::<8>().map(|w| u64::from_le_bytes(*w))
}

/// The top bit of every byte of `word` that is a line feed, and no other bit.
fn line_feeds(word: u64) -> u64 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    // A byte of `x` is zero exactly where `word` holds `\n`; the sum sets the top bit of every
    // byte whose low seven bits are not all zero, without carries between bytes.
    let x = word ^ 0x0A0A_0A0A_0A0A_0A0A;
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// Where the last line feed of `bytes` is: eight bytes at a time from the end, the first
/// eight (which may overlap bytes already looked at) last.
fn last_line_feed(bytes: &[u8]) -> Option<usize> {
    if bytes.len() < 8 {
        return bytes.iter().rposition(|&b| b == b'\n');
    }
    let mut end = bytes.len();
    while end > 8 {
        let feeds = line_feeds(word_at(bytes, end - 8)?);
        if feeds != 0 {
            return Some(end - 8 + (63 - feeds.leading_zeros() as usize) / 8);
        }
        end -= 8;
    }
    // The first word: only its bytes before `end` are still to be looked at.
    let feeds = line_feeds(word_at(bytes, 0)?) & (u64::MAX >> (64 - 8 * end));
    (feeds != 0).then(|| (63 - feeds.leading_zeros() as usize) / 8)
}

/// Whether `bytes` hold a NUL: eight bytes at a time, without a branch per word; the last
/// eight (which may overlap the words before) close the search.
fn has_nul(bytes: &[u8]) -> bool {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte's top bit is set in `(x - LOW) & !x & HIGH` for the lowest zero byte of `x` at
    // least, and in none if no byte is zero.
    let zero = |x: u64| x.wrapping_sub(LOW) & !x & HIGH;
    if bytes.len() < 8 {
        return bytes.contains(&0);
    }
    let (words, _) = bytes.as_chunks::<8>();
    let seen = words.iter().fold(0, |seen, w| seen | zero(u64::from_le_bytes(*w)));
    seen != 0 || word_at(bytes, bytes.len() - 8).is_some_and(|w| zero(w) != 0)
}

/// What one pass over a MESSAGE's header lines found: where its body starts and the values
/// (as ranges of the buffer, without a `\r`) of the first `content-length`, `ack` and
/// `message-id` headers.
#[derive(Default)]
struct Head {
    body_start: usize,
    length: Option<std::ops::Range<usize>>,
    ack: Option<std::ops::Range<usize>>,
    message_id: Option<std::ops::Range<usize>>,
}

/// Reads the header lines that start at `from` up to the first empty line (`\n` or `\r\n`;
/// header values never hold a raw EOL), keeping `ack` and `message-id` only if `want_ack`;
/// `None` if the empty line has not arrived. Only a line whose first byte could begin the
/// blank line or a wanted header is looked at: the others cost their line feed's bit.
fn message_head(buf: &[u8], from: usize, want_ack: bool) -> Option<Head> {
    let mut head = Head::default();
    let mut line = from;
    let mut newlines = Newlines::new(buf.get(from..)?);
    loop {
        // The header whose value the line's line feed ends, and where that value starts.
        let open = match *buf.get(line)? {
            b'\n' => {
                head.body_start = line + 1;
                return Some(head);
            }
            b'\r' if buf.get(line + 1) == Some(&b'\n') => {
                head.body_start = line + 2;
                return Some(head);
            }
            first => {
                // Each name is a constant, so that its comparison is not a call to `memcmp`.
                const LENGTH: &[u8] = b"content-length:";
                const ACK: &[u8] = b"ack:";
                const MESSAGE_ID: &[u8] = b"message-id:";
                let rest = &buf[line..];
                match first {
                    b'c' if head.length.is_none() && rest.starts_with(LENGTH) => Some((Wanted::Length, LENGTH.len())),
                    b'a' if want_ack && head.ack.is_none() && rest.starts_with(ACK) => Some((Wanted::Ack, ACK.len())),
                    b'm' if want_ack && head.message_id.is_none() && rest.starts_with(MESSAGE_ID) => {
                        Some((Wanted::MessageId, MESSAGE_ID.len()))
                    }
                    _ => None,
                }
                .map(|(wanted, name)| (wanted, line + name))
            }
        };
        let end = from + newlines.next()?;
        if let Some((wanted, start)) = open {
            let stop = if end > start && buf[end - 1] == b'\r' { end - 1 } else { end };
            let value = Some(start..stop.max(start));
            match wanted {
                Wanted::Length => head.length = value,
                Wanted::Ack => head.ack = value,
                Wanted::MessageId => head.message_id = value,
            }
        }
        line = end + 1;
    }
}

/// The headers of a MESSAGE that [`message_head`] keeps.
#[derive(Clone, Copy)]
enum Wanted {
    Length,
    Ack,
    MessageId,
}

/// The positions of the line feeds in a few dozen bytes, found eight bytes at a time (a
/// MESSAGE's header lines are short: a vectorised search per line costs more in calls than it
/// saves).
struct Newlines<'a> {
    bytes: &'a [u8],
    /// Where the word in `mask` starts.
    base: usize,
    /// The top bit of every byte of the current word that is a line feed and not handed out.
    mask: u64,
}

impl<'a> Newlines<'a> {
    fn new(bytes: &'a [u8]) -> Newlines<'a> {
        let mut it = Newlines { bytes, base: 0, mask: 0 };
        it.mask = it.word_mask();
        it
    }

    /// The line feeds of the eight bytes at `base` (zeros past the end are none).
    fn word_mask(&self) -> u64 {
        let Some(rest) = self.bytes.get(self.base..) else { return 0 };
        let word = word_at(rest, 0).unwrap_or_else(|| {
            let mut word = [0u8; 8];
            for (w, b) in word.iter_mut().zip(rest) {
                *w = *b;
            }
            u64::from_le_bytes(word)
        });
        line_feeds(word)
    }
}

impl Iterator for Newlines<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while self.mask == 0 {
            self.base += 8;
            if self.base >= self.bytes.len() {
                return None;
            }
            self.mask = self.word_mask();
        }
        let at = self.base + (self.mask.trailing_zeros() / 8) as usize;
        self.mask &= self.mask - 1;
        Some(at)
    }
}

/// The line starting at `from`: where its `\n` is and where its first `:` is, if any; `None`
/// if the line is not complete. Two vectorised searches per line (memchr), bounded by the line.
fn line_at(buf: &[u8], from: usize) -> Option<(usize, Option<usize>)> {
    let rest = buf.get(from..)?;
    let end = memchr::memchr(b'\n', rest)?;
    let colon = memchr::memchr(b':', &rest[..end]).map(|c| from + c);
    Some((from + end, colon))
}

/// A `content-length` value: decimal digits (a broker may pad it with spaces), at most 1 GiB.
fn parse_length(value: &[u8]) -> Option<usize> {
    let digits = value.trim_ascii();
    if digits.is_empty() || digits.len() > 10 {
        return None;
    }
    let mut n = 0usize;
    for d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + usize::from(d - b'0');
    }
    (n <= 1 << 30).then_some(n)
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

    /// Feeds `input` to [`decode`] `piece` bytes at a time; every frame it yields, in order.
    fn decode_in_pieces(input: &[u8], piece: usize) -> Vec<Frame> {
        let (mut buf, mut got) = (BytesMut::new(), Vec::new());
        for chunk in input.chunks(piece) {
            buf.put_slice(chunk);
            while let Some(f) = decode(&mut buf, true, true).expect("well formed") {
                got.push(f);
            }
        }
        assert!(buf.is_empty(), "bytes left over: {buf:?}");
        got
    }

    fn message(ack: Option<&'static [u8]>, body: &'static [u8]) -> Frame {
        Frame::Message { ack: ack.map(Bytes::from_static), body: Bytes::from_static(body) }
    }

    #[test]
    fn a_message_takes_the_first_of_its_headers_by_exact_name() {
        let input = b"MESSAGE\nx-ack:no\nsubscription:0\nack:a1\nack:a2\ncontent-length:3\ncontent-length:9\n\nab\0\0\
               MESSAGE\r\n\r\nbare\0MESSAGE\nmessage-id:m3\r\n\r\nx\0\
               MESSAGE\ncontent-type:t\ncontent-lengthy:1\nack-id:z\nmessage-ids:q\nc\na\nm\ncontent-length:2\n\nhi\0";
        let want = vec![
            message(Some(b"a1"), b"ab\0"),
            message(None, b"bare"),
            message(Some(b"m3"), b"x"),
            message(None, b"hi"),
        ];
        assert_eq!(decode_in_pieces(input, input.len()), want);
        assert_eq!(decode_in_pieces(input, 1), want);
    }

    #[test]
    fn only_a_message_that_is_one_whole_frame_is_counted_in_place() {
        for one in [
            &b"MESSAGE\nsubscription:0\nmessage-id:1\ndestination:/topic/t\ncontent-length:2\n\nab\0"[..],
            b"MESSAGE\n\n\0",
            b"MESSAGE\nx:y\n\n0123456789abcdef\0",
            b"MESSAGE\nlonger-header:0123456\n\nbody\0",
            b"MESSAGE\r\ndestination:/topic/t\r\n\r\nbody\0",
            b"MESSAGE\r\n\r\nbody\0",
            b"MESSAGE\nx:y\r\n\r\nbody\0",
            b"MESSAGE\nx:y\n\nbody\nwith\n\nlines\n\0",
        ] {
            assert!(is_one_message(one), "{}", String::from_utf8_lossy(one));
            let mut buf = BytesMut::from(one);
            assert!(matches!(decode(&mut buf, false, false), Ok(Some(Frame::Message { .. }))));
            assert!(buf.is_empty(), "decode takes it whole too");
        }
        for not in [
            // Two frames in one message; a body with a NUL; a trailing heart-beat; no blank
            // line; another command; a frame not ended.
            &b"MESSAGE\ndestination:/t\n\na\0MESSAGE\ndestination:/t\n\nb\0"[..],
            b"MESSAGE\ncontent-length:3\n\na\0b\0",
            b"MESSAGE\ndestination:/t\n\na\0\n",
            b"MESSAGE\ndestination:/t\nbody\0",
            b"RECEIPT\nreceipt-id:sub\n\n\0",
            b"MESSAGE\ndestination:/t\n\nbody",
            b"MESSAGE\nlonger-header:01234\0\n\nbody\0",
            b"MESSAGE\nx:y\nbo\rdy\n\0",
            b"MESSAGE\nx:\r\n\0",
            b"MESSAGE\nx:y\r\r\nz\0",
            b"MESSAGE",
            b"MESSAGE\n",
            b"",
        ] {
            assert!(!is_one_message(not), "{}", String::from_utf8_lossy(not));
        }
        // A NUL anywhere but at the end, whichever of the words it falls in.
        let frame = b"MESSAGE\nsubscription:0\nmessage-id:12\ndestination:/topic/t\n\n0123456789abcdef\0";
        for at in 0..frame.len() - 1 {
            let mut with_nul = frame.to_vec();
            with_nul[at] = 0;
            assert!(!is_one_message(&with_nul), "a NUL at {at}");
        }
        assert!(is_one_message(frame));
    }

    #[test]
    fn line_feeds_and_nuls_are_found_as_a_byte_by_byte_search_finds_them() {
        // Every length up to 40 and bytes that are often `\n`, `\0` or their neighbours.
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for len in 0..=40 {
            for _ in 0..200 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        [b'\n', 0, b'\r', b'a', 0x0B, 0x8A, 0xFF, 0x01][(seed % 8) as usize]
                    })
                    .collect();
                for end in 0..=len {
                    let b = &bytes[..end];
                    assert_eq!(last_line_feed(b), b.iter().rposition(|&x| x == b'\n'), "{b:?}");
                    assert_eq!(has_nul(b), b.contains(&0), "{b:?}");
                }
            }
        }
    }

    #[test]
    fn decimals_are_written_without_allocating() {
        let mut digits = [0u8; 20];
        for n in [0u64, 7, 10, 16, 65_535, u64::MAX] {
            assert_eq!(decimal(n, &mut digits), n.to_string());
        }
    }

    #[test]
    fn newlines_are_found_exactly_at_every_offset() {
        for len in 0..40 {
            for at in 0..len {
                let mut bytes = vec![0x8Au8; len];
                bytes[at] = b'\n';
                if at + 1 < len {
                    bytes[at + 1] = 0x0B;
                }
                assert_eq!(Newlines::new(&bytes).collect::<Vec<_>>(), vec![at], "len {len}, at {at}");
            }
        }
        let text = b"MESSAGE\nsubscription:0\n\n\nx\n";
        let want: Vec<usize> = text.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i).collect();
        assert_eq!(Newlines::new(text).collect::<Vec<_>>(), want);
    }

    #[test]
    fn frames_round_trip_in_pieces_with_heartbeats() {
        let mut out = BytesMut::new();
        out.put_slice(b"\n\r\n");
        frame(&mut out, "MESSAGE", &[("message-id", "m1"), ("ack", "a1")], b"hello\0x");
        frame(&mut out, "RECEIPT", &[("receipt-id", "7")], b"");
        out.put_slice(b"MESSAGE\r\nmessage-id:m2\r\n\r\nno-length\0");
        assert_eq!(
            decode_in_pieces(&out, 1),
            vec![
                message(Some(b"a1"), b"hello\0x"),
                Frame::Receipt(Bytes::from_static(b"7")),
                message(Some(b"m2"), b"no-length"),
            ]
        );
    }
}
