//! The STOMP encoder: writes frames straight into an output buffer, escaping header names and
//! values per version, so a MESSAGE is encoded without building an intermediate [`Frame`].
//!
//! STOMP 1.0 (and CONNECTED in every version) has no escapes, so characters that would break
//! the framing are replaced there: CR and LF become a space, and a `:` in a header NAME becomes
//! `_`. STOMP 1.1 cannot express a CR either; it is written raw (only a CR at the very end of a
//! value could be misread, as part of a CRLF).

use bytes::{BufMut, BytesMut};

use super::Escaping;
use crate::frame::{Command, Frame};
use crate::version::Version;

/// Writes one frame into a buffer: [`FrameWriter::begin`], any number of
/// [`FrameWriter::header`]s, then [`FrameWriter::finish`].
#[derive(Debug)]
pub struct FrameWriter<'a> {
    buf: &'a mut BytesMut,
    escaping: Escaping,
}

impl<'a> FrameWriter<'a> {
    /// Starts a frame of `command`, escaping headers as `version` requires.
    pub fn begin(buf: &'a mut BytesMut, command: Command, version: Version) -> FrameWriter<'a> {
        buf.put_slice(command.as_str().as_bytes());
        buf.put_u8(b'\n');
        FrameWriter { buf, escaping: Escaping::for_frame(command, version) }
    }

    /// Goes on with a frame of `command` whose command line (and maybe some headers) is
    /// already written, or that will be put after such a start: writes headers and body only.
    pub fn headers(buf: &'a mut BytesMut, command: Command, version: Version) -> FrameWriter<'a> {
        FrameWriter { buf, escaping: Escaping::for_frame(command, version) }
    }

    /// Writes one header.
    pub fn header(&mut self, name: &str, value: &str) -> &mut FrameWriter<'a> {
        self.put_escaped(name.as_bytes(), true);
        self.buf.put_u8(b':');
        self.put_escaped(value.as_bytes(), false);
        self.buf.put_u8(b'\n');
        self
    }

    /// Writes a header whose name is one of STOMP's own (a constant with nothing to escape),
    /// so that only the value is checked for escapes: a MESSAGE's `subscription` on every
    /// delivery.
    pub fn known_header(&mut self, name: &'static str, value: &str) -> &mut FrameWriter<'a> {
        self.put_known_name(name);
        self.put_escaped(value.as_bytes(), false);
        self.buf.put_u8(b'\n');
        self
    }

    /// Writes a header whose name is one of STOMP's own and whose value is `prefix` (a
    /// constant with nothing to escape, such as `/topic/`) followed by `value`, which alone is
    /// checked for escapes: a MESSAGE's `destination` on every delivery.
    pub fn known_header_after(
        &mut self,
        name: &'static str,
        prefix: &'static str,
        value: &str,
    ) -> &mut FrameWriter<'a> {
        debug_assert!(!needs_escape(prefix.as_bytes()));
        self.put_known_name(name);
        self.buf.put_slice(prefix.as_bytes());
        self.put_escaped(value.as_bytes(), false);
        self.buf.put_u8(b'\n');
        self
    }

    /// Writes a header whose name is one of STOMP's own and whose value is already known to
    /// have nothing to escape in any version (checked once, when it was given): a MESSAGE's
    /// `subscription` for an id without escapes.
    pub fn plain_header(&mut self, name: &'static str, value: &str) -> &mut FrameWriter<'a> {
        debug_assert!(!needs_escape(value.as_bytes()));
        self.put_known_name(name);
        self.buf.put_slice(value.as_bytes());
        self.buf.put_u8(b'\n');
        self
    }

    /// Writes a header whose value is a number; the name is one of STOMP's own, a constant
    /// with nothing to escape.
    pub fn header_u64(&mut self, name: &'static str, value: u64) -> &mut FrameWriter<'a> {
        self.put_known_name(name);
        put_decimal(self.buf, value);
        self.buf.put_u8(b'\n');
        self
    }

    /// Ends the headers, writes `body` and the closing NUL. With `content_length`, writes a
    /// `content-length` header first, so the body may contain NUL octets.
    pub fn finish(self, body: &[u8], content_length: bool) {
        if content_length {
            self.buf.put_slice(b"content-length:");
            put_decimal(self.buf, body.len() as u64);
            self.buf.put_u8(b'\n');
        }
        self.buf.put_u8(b'\n');
        self.buf.put_slice(body);
        self.buf.put_u8(0);
    }

    /// Writes `name:` for a header name of STOMP's own, which has nothing to escape.
    fn put_known_name(&mut self, name: &'static str) {
        debug_assert!(!needs_escape(name.as_bytes()));
        self.buf.put_slice(name.as_bytes());
        self.buf.put_u8(b':');
    }

    fn put_escaped(&mut self, raw: &[u8], is_name: bool) {
        let needs_work = needs_escape(raw);
        if !needs_work {
            self.buf.put_slice(raw);
            return;
        }
        for &b in raw {
            match (self.escaping, b) {
                (Escaping::Raw, b'\n' | b'\r') => self.buf.put_u8(b' '),
                (Escaping::Raw, b':') if is_name => self.buf.put_u8(b'_'),
                (Escaping::Raw, _) => self.buf.put_u8(b),
                (_, b'\\') => self.buf.put_slice(b"\\\\"),
                (_, b'\n') => self.buf.put_slice(b"\\n"),
                (_, b':') => self.buf.put_slice(b"\\c"),
                (Escaping::V12, b'\r') => self.buf.put_slice(b"\\r"),
                (_, _) => self.buf.put_u8(b),
            }
        }
    }
}

fn put_decimal(buf: &mut BytesMut, n: u64) {
    let len = n.checked_ilog10().map_or(1, |log| log as usize + 1);
    let mut digits = [0u8; 20];
    let mut rest = n;
    for d in digits[..len].iter_mut().rev() {
        *d = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    // All twenty bytes, then the unused ones taken back: a copy of a known length is a few
    // moves, where a copy of `len` bytes is a call, and a byte at a time checks the capacity
    // each time (together 2 % of the broker in a STOMP fan-in profile).
    let at = buf.len();
    buf.extend_from_slice(&digits);
    buf.truncate(at + len);
}

/// Encodes `frame` for a peer speaking `version`. Any `content-length` header in the frame is
/// replaced by the real length, which is always written for MESSAGE and ERROR frames and for
/// any non-empty body.
pub fn encode(frame: &Frame, version: Version, buf: &mut BytesMut) {
    let mut w = FrameWriter::begin(buf, frame.command, version);
    for (name, value) in frame.headers.iter().filter(|(n, _)| n != "content-length") {
        w.header(name, value);
    }
    let content_length = !frame.body.is_empty() || matches!(frame.command, Command::Message | Command::Error);
    w.finish(&frame.body, content_length);
}

/// Whether a header name or value has a character that some version escapes or replaces.
pub(crate) fn needs_escape(raw: &[u8]) -> bool {
    super::holds_any(raw, [b'\\', b'\n', b':', b'\r'])
}

#[cfg(test)]
mod tests {
    use super::needs_escape;

    /// The word-wise search finds what a byte-by-byte one finds, at every position of every
    /// length up to 80 (past the 64 bytes searched word by word), next to other byte values;
    /// so does the search for a backslash alone, as a SEND's headers are searched.
    #[test]
    fn needs_escape_matches_a_byte_by_byte_search() {
        let bytewise = |raw: &[u8]| raw.iter().any(|b| matches!(b, b'\\' | b'\n' | b':' | b'\r'));
        for len in 0..=80 {
            let plain = vec![b'a'; len];
            assert!(!needs_escape(&plain));
            for at in 0..len {
                for fill in [0u8, 0x01, 0x0B, 0x3B, 0x5B, 0x5D, 0x7F, 0x80, 0xDC, 0xFF] {
                    for special in [b'\\', b'\n', b':', b'\r', fill] {
                        let mut raw = vec![fill; len];
                        raw[at] = special;
                        assert_eq!(needs_escape(&raw), bytewise(&raw), "{raw:?}");
                        assert_eq!(crate::codec::holds_any(&raw, [b'\\']), raw.contains(&b'\\'), "{raw:?}");
                    }
                }
            }
        }
    }
}
