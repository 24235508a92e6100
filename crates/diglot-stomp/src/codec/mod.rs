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
