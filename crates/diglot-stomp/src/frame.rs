//! STOMP frames as values: a [`Command`], its headers in wire order, and a body.
//!
//! A [`Frame`] is what the decoder produces and what the encoder writes. Header values here are
//! already unescaped (STOMP 1.1/1.2 "Value Encoding"); escaping is the codec's business. This
//! module does not validate what a command requires (`destination` on SEND, `id` on
//! SUBSCRIBE): the session does that, because the rules depend on the negotiated version.

use bytes::Bytes;

/// A STOMP command: the first line of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Client: open a session (all versions).
    Connect,
    /// Client: open a session (1.1+ name for CONNECT).
    Stomp,
    /// Client: publish a message.
    Send,
    /// Client: subscribe to a destination.
    Subscribe,
    /// Client: cancel a subscription.
    Unsubscribe,
    /// Client: acknowledge a message.
    Ack,
    /// Client: refuse a message (1.1+).
    Nack,
    /// Client: start a transaction.
    Begin,
    /// Client: commit a transaction.
    Commit,
    /// Client: roll back a transaction.
    Abort,
    /// Client: end the session.
    Disconnect,
    /// Server: the session is open.
    Connected,
    /// Server: a message for a subscription.
    Message,
    /// Server: a requested receipt.
    Receipt,
    /// Server: something went wrong; the connection closes.
    Error,
}

impl Command {
    /// Every command, client commands first.
    pub const ALL: [Command; 15] = [
        Command::Connect,
        Command::Stomp,
        Command::Send,
        Command::Subscribe,
        Command::Unsubscribe,
        Command::Ack,
        Command::Nack,
        Command::Begin,
        Command::Commit,
        Command::Abort,
        Command::Disconnect,
        Command::Connected,
        Command::Message,
        Command::Receipt,
        Command::Error,
    ];

    /// The longest command name in bytes (`UNSUBSCRIBE`).
    pub const MAX_LEN: usize = 11;

    /// The command's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Connect => "CONNECT",
            Command::Stomp => "STOMP",
            Command::Send => "SEND",
            Command::Subscribe => "SUBSCRIBE",
            Command::Unsubscribe => "UNSUBSCRIBE",
            Command::Ack => "ACK",
            Command::Nack => "NACK",
            Command::Begin => "BEGIN",
            Command::Commit => "COMMIT",
            Command::Abort => "ABORT",
            Command::Disconnect => "DISCONNECT",
            Command::Connected => "CONNECTED",
            Command::Message => "MESSAGE",
            Command::Receipt => "RECEIPT",
            Command::Error => "ERROR",
        }
    }

    /// Parses a command name. Names are case-sensitive (STOMP 1.2 "Frames and Headers").
    pub fn parse(name: &[u8]) -> Option<Command> {
        Command::ALL.into_iter().find(|c| c.as_str().as_bytes() == name)
    }

    /// Whether a client may send this command.
    pub fn is_client(self) -> bool {
        !matches!(self, Command::Connected | Command::Message | Command::Receipt | Command::Error)
    }

    /// Whether frames of this command may carry a body. STOMP 1.2 "Frame Body": only SEND,
    /// MESSAGE and ERROR frames MAY have a body; all other frames MUST NOT.
    pub fn allows_body(self) -> bool {
        matches!(self, Command::Send | Command::Message | Command::Error)
    }

    /// Whether header values of this command are escaped. STOMP 1.2 "Value Encoding": CONNECT
    /// and CONNECTED frames do not escape, for compatibility with 1.0.
    pub fn escapes_headers(self) -> bool {
        !matches!(self, Command::Connect | Command::Stomp | Command::Connected)
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A header name or value: UTF-8 text that may share the buffer it was decoded from.
pub type HeaderText = bytestring::ByteString;

/// One STOMP frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The command.
    pub command: Command,
    /// Headers in wire order, unescaped. Repeats are kept; [`Frame::header`] returns the first.
    /// A decoded header without escapes shares the bytes it was read from.
    pub headers: Vec<(HeaderText, HeaderText)>,
    /// The body (empty if there is none).
    pub body: Bytes,
}

impl Frame {
    /// A frame with no headers and no body.
    pub fn new(command: Command) -> Frame {
        Frame { command, headers: Vec::new(), body: Bytes::new() }
    }

    /// Adds a header (builder style).
    pub fn with_header(mut self, name: &str, value: &str) -> Frame {
        self.headers.push((HeaderText::from(name), HeaderText::from(value)));
        self
    }

    /// Sets the body (builder style).
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Frame {
        self.body = body.into();
        self
    }

    /// The value of header `name`. If the header is repeated, the FIRST one wins (STOMP 1.2
    /// "Repeated Header Entries").
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| &**v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_names_round_trip_and_are_case_sensitive() {
        for c in Command::ALL {
            assert_eq!(Command::parse(c.as_str().as_bytes()), Some(c));
            assert!(c.as_str().len() <= Command::MAX_LEN);
        }
        assert_eq!(Command::parse(b"send"), None);
        assert_eq!(Command::parse(b""), None);
        assert_eq!(Command::parse(b"SEND "), None);
    }

    #[test]
    fn first_repeated_header_wins() {
        let f = Frame::new(Command::Send).with_header("foo", "World").with_header("foo", "Hello");
        assert_eq!(f.header("foo"), Some("World"));
        assert_eq!(f.header("bar"), None);
    }

    #[test]
    fn body_and_escaping_rules() {
        assert!(Command::Send.allows_body() && Command::Error.allows_body());
        assert!(!Command::Subscribe.allows_body());
        assert!(!Command::Connect.escapes_headers() && !Command::Connected.escapes_headers());
        assert!(Command::Message.escapes_headers());
        assert!(Command::Ack.is_client() && !Command::Message.is_client());
    }
}
