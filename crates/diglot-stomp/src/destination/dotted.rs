//! RabbitMQ-style topic names (`stomp.topic_separator = "."`): the text after `/topic/` with
//! `.` between levels, written from and read into a canonical (MQTT) topic, losslessly.
//!
//! Writing a canonical topic ([`write`]): `/` becomes `.`, and the characters that mean
//! something in a dotted name are percent-escaped, so that reading gives the topic back byte for
//! byte:
//!
//! | canonical | dotted | why |
//! |---|---|---|
//! | `/` | `.` | the level separator |
//! | `%` | `%25` | the escape character itself |
//! | `.` | `%2E` | a dot inside a level |
//! | `*` | `%2A` | a star inside a level (a bare `*` is the one-level wildcard) |
//! | `+` | `%2B` | never in a topic name; only a `reply-to` kept verbatim can hold one |
//! | `#` | `%23` | likewise |
//!
//! Everything else (spaces, `$`, `:`, any UTF-8) is written as it is. `a.b/c*d` is `a%2Eb.c%2Ad`,
//! `/x` is `.x`, `a//b` is `a..b`, `$SYS/broker/uptime` is `$SYS.broker.uptime`.
//!
//! Reading a dotted name ([`read`]) undoes that: `.` is `/`, a bare `*` is `+` (the MQTT
//! wildcard, which topic validation then allows only as a whole level of a filter), `#` is `#`,
//! and the escapes above (hex digits in either case) are their characters. Refused, with the
//! byte offset of the culprit ([`DottedError`]): a `%` that starts none of the escapes (`%`,
//! `%4`, `%41`, `%2F`), a `/` (no topic level can contain one), a `+` (the wildcard is `*`, and
//! no topic name contains a literal `+`), and `%2B` / `%23` except in a `reply-to`
//! ([`Read::ReplyTo`]): in a destination they could only be a literal `+` or `#`, which no topic
//! name contains, while in a filter they would turn into wildcards.
//!
//! Not here: prefixes (`/topic/`, `/queue/`), queue names (never split) and topic validation
//! (the caller runs the canonical text through `Topic::new` or `Filter::new`).

/// What is being read: the escapes of a literal `+` and `#` are allowed only in a `reply-to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// A SEND, SUBSCRIBE or UNSUBSCRIBE destination.
    Destination,
    /// A SEND's `reply-to`, which may name something that is not a topic name.
    ReplyTo,
}

/// Why a dotted name cannot be read; each carries the byte offset (in the name after `/topic/`)
/// of the character at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DottedError {
    /// A `%` that does not start `%25`, `%2E` or `%2A` (or, in a `reply-to`, `%2B` or `%23`).
    #[error("'%' at byte {0} starts no escape (write % as %25, . inside a level as %2E, * as %2A)")]
    BadEscape(usize),
    /// A `/`: levels are separated by `.`, and no topic level can contain `/`.
    #[error("'/' at byte {0}: levels are separated by '.', and a topic level cannot contain '/'")]
    Slash(usize),
    /// A `+`: the one-level wildcard is `*`, and no topic name contains `+`.
    #[error("'+' at byte {0}: the one-level wildcard is '*', and a topic cannot contain '+'")]
    Plus(usize),
    /// `%2B` or `%23` in a destination: a literal `+` or `#`, which no topic name contains.
    #[error("the escape at byte {0} is a literal '+' or '#', which a topic cannot contain")]
    LiteralWildcard(usize),
}

/// Appends the dotted form of the canonical `topic` to `out` (see the module's table).
pub(crate) fn write(topic: &str, out: &mut String) {
    out.reserve(topic.len());
    let mut run = 0;
    for (i, b) in topic.bytes().enumerate() {
        let with = match b {
            b'/' => ".",
            b'%' => "%25",
            b'.' => "%2E",
            b'*' => "%2A",
            b'+' => "%2B",
            b'#' => "%23",
            _ => continue,
        };
        // `i` is the offset of an ASCII byte, so both slices end on character boundaries.
        out.push_str(&topic[run..i]);
        out.push_str(with);
        run = i + 1;
    }
    out.push_str(&topic[run..]);
}

/// The canonical text of the dotted `name` (see the module's rules). The result is not
/// validated as a topic or filter yet.
pub(crate) fn read(name: &str, what: Read) -> Result<String, DottedError> {
    let bytes = name.as_bytes();
    let mut out = String::with_capacity(name.len());
    let (mut run, mut i) = (0, 0);
    while let Some(&b) = bytes.get(i) {
        let (with, len) = match b {
            b'.' => ("/", 1),
            b'*' => ("+", 1),
            b'/' => return Err(DottedError::Slash(i)),
            b'+' => return Err(DottedError::Plus(i)),
            b'%' => (unescape(bytes.get(i + 1..i + 3), i, what)?, 3),
            _ => {
                i += 1;
                continue;
            }
        };
        // `i` is the offset of an ASCII byte and an escape is three ASCII bytes, so every slice
        // starts and ends on a character boundary.
        out.push_str(&name[run..i]);
        out.push_str(with);
        i += len;
        run = i;
    }
    out.push_str(&name[run..]);
    Ok(out)
}

/// The character that the two bytes after a `%` at offset `at` escape.
fn unescape(hex: Option<&[u8]>, at: usize, what: Read) -> Result<&'static str, DottedError> {
    let Some(&[hi, lo]) = hex else { return Err(DottedError::BadEscape(at)) };
    match (hi, lo.to_ascii_uppercase()) {
        (b'2', b'5') => Ok("%"),
        (b'2', b'E') => Ok("."),
        (b'2', b'A') => Ok("*"),
        (b'2', b'B') if what == Read::ReplyTo => Ok("+"),
        (b'2', b'3') if what == Read::ReplyTo => Ok("#"),
        (b'2', b'B' | b'3') => Err(DottedError::LiteralWildcard(at)),
        _ => Err(DottedError::BadEscape(at)),
    }
}
