//! CONNECT and version negotiation.

use super::*;

#[test]
fn connect_negotiation_matrix() {
    let cases = [
        (None, Some("1.0"), "1.0"),
        (None, Some("1.1"), "1.1"),
        (None, Some("1.2"), "1.2"),
        (None, Some("1.0,1.2"), "1.2"),
        (Some("v11.stomp"), Some("1.0,1.1,1.2"), "1.1"),
        (Some("v12.stomp"), Some("1.2"), "1.2"),
        (Some("v10.stomp"), None, "1.0"),
        (None, None, "1.0"),
    ];
    for (sub, accept, want) in cases {
        let mut h = H::with(sub, Limits::default());
        let header = accept.map(|a| format!("accept-version:{a}\n")).unwrap_or_default();
        h.feed(format!("CONNECT\n{header}\n\0").as_bytes());
        let f = h.one();
        assert_eq!(f.command, Command::Connected, "{sub:?} {accept:?}");
        assert_eq!(f.header("version"), Some(want), "{sub:?} {accept:?}");
        assert_eq!(f.header("server"), Some("diglot/test"));
        assert_eq!(f.header("session"), Some("session-7"));
        assert_eq!(f.header("heart-beat").is_some(), want != "1.0");
        assert_eq!(h.s.protocol(), format!("stomp/{want}"));
        assert!(h.actions().is_empty());
        assert!(h.s.can_deliver());
    }
}

#[test]
fn no_common_version_is_refused_with_the_supported_list() {
    for (sub, accept) in [(None, "2.0"), (Some("v11.stomp"), "1.2"), (Some("v10.stomp"), "1.1,1.2")] {
        let mut h = H::with(sub, Limits::default());
        assert_eq!(h.s.protocol(), "stomp");
        h.feed(format!("CONNECT\naccept-version:{accept}\n\n\0").as_bytes());
        let (f, close) = h.expect_error("unsupported STOMP version");
        assert_eq!(f.header("version"), Some("1.0,1.1,1.2"));
        assert!(matches!(close, CloseReason::ConnectRefused(_)), "{close:?}");
        assert_eq!(h.s.protocol(), "stomp");
    }
}

#[test]
fn stomp_command_and_missing_host_are_accepted() {
    let mut h = H::new();
    h.feed(b"STOMP\naccept-version:1.2\nlogin:guest\npasscode:guest\n\n\0");
    assert_eq!(h.one().header("version"), Some("1.2"));
}

#[test]
fn client_id_is_claimed_only_when_sent() {
    let mut h = H::new();
    h.feed(b"CONNECT\naccept-version:1.2\nclient-id:abc\n\n\0");
    h.one();
    assert!(matches!(h.actions().as_slice(), [Action::ClaimClientId(id)] if id == "abc"));
    assert_eq!(h.s.client_id(), Some("abc"));

    let mut h = H::with(None, Limits { max_client_id_bytes: 3, ..Limits::default() });
    h.feed(b"CONNECT\naccept-version:1.2\nclient-id:abcd\n\n\0");
    let (_, close) = h.expect_error("client-id too long");
    assert!(matches!(close, CloseReason::ConnectRefused(_)));
}

#[test]
fn frames_before_connect_are_refused() {
    for frame in
        [&b"SEND\ndestination:/topic/a\n\nx\0"[..], b"SUBSCRIBE\nid:1\ndestination:/topic/a\n\n\0", b"DISCONNECT\n\n\0"]
    {
        let mut h = H::new();
        h.feed(frame);
        let (_, close) = h.expect_error("not connected");
        assert!(matches!(close, CloseReason::ProtocolError(_)));
    }
}

#[test]
fn second_connect_is_an_error() {
    let mut h = H::new();
    h.connect("1.2");
    h.feed(b"CONNECT\naccept-version:1.2\n\n\0");
    h.expect_error("already connected");
}

#[test]
fn bad_heart_beat_header_is_an_error() {
    let mut h = H::new();
    h.feed(b"CONNECT\naccept-version:1.2\nheart-beat:x\n\n\0");
    h.expect_error("invalid heart-beat header");
}
