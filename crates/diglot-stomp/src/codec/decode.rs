//! The resumable STOMP decoder.
//!
//! The decoder consumes bytes from the front of the caller's buffer as it parses them and
//! keeps the partial frame (command, headers parsed so far) in its own state, so a frame that
//! arrives a byte at a time is scanned once, not once per read. Every limit is checked against
//! the bytes seen so far, before the frame completes: a peer streaming an endless header line
//! or body is stopped at the limit.

use bytes::{Buf, BytesMut};
use diglot_core::Limits;
use memchr::memchr;

use super::{CodecError, Escaping};
use crate::frame::{Command, Frame, HeaderText};
use crate::version::Version;

/// One thing decoded from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A complete frame.
    Frame(Frame),
    /// One or more EOLs between frames: a heart-beat (STOMP 1.2 "Heart-beating").
    HeartBeat,
}

/// Where the decoder is within the current frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between frames: EOLs here are heart-beats.
    Idle,
    /// Reading the command line.
    Command,
    /// Reading header lines of a frame of this command.
    Headers(Command),
    /// Reading the body of a frame of this command.
    Body(Command),
}

/// A resumable STOMP frame decoder with limits.
#[derive(Debug)]
pub struct Decoder {
    max_frame_bytes: usize,
    max_headers: usize,
    max_header_bytes: usize,
    version: Version,
    state: State,
    /// Bytes at the front of the buffer already searched for the current delimiter.
    scanned: usize,
    /// Bytes of the current frame already consumed from the buffer.
    consumed: usize,
    headers: Vec<(HeaderText, HeaderText)>,
    /// An emptied header list handed back after a frame ([`Decoder::recycle`]), for the next
    /// frame's headers: a SEND does not allocate one each time.
    spare: Vec<(HeaderText, HeaderText)>,
    content_length: Option<usize>,
}

impl Decoder {
    /// A decoder enforcing `limits` (`max_frame_bytes`, `max_headers`, `max_header_bytes`),
    /// decoding STOMP 1.2 until told otherwise.
    pub fn new(limits: &Limits) -> Decoder {
        Decoder {
            max_frame_bytes: limits.max_frame_bytes,
            max_headers: limits.max_headers,
            max_header_bytes: limits.max_header_bytes,
            version: Version::V1_2,
            state: State::Idle,
            scanned: 0,
            consumed: 0,
            headers: Vec::new(),
            spare: Vec::new(),
            content_length: None,
        }
    }

    /// Sets the version whose escaping rules apply to the following frames (after CONNECT).
    pub fn set_version(&mut self, version: Version) {
        self.version = version;
    }

    /// The version whose escaping rules apply.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Takes back the header list of a decoded frame, to reuse it for a later frame if it is
    /// empty and small (a frame with many headers is not worth keeping the room for).
    pub fn recycle(&mut self, headers: Vec<(HeaderText, HeaderText)>) {
        const KEPT: usize = 8;
        if headers.is_empty() && headers.capacity() <= KEPT {
            self.spare = headers;
        }
    }

    /// The `receipt` header of the frame being decoded, if it was read before the decoder
    /// stopped. After an error this is the receipt of the frame that failed (a body past the
    /// frame limit, a bad escape in a later header), for the ERROR's `receipt-id` (STOMP 1.2
    /// "ERROR": the server SHOULD name the frame the error is related to).
    pub fn partial_receipt(&self) -> Option<&str> {
        match self.state {
            State::Headers(_) | State::Body(_) => self.headers.iter().find(|(n, _)| n == "receipt").map(|(_, v)| &**v),
            State::Idle | State::Command => None,
        }
    }

    /// The `receipt` header of a frame that failed to decode, for the ERROR's `receipt-id`:
    /// [`Decoder::partial_receipt`] if the header came before the fault, or else, when the
    /// fault was in a header, the first `receipt` among the whole header lines still in `rest`
    /// (the input after the fault) before the blank line, within the first 16 KiB. A line that
    /// does not decode is passed over. STOMP 1.2 "ERROR": the server SHOULD set `receipt-id`
    /// to the receipt of the frame the error is related to, wherever its header is.
    pub fn failed_receipt(&self, rest: &[u8]) -> Option<String> {
        const SCAN: usize = 16 * 1024;
        if let Some(receipt) = self.partial_receipt() {
            return Some(receipt.to_owned());
        }
        let State::Headers(command) = self.state else { return None };
        let escaping = Escaping::for_frame(command, self.version);
        let window = &rest[..rest.len().min(SCAN)];
        let mut start = 0;
        while let Some(eol) = memchr(b'\n', &window[start..]) {
            let line = strip_cr(&window[start..start + eol]);
            start += eol + 1;
            if line.is_empty() {
                return None;
            }
            if line.starts_with(b"receipt:") {
                if let Ok((_, value)) = parse_header(bytes::Bytes::copy_from_slice(line), escaping) {
                    return Some(value.to_string());
                }
            }
        }
        None
    }

    /// Decodes the next frame or heart-beat from the front of `buf`. `Ok(None)` means more
    /// bytes are needed; the bytes seen so far may already have been consumed into the
    /// decoder's state. After an error the stream is unusable.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, CodecError> {
        if self.state == State::Idle && self.skip_eols(buf)? {
            return Ok(Some(Decoded::HeartBeat));
        }
        if self.state == State::Idle {
            return Ok(None);
        }
        if self.state == State::Command && !self.read_command(buf)? {
            return Ok(None);
        }
        while let State::Headers(command) = self.state {
            if !self.read_header(buf, command)? {
                return Ok(None);
            }
        }
        match self.state {
            State::Body(command) => self.read_body(buf, command),
            _ => Ok(None),
        }
    }

    /// Consumes EOLs between frames. Returns whether any were consumed; moves to
    /// [`State::Command`] when a frame starts.
    ///
    /// A NUL octet between frames is skipped like an EOL: the grammar has none there, but
    /// clients that end a frame with two NULs (or begin one with a NUL) exist, and RabbitMQ
    /// and ActiveMQ read past it. Refusing it would gain nothing.
    fn skip_eols(&mut self, buf: &mut BytesMut) -> Result<bool, CodecError> {
        let mut beat = false;
        loop {
            match buf.first() {
                None => return Ok(beat),
                Some(b'\n' | 0) => buf.advance(1),
                Some(b'\r') => match buf.get(1) {
                    None => return Ok(beat),
                    Some(b'\n') => buf.advance(2),
                    Some(_) => return Err(CodecError::BadLineEnding),
                },
                Some(_) => {
                    self.state = State::Command;
                    return Ok(beat);
                }
            }
            beat = true;
        }
    }

    /// The index of the next `byte` in `buf`, resuming where the last search stopped.
    fn find(&mut self, buf: &BytesMut, byte: u8) -> Option<usize> {
        let from = self.scanned.min(buf.len());
        match super::find_byte(&buf[from..], byte) {
            Some(i) => Some(from + i),
            None => {
                self.scanned = buf.len();
                None
            }
        }
    }

    /// Fails if a frame of at least `len` bytes would exceed `max_frame_bytes`.
    fn check_frame(&self, len: usize) -> Result<(), CodecError> {
        if self.consumed.saturating_add(len) > self.max_frame_bytes {
            return Err(CodecError::FrameTooLarge(self.max_frame_bytes));
        }
        Ok(())
    }

    /// Consumes `n` bytes of the current frame.
    fn take(&mut self, buf: &mut BytesMut, n: usize) {
        buf.advance(n);
        self.consumed += n;
        self.scanned = 0;
    }

    fn read_command(&mut self, buf: &mut BytesMut) -> Result<bool, CodecError> {
        let Some(eol) = self.find(buf, b'\n') else {
            // The longest command plus a CR: anything longer cannot become a command.
            if buf.len() > Command::MAX_LEN + 1 {
                return Err(CodecError::UnknownCommand(printable(&buf[..Command::MAX_LEN + 1])));
            }
            self.check_frame(buf.len())?;
            return Ok(false);
        };
        let line = strip_cr(&buf[..eol]);
        // The error shows at most as many bytes as the partial check above sees, so that it
        // does not depend on how the input was split.
        let shown = &line[..line.len().min(Command::MAX_LEN + 1)];
        let command = Command::parse(line).ok_or_else(|| CodecError::UnknownCommand(printable(shown)))?;
        self.check_frame(eol + 1)?;
        self.take(buf, eol + 1);
        self.state = State::Headers(command);
        Ok(true)
    }

    fn read_header(&mut self, buf: &mut BytesMut, command: Command) -> Result<bool, CodecError> {
        let Some(eol) = self.find(buf, b'\n') else {
            // +1: the line may still end in a CR that belongs to its CRLF.
            if buf.len() > self.max_header_bytes.saturating_add(1) {
                return Err(CodecError::HeaderTooLong(self.max_header_bytes));
            }
            self.check_frame(buf.len())?;
            return Ok(false);
        };
        self.check_frame(eol + 1)?;
        let len = strip_cr(&buf[..eol]).len();
        if len == 0 {
            self.take(buf, eol + 1);
            self.state = State::Body(command);
            return Ok(true);
        }
        if len > self.max_header_bytes {
            return Err(CodecError::HeaderTooLong(self.max_header_bytes));
        }
        if self.headers.len() >= self.max_headers {
            return Err(CodecError::TooManyHeaders(self.max_headers));
        }
        // The line is taken as shared bytes, so that the header needs no copy (after an error
        // the stream is unusable anyway).
        let mut line = buf.split_to(eol + 1);
        line.truncate(len);
        let line = line.freeze();
        self.consumed += eol + 1;
        self.scanned = 0;
        let (name, value) = parse_header(line, Escaping::for_frame(command, self.version))?;
        // Repeated headers: only the first counts (STOMP 1.2 "Repeated Header Entries").
        if name == "content-length" && !self.headers.iter().any(|(n, _)| n == "content-length") {
            let n = value.trim().parse::<usize>().map_err(|_| CodecError::BadContentLength(value.to_string()))?;
            self.content_length = Some(n);
        }
        self.headers.push((name, value));
        Ok(true)
    }

    fn read_body(&mut self, buf: &mut BytesMut, command: Command) -> Result<Option<Decoded>, CodecError> {
        let len = match self.content_length {
            Some(n) => {
                self.check_frame(n.saturating_add(1))?;
                if buf.len() <= n {
                    return Ok(None);
                }
                if buf[n] != 0 {
                    return Err(CodecError::MissingNul);
                }
                n
            }
            None => match self.find(buf, 0) {
                Some(i) => i,
                None => {
                    self.check_frame(buf.len() + 1)?;
                    return Ok(None);
                }
            },
        };
        self.check_frame(len + 1)?;
        let body = buf.split_to(len).freeze();
        buf.advance(1);
        let headers = std::mem::replace(&mut self.headers, std::mem::take(&mut self.spare));
        let frame = Frame { command, headers, body };
        self.state = State::Idle;
        self.scanned = 0;
        self.consumed = 0;
        self.content_length = None;
        Ok(Some(Decoded::Frame(frame)))
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A short, printable rendering of bytes for error messages.
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(32)]).escape_debug().to_string()
}

fn parse_header(line: bytes::Bytes, escaping: Escaping) -> Result<(HeaderText, HeaderText), CodecError> {
    let colon = super::find_byte(&line, b':').ok_or(CodecError::MissingColon)?;
    if colon == 0 {
        return Err(CodecError::EmptyHeaderName);
    }
    // Unescaping turns ASCII sequences into ASCII bytes, so the line is UTF-8 exactly when
    // the decoded name and value are: one check for both.
    let text = HeaderText::try_from(line).map_err(|_| CodecError::InvalidUtf8)?;
    let Some(name) = known_name(&text[..colon]) else {
        let name = unescape(&text, &text[..colon], escaping)?;
        return Ok((name, unescape(&text, &text[colon + 1..], escaping)?));
    };
    // A name of STOMP's own is static text, so the value can have the line's bytes from
    // behind the colon without sharing them once more (two atomic operations per header).
    if !has_escapes(&text[colon + 1..], escaping) {
        let mut value = text.into_bytes();
        value.advance(colon + 1);
        // The tail of valid UTF-8 after an ASCII byte is valid UTF-8: this cannot fail.
        return Ok((name, HeaderText::try_from(value).map_err(|_| CodecError::InvalidUtf8)?));
    }
    Ok((name, unescape(&text, &text[colon + 1..], escaping)?))
}

/// The header names clients send most, as static text: a name that is one of them needs no
/// share of the line's bytes (no escapes to decode either: none holds a `\\`).
fn known_name(name: &str) -> Option<HeaderText> {
    const KNOWN: [&str; 12] = [
        "destination",
        "content-length",
        "content-type",
        "receipt",
        "id",
        "ack",
        "persistent",
        "transaction",
        "subscription",
        "message-id",
        "expires",
        "reply-to",
    ];
    KNOWN.iter().find(|k| **k == name).map(|k| HeaderText::from_static(k))
}

/// Whether a header name or value has escapes to decode: never in a frame without escaping
/// (STOMP 1.0, CONNECT), else if it holds a backslash.
fn has_escapes(part: &str, escaping: Escaping) -> bool {
    escaping != Escaping::Raw && super::holds_any(part.as_bytes(), [b'\\'])
}

/// Decodes one header name or value, `part` of the header line `line` (STOMP 1.2 "Value
/// Encoding"). Without escapes it shares the line's bytes.
fn unescape(line: &HeaderText, part: &str, escaping: Escaping) -> Result<HeaderText, CodecError> {
    if !has_escapes(part, escaping) {
        return Ok(line.slice_ref(part));
    }
    let mut out = String::with_capacity(part.len());
    let mut rest = part;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let decoded = match (rest.as_bytes().get(i + 1), escaping) {
            (Some(b'\\'), _) => '\\',
            (Some(b'n'), _) => '\n',
            (Some(b'c'), _) => ':',
            (Some(b'r'), Escaping::V12) => '\r',
            // Shown as sent: the backslash as it is, the octet after it escaped if need be.
            (Some(&other), _) => return Err(CodecError::BadEscape(format!("\\{}", printable(&[other])))),
            (None, _) => return Err(CodecError::BadEscape("\\".to_owned())),
        };
        out.push(decoded);
        // The escape is two ASCII bytes: a character boundary follows it.
        rest = &rest[i + 2..];
    }
    out.push_str(rest);
    Ok(HeaderText::from(out))
}
