//! The STOMP wire format: a resumable, limit-checking [`Decoder`] and a [`FrameWriter`] /
//! [`encode()`] that escapes per version.
//!
//! Grammar (STOMP 1.2 "Augmented BNF"): a frame is a command line, header lines, a blank
//! line, a body and a NUL octet; lines end in LF or CRLF; any number of EOLs may sit between
//! frames (they are heart-beats). A `content-length` header fixes the body length, so the body
//! may contain NUL octets; without it the body ends at the first NUL.
//!
//! Header escaping ("Value Encoding"): 1.2 decodes `\r`, `\n`, `\c` and `\\`; 1.1 decodes the
//! same minus `\r`; any other escape is a fatal error. STOMP 1.0 has no escapes, and CONNECT,
//! STOMP and CONNECTED frames are never escaped, whatever the version.
//!
//! Deliberate leniencies, each shared with RabbitMQ and ActiveMQ: a header line is split at its
//! FIRST colon, so a raw `:` inside a value is kept rather than refused; header names and
//! values are not trimmed (1.2 says whitespace is significant); a `content-length` value may
//! carry surrounding spaces; a CR inside a header line (not before its LF) is kept as data; a
//! NUL octet between frames (`...\0\0`, `\0SEND`) is skipped like a heart-beat EOL.
//!
//! This module knows nothing about what a command needs (that is the session's business).

mod decode;
mod encode;
#[cfg(test)]
mod tests;

pub use decode::{Decoded, Decoder};
pub(crate) use encode::needs_escape;
pub use encode::{encode, FrameWriter};

use crate::frame::Command;
use crate::version::Version;

/// The top bit of every byte of `word` that equals `byte`, at least for the lowest such
/// byte, and no bit at all if there is none: the lowest set bit is exact, the ones above it
/// may not be.
fn bytes_equal(word: u64, byte: u8) -> u64 {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let x = word ^ (LOW * u64::from(byte));
    x.wrapping_sub(LOW) & !x & HIGH
}

/// The index of the first `byte` in `raw`. The first 64 bytes are searched eight at a time,
/// the rest by `memchr`: a header line or a short body ends within them, where a call into
/// `memchr` cost more than the search (four line ends and a colon per header of every SEND).
pub(crate) fn find_byte(raw: &[u8], byte: u8) -> Option<usize> {
    const WORDS: usize = 64;
    let (head, tail) = raw.split_at(raw.len().min(WORDS));
    let (words, rest) = head.as_chunks::<8>();
    for (i, w) in words.iter().enumerate() {
        let found = bytes_equal(u64::from_le_bytes(*w), byte);
        if found != 0 {
            return Some(i * 8 + (found.trailing_zeros() / 8) as usize);
        }
    }
    if let Some(i) = rest.iter().position(|&b| b == byte) {
        return Some(words.len() * 8 + i);
    }
    memchr::memchr(byte, tail).map(|i| head.len() + i)
}

/// Whether `raw` holds any of `bytes`. Up to 64 bytes, eight at a time: a header name or
/// value of a few dozen bytes is searched on every frame (a topic in each MESSAGE, each header
/// line of a SEND for escapes), where a call into `memchr` per byte sought cost more than the
/// search (5 % of the broker in a STOMP fan-in). A longer one is left to `memchr`.
pub(crate) fn holds_any<const N: usize>(raw: &[u8], bytes: [u8; N]) -> bool {
    if raw.len() > 64 {
        return bytes.iter().any(|&b| memchr::memchr(b, raw).is_some());
    }
    let (words, rest) = raw.as_chunks::<8>();
    let seen = words.iter().fold(0, |seen, w| {
        let word = u64::from_le_bytes(*w);
        bytes.iter().fold(seen, |seen, &b| seen | bytes_equal(word, b))
    });
    seen != 0 || rest.iter().any(|b| bytes.contains(b))
}

/// Why a byte stream is not valid STOMP. Every variant is fatal for the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The frame is larger than `max_frame_bytes` (counted before it completes).
    #[error("frame larger than {0} bytes")]
    FrameTooLarge(usize),
    /// The frame has more than `max_headers` headers.
    #[error("more than {0} headers")]
    TooManyHeaders(usize),
    /// A header line is longer than `max_header_bytes` (counted before it completes).
    #[error("header line longer than {0} bytes")]
    HeaderTooLong(usize),
    /// The command line is not a STOMP command (shown with control characters escaped).
    #[error("unknown command \"{0}\"")]
    UnknownCommand(String),
    /// A header line has no colon.
    #[error("header line without a colon")]
    MissingColon,
    /// A header line starts with a colon.
    #[error("empty header name")]
    EmptyHeaderName,
    /// A header name or value is not valid UTF-8 (STOMP 1.2 "Value Encoding": UTF-8).
    #[error("header is not valid UTF-8")]
    InvalidUtf8,
    /// An undefined escape sequence in a header ("Value Encoding": a fatal protocol error).
    #[error("undefined escape sequence \"{0}\" in a header")]
    BadEscape(String),
    /// `content-length` is not a non-negative decimal integer.
    #[error("invalid content-length {0:?}")]
    BadContentLength(String),
    /// The `content-length` bytes of body are not followed by a NUL octet.
    #[error("body not terminated by NUL after content-length bytes")]
    MissingNul,
    /// A CR between frames that is not followed by LF.
    #[error("CR not followed by LF")]
    BadLineEnding,
}

impl CodecError {
    /// Whether the error is a configured limit (rather than malformed input).
    pub fn is_limit(&self) -> bool {
        matches!(self, CodecError::FrameTooLarge(_) | CodecError::TooManyHeaders(_) | CodecError::HeaderTooLong(_))
    }
}

/// How header names and values of one frame are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escaping {
    /// No escapes: STOMP 1.0, and CONNECT/STOMP/CONNECTED in every version.
    Raw,
    /// STOMP 1.1: `\n`, `\c`, `\\`.
    V11,
    /// STOMP 1.2: `\r`, `\n`, `\c`, `\\`.
    V12,
}

impl Escaping {
    /// The escaping for a frame of `command` under `version`.
    pub fn for_frame(command: Command, version: Version) -> Escaping {
        if !command.escapes_headers() {
            return Escaping::Raw;
        }
        match version {
            Version::V1_0 => Escaping::Raw,
            Version::V1_1 => Escaping::V11,
            Version::V1_2 => Escaping::V12,
        }
    }
}
