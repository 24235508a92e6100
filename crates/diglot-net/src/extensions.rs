//! Choosing one permessage-deflate offer from `Sec-WebSocket-Extensions` (RFC 7692 §5, §7).
//!
//! A client may offer several configurations, best first, in one header or several
//! (`permessage-deflate; server_max_window_bits=10, permessage-deflate`). The server accepts
//! at most one and must decline an offer with parameters it does not know or cannot honour,
//! then consider the next (§5.1). yawc reads only a single offer from the first header line, so
//! the listener picks the offer here and hands yawc just that one.
//!
//! An offer is declined when it has an unknown parameter, a parameter twice, a value where
//! none belongs, or a window-bits value outside 8..=15 (§7.1.2); and when it asks for
//! `server_max_window_bits=8`, which zlib cannot produce (it writes 9-bit windows instead; the
//! RFC lets a server decline it, §7.1.2.1). `client_max_window_bits=8` is accepted, but the
//! parameter is dropped from the offer, so the answer does not name it: the server inflates
//! with its default 15-bit window, which reads what an 8-bit window wrote, and need not repeat
//! a value zlib cannot produce (an answer may only name the offered value or a smaller one,
//! §7.1.2.2). A bare `client_max_window_bits` (browsers send it) is dropped the same way, so
//! the client compresses with its full 15-bit window rather than the 9 bits yawc would name (a
//! choice §7.1.2.2 leaves to the server). Other extensions are ignored; the server supports
//! none.

/// The one offer to negotiate, normalised (`permessage-deflate; key=value; …`, quotes removed),
/// or `None` if no permessage-deflate offer is acceptable.
pub(crate) fn choose_deflate_offer<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<String> {
    headers.into_iter().flat_map(split_offers).find_map(acceptable)
}

/// Splits a header value into its comma-separated offers, respecting quoted strings.
fn split_offers(value: &str) -> Vec<&str> {
    let mut offers = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                offers.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    offers.push(&value[start..]);
    offers
}

fn window_bits(value: &str) -> Option<u8> {
    // RFC 7692 §7.1.2: 1*DIGIT without leading zeros, 8..15.
    if value.is_empty() || value.len() > 2 || value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|b| (8..=15).contains(b))
}

fn acceptable(offer: &str) -> Option<String> {
    let mut params = offer.split(';').map(str::trim);
    if !params.next()?.eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    let mut out = String::from("permessage-deflate");
    let mut seen: Vec<String> = Vec::new();
    for param in params {
        if param.is_empty() {
            return None;
        }
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => {
                let v = v.trim();
                let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
                (k.trim().to_ascii_lowercase(), Some(v))
            }
            None => (param.to_ascii_lowercase(), None),
        };
        if seen.contains(&key) {
            return None;
        }
        match (key.as_str(), value) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => {
                out.push_str("; ");
                out.push_str(&key);
            }
            ("server_max_window_bits", Some(v)) => match window_bits(v)? {
                8 => return None,
                bits => out.push_str(&format!("; server_max_window_bits={bits}")),
            },
            // Bare or 8: dropped, so the answer does not name it (see the module's notes: yawc
            // would answer either with 9 bits).
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(v)) => match window_bits(v)? {
                8 => {}
                bits => out.push_str(&format!("; client_max_window_bits={bits}")),
            },
            _ => return None,
        }
        seen.push(key);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(h: &[&str]) -> Option<String> {
        choose_deflate_offer(h.iter().copied())
    }

    #[test]
    fn a_single_offer_passes_through() {
        assert_eq!(pick(&["permessage-deflate"]).as_deref(), Some("permessage-deflate"));
        // A bare client_max_window_bits is left unanswered: the client keeps 15 bits.
        assert_eq!(pick(&["permessage-deflate; client_max_window_bits"]).as_deref(), Some("permessage-deflate"));
        assert_eq!(
            pick(&["permessage-deflate;server_no_context_takeover; server_max_window_bits=10"]).as_deref(),
            Some("permessage-deflate; server_no_context_takeover; server_max_window_bits=10")
        );
    }

    #[test]
    fn the_first_acceptable_offer_of_a_list_wins() {
        // Autobahn 13.7.x: an offer list, best first.
        assert_eq!(
            pick(&["permessage-deflate; server_max_window_bits=9, permessage-deflate; client_no_context_takeover, permessage-deflate"]).as_deref(),
            Some("permessage-deflate; server_max_window_bits=9")
        );
        assert_eq!(
            pick(&["permessage-deflate; server_max_window_bits=8, permessage-deflate; client_no_context_takeover"])
                .as_deref(),
            Some("permessage-deflate; client_no_context_takeover")
        );
        assert_eq!(
            pick(&["x-webkit-deflate-frame", "permessage-deflate; foo=1", "permessage-deflate"]).as_deref(),
            Some("permessage-deflate")
        );
    }

    #[test]
    fn invalid_offers_are_declined() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; unknown",
            "permessage-deflate;",
            "deflate-stream",
            "",
        ] {
            assert_eq!(pick(&[bad]), None, "{bad}");
        }
    }

    #[test]
    fn quoted_values_and_an_eight_bit_client_window() {
        assert_eq!(
            pick(&["permessage-deflate; client_max_window_bits=\"10\""]).as_deref(),
            Some("permessage-deflate; client_max_window_bits=10")
        );
        // Handshake audit: passed on bare, it was answered with 9, larger than offered.
        assert_eq!(pick(&["permessage-deflate; client_max_window_bits=8"]).as_deref(), Some("permessage-deflate"));
        assert_eq!(
            pick(&["permessage-deflate; client_max_window_bits=8; client_no_context_takeover"]).as_deref(),
            Some("permessage-deflate; client_no_context_takeover")
        );
    }
}
