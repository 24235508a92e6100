//! Heart-beats and the CONNECT timeout.

use super::*;

#[test]
fn connect_timeout() {
    let mut h = H::new();
    assert_eq!(h.s.next_timer(), Some(h.at(10_000)));
    let early = h.at(9_999);
    h.s.on_timer(early, &mut h.out, &mut h.actions);
    assert!(h.actions().is_empty());
    let late = h.at(10_000);
    h.s.on_timer(late, &mut h.out, &mut h.actions);
    let (_, close) = h.expect_error("CONNECT timeout");
    assert_eq!(close, CloseReason::HandshakeTimeout);
}

#[test]
fn heart_beats_are_negotiated_sent_and_enforced() {
    let mut h = H::new();
    h.feed(b"CONNECT\naccept-version:1.2\nheart-beat:5000,20000\n\n\0");
    // server sends every max(10000, 20000); expects the client every max(5000, 10000).
    assert_eq!(h.one().header("heart-beat"), Some("20000,10000"));
    assert_eq!(h.s.next_timer(), Some(h.at(15_000)));

    // Traffic at 9 s moves the receive deadline to 24 s; the beat is due at 18 s, a tenth of
    // the 20 s early, so that it arrives within them.
    let t = h.at(9_000);
    h.feed_at(b"\n", t);
    assert_eq!(h.s.next_timer(), Some(h.at(18_000)));
    let t = h.at(18_000);
    h.s.on_timer(t, &mut h.out, &mut h.actions);
    assert_eq!(h.chunks(), vec![Bytes::from_static(b"\n")]);
    h.s.on_sent(t);
    assert_eq!(h.s.next_timer(), Some(h.at(24_000)));
    let t = h.at(24_000);
    h.s.on_timer(t, &mut h.out, &mut h.actions);
    let (_, close) = h.expect_error("heart-beat timeout");
    assert_eq!(close, CloseReason::KeepAliveTimeout);
}

#[test]
fn sent_traffic_postpones_heart_beats() {
    let mut h = H::new();
    h.feed(b"CONNECT\naccept-version:1.2\nheart-beat:0,1000\n\n\0");
    assert_eq!(h.one().header("heart-beat"), Some("10000,0"));
    assert_eq!(h.s.next_timer(), Some(h.at(9_000)));
    h.s.on_sent(h.at(5_000));
    assert_eq!(h.s.next_timer(), Some(h.at(14_000)));
}

#[test]
fn no_heart_beats_in_1_0_or_when_declined() {
    let mut h = H::new();
    h.connect("1.0");
    assert_eq!(h.s.next_timer(), None);
    let mut h = H::new();
    assert_eq!(h.connect("1.2").header("heart-beat"), Some("0,0"));
    assert_eq!(h.s.next_timer(), None);
}
