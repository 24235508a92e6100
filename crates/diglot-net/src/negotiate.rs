//! The WebSocket subprotocol negotiator: which adapter gets a connection.
//!
//! RFC 6455 §4.2.2: the server picks at most one of the subprotocols the client offered in
//! `Sec-WebSocket-Protocol` and echoes exactly that value; it must not answer with one the
//! client did not offer. The names come from the IANA WebSocket Subprotocol Name Registry:
//! `mqtt` (MQTT 3.1.1 §6 and MQTT 5.0 §6; `mqttv3.1` is what MQTT 3.1 clients such as older
//! Paho offer) and `v10.stomp`, `v11.stomp`, `v12.stomp` (STOMP over WebSocket).
//!
//! Rules:
//! - The client's offers are read in its order of preference. The first offer that names a
//!   supported protocol family decides the family. For STOMP, the highest offered STOMP
//!   version is chosen (`v10.stomp, v12.stomp` → `v12.stomp`), as RabbitMQ Web-STOMP does.
//! - Offers are matched ignoring ASCII case, and echoed exactly as the client wrote them.
//! - A client that offers nothing gets the listener path's default protocol, if the path has
//!   one, and no `Sec-WebSocket-Protocol` in the answer.
//! - A client that offers only unknown subprotocols, or offers nothing on a path without a
//!   default, is refused with HTTP 400 and a body listing the supported names.
//!
//! This module only decides; it does not read sockets.

/// The protocol family a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// MQTT 3.1, 3.1.1 or 5.0 (the level comes from CONNECT).
    Mqtt,
    /// STOMP 1.0, 1.1 or 1.2 (the version comes from CONNECT, capped by the subprotocol).
    Stomp,
}

impl Proto {
    /// A short label for logs.
    pub fn label(self) -> &'static str {
        match self {
            Proto::Mqtt => "mqtt",
            Proto::Stomp => "stomp",
        }
    }
}

/// The subprotocol names Diglot accepts, in the order the 400 body lists them.
pub const SUPPORTED: &[&str] = &["mqtt", "mqttv3.1", "v12.stomp", "v11.stomp", "v10.stomp"];

/// The outcome of a negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Hand the connection to `proto`, echoing `echo` (exactly as offered) if set.
    Accept {
        /// The chosen family.
        proto: Proto,
        /// The offered value to echo in `Sec-WebSocket-Protocol`, if any was offered.
        echo: Option<String>,
    },
    /// Refuse with HTTP 400.
    Refuse,
}

fn classify(offer: &str) -> Option<(Proto, u8)> {
    let o = offer.to_ascii_lowercase();
    match o.as_str() {
        "mqtt" | "mqttv3.1" => Some((Proto::Mqtt, 0)),
        "v12.stomp" => Some((Proto::Stomp, 12)),
        "v11.stomp" => Some((Proto::Stomp, 11)),
        "v10.stomp" => Some((Proto::Stomp, 10)),
        _ => None,
    }
}

/// Chooses a protocol from the `Sec-WebSocket-Protocol` header values the client sent (each
/// may be a comma-separated list) and the listener path's default.
pub fn choose<'a>(offered: impl IntoIterator<Item = &'a str>, path_default: Option<Proto>) -> Choice {
    let offers: Vec<&str> =
        offered.into_iter().flat_map(|v| v.split(',')).map(str::trim).filter(|s| !s.is_empty()).collect();
    if offers.is_empty() {
        return match path_default {
            Some(proto) => Choice::Accept { proto, echo: None },
            None => Choice::Refuse,
        };
    }
    let Some(family) = offers.iter().find_map(|o| classify(o)).map(|(p, _)| p) else {
        return Choice::Refuse;
    };
    let best = offers
        .iter()
        .filter_map(|o| classify(o).filter(|(p, _)| *p == family).map(|(_, v)| (v, *o)))
        .enumerate()
        // Highest version wins; among equals, the client's earlier preference.
        .max_by(|(ia, (va, _)), (ib, (vb, _))| va.cmp(vb).then(ib.cmp(ia)))
        .map(|(_, (_, o))| o.to_string());
    Choice::Accept { proto: family, echo: best }
}

/// The plain-text body of a 400 answer.
pub fn refusal_body() -> String {
    format!(
        "Diglot could not pick a WebSocket subprotocol.\n\
         Offer one of these in Sec-WebSocket-Protocol: {}\n\
         (or connect to a path that has a default protocol, such as /mqtt or /stomp).\n",
        SUPPORTED.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(proto: Proto, echo: &str) -> Choice {
        Choice::Accept { proto, echo: Some(echo.into()) }
    }

    #[test]
    fn matrix() {
        assert_eq!(choose(["mqtt"], None), accept(Proto::Mqtt, "mqtt"));
        assert_eq!(choose(["mqttv3.1"], None), accept(Proto::Mqtt, "mqttv3.1"));
        assert_eq!(choose(["v12.stomp"], None), accept(Proto::Stomp, "v12.stomp"));
        assert_eq!(choose(["v11.stomp"], None), accept(Proto::Stomp, "v11.stomp"));
        assert_eq!(choose(["v10.stomp"], None), accept(Proto::Stomp, "v10.stomp"));
        assert_eq!(choose(["v10.stomp, v12.stomp"], None), accept(Proto::Stomp, "v12.stomp"));
        assert_eq!(choose(["v10.stomp", "v11.stomp"], None), accept(Proto::Stomp, "v11.stomp"));
        assert_eq!(choose(["chat, v11.stomp"], None), accept(Proto::Stomp, "v11.stomp"));
        assert_eq!(choose(["MQTT"], None), accept(Proto::Mqtt, "MQTT"));
        assert_eq!(choose(["mqtt, v12.stomp"], None), accept(Proto::Mqtt, "mqtt"));
        assert_eq!(choose(["v12.stomp, mqtt"], None), accept(Proto::Stomp, "v12.stomp"));
        assert_eq!(choose(["chat"], None), Choice::Refuse);
        assert_eq!(choose(["chat"], Some(Proto::Mqtt)), Choice::Refuse);
        assert_eq!(choose([], None), Choice::Refuse);
        assert_eq!(choose([" , "], None), Choice::Refuse);
        assert_eq!(choose([], Some(Proto::Mqtt)), Choice::Accept { proto: Proto::Mqtt, echo: None });
        assert_eq!(choose([], Some(Proto::Stomp)), Choice::Accept { proto: Proto::Stomp, echo: None });
    }

    #[test]
    fn refusal_lists_every_name() {
        let body = refusal_body();
        for name in SUPPORTED {
            assert!(body.contains(name));
        }
    }
}
