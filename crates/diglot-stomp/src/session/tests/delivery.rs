//! MESSAGE formatting and the ack modes.

use super::*;

#[test]
fn delivery_formatting_1_2_escapes() {
    let mut h = H::new();
    h.connect("1.2");
    let sub = h.subscribe("s:1", "/topic/#", "auto");
    let mut m = message(42, "a b/ü.x", b"bin\0ary");
    m.qos = Qos::AtLeastOnce;
    m.props = Some(Box::new(Props {
        content_type: Some("application/json".into()),
        response_topic: Some("resp/1".into()),
        correlation_data: Some(Bytes::from_static(b"c1")),
        utf8_payload: false,
        user: vec![("k:1".into(), "v\nw\\z".into()), ("destination".into(), "spoof".into())],
    }));
    h.deliver(sub, m.clone());
    let chunk = {
        let d = Delivery::new(Arc::new(m.clone()), sub, m.qos);
        let now = h.t0;
        h.s.on_delivery(d, now, &mut h.out);
        h.chunks().pop().unwrap()
    };
    assert_eq!(
        &chunk[..],
        &b"MESSAGE\nsubscription:s\\c1\nmessage-id:42\ndestination:/topic/a b/\xc3\xbc.x\npersistent:true\n\
content-type:application/json\nreply-to:/topic/resp/1\ncorrelation-id:c1\nk\\c1:v\\nw\\\\z\ncontent-length:7\n\nbin\0ary\0"[..]
    );
}

#[test]
fn delivery_formatting_1_0_is_not_escaped() {
    let mut h = H::new();
    h.connect("1.0");
    let sub = h.subscribe("s", "/topic/a", "client");
    let mut m = message(5, "a", b"x");
    m.props = Some(Box::new(Props { user: vec![("k".into(), "a\\b:c".into())], ..Props::default() }));
    let d = Delivery::new(Arc::new(m.clone()), sub, m.qos);
    let now = h.t0;
    h.s.on_delivery(d, now, &mut h.out);
    let chunk = h.chunks().pop().unwrap();
    // No `ack` header before 1.2; no escaping in 1.0.
    assert_eq!(
        &chunk[..],
        &b"MESSAGE\nsubscription:s\nmessage-id:5\ndestination:/topic/a\nk:a\\b:c\ncontent-length:1\n\nx\0"[..]
    );
}

#[test]
fn client_ack_is_cumulative_and_bounds_the_window() {
    let mut h = H::with(None, Limits { max_inflight: 3, ..Limits::default() });
    h.connect("1.2");
    let sub = h.subscribe("s", "/topic/a", "client");
    let acks: Vec<String> =
        (1..=3).map(|i| h.deliver(sub, message(i, "a", b"x")).header("ack").expect("ack header").to_owned()).collect();
    assert!(!h.s.can_deliver());
    h.feed(format!("ACK\nid:{}\nreceipt:k\n\n\0", acks[1]).as_bytes());
    assert_eq!(h.one().header("receipt-id"), Some("k"));
    assert!(h.s.can_deliver());
    // Message 1 was covered by the cumulative ACK of message 2.
    h.feed(format!("ACK\nid:{}\n\n\0", acks[0]).as_bytes());
    h.expect_error("unknown message");
}

#[test]
fn client_individual_ack_and_nack() {
    let mut h = H::new();
    h.connect("1.2");
    let sub = h.subscribe("s", "/topic/a", "client-individual");
    let acks: Vec<String> =
        (1..=3).map(|i| h.deliver(sub, message(i, "a", b"x")).header("ack").unwrap().to_owned()).collect();
    h.feed(format!("ACK\nid:{}\n\n\0", acks[1]).as_bytes());
    h.feed(format!("NACK\nid:{}\n\n\0", acks[0]).as_bytes());
    h.feed(format!("ACK\nid:{}\n\n\0", acks[2]).as_bytes());
    assert!(h.frames().is_empty());
    h.feed(format!("ACK\nid:{}\n\n\0", acks[1]).as_bytes());
    h.expect_error("unknown message");
}

#[test]
fn auto_subscriptions_have_no_ack_and_cannot_be_acked() {
    let mut h = H::new();
    h.connect("1.2");
    let sub = h.subscribe("s", "/topic/a", "auto");
    assert_eq!(h.deliver(sub, message(1, "a", b"")).header("ack"), None);
    h.feed(b"ACK\nid:1\n\n\0");
    h.expect_error("unknown message");
}

#[test]
fn stomp_1_1_acks_by_message_id_and_subscription() {
    let mut h = H::new();
    h.connect("1.1");
    let s1 = h.subscribe("s1", "/topic/a", "client-individual");
    let s2 = h.subscribe("s2", "/topic/#", "client-individual");
    h.deliver(s1, message(9, "a", b""));
    h.deliver(s2, message(9, "a", b""));
    h.feed(b"ACK\nmessage-id:9\nsubscription:s1\n\n\0");
    h.feed(b"NACK\nmessage-id:9\nsubscription:s2\n\n\0");
    assert!(h.frames().is_empty());
    h.feed(b"ACK\nmessage-id:9\nsubscription:s1\n\n\0");
    h.expect_error("unknown message");
}

#[test]
fn stomp_1_0_acks_by_message_id_and_has_no_nack() {
    let mut h = H::new();
    h.connect("1.0");
    let s = h.subscribe("s", "/topic/a", "client");
    h.deliver(s, message(3, "a", b""));
    h.feed(b"ACK\nmessage-id:3\n\n\0");
    assert!(h.frames().is_empty() && h.actions().is_empty());
    h.deliver(s, message(4, "a", b""));
    h.feed(b"NACK\nmessage-id:4\n\n\0");
    h.expect_error("unexpected frame");
}

#[test]
fn deliveries_for_removed_subscriptions_are_dropped() {
    let mut h = H::new();
    h.connect("1.2");
    let sub = h.subscribe("s", "/topic/a", "client");
    h.feed(b"UNSUBSCRIBE\nid:s\n\n\0");
    let d = Delivery::new(Arc::new(message(1, "a", b"")), sub, Qos::AtMostOnce);
    let now = h.t0;
    h.s.on_delivery(d, now, &mut h.out);
    assert!(h.frames().is_empty());
    assert!(h.s.can_deliver());
}

#[test]
fn not_deliverable_before_connect() {
    let h = H::new();
    assert!(!h.s.can_deliver());
}

/// One message shared by several subscribers: each gets exactly the frame it would get alone,
/// whether it copies the whole shared frame (same id, no `ack`), or puts its own
/// `subscription`, `message-id` and `ack` before the shared rest.
#[test]
fn a_shared_message_is_the_same_frame_as_one_encoded_alone_for_every_subscription() {
    let mut m = message(77, "room/1", b"hello");
    m.props = Some(Box::new(Props {
        content_type: Some("text/plain".into()),
        user: vec![("k".into(), "v".into())],
        ..Props::default()
    }));
    // Subscriptions in delivery order: the first one's frame becomes the shared one.
    let subs =
        [("sub-0", "auto"), ("sub-0", "auto"), ("sub-0", "client-individual"), ("x:y", "auto"), ("other", "client")];
    let shared = Arc::new(m.clone());
    let mut holders = Vec::new();
    for (id, ack) in subs {
        let alone = {
            let mut h = H::new();
            h.connect("1.2");
            let sub = h.subscribe(id, "/topic/room/+", ack);
            let now = h.t0;
            // A message of its own: not shared, encoded straight into the output.
            h.s.on_delivery(Delivery::new(Arc::new(m.clone()), sub, m.qos), now, &mut h.out);
            h.chunks().pop().unwrap()
        };
        let mut h = H::new();
        h.connect("1.2");
        let sub = h.subscribe(id, "/topic/room/+", ack);
        let now = h.t0;
        h.s.on_delivery(Delivery::new(shared.clone(), sub, m.qos), now, &mut h.out);
        let got = h.chunks().pop().unwrap();
        assert_eq!(got, alone, "subscription {id} ({ack})");
        assert!(shared.encoded.get(diglot_core::WireSlot::Stomp12).is_some());
        holders.push(h);
        // Over a WebSocket without compression, the same frame behind its own header.
        let mut h = H::new();
        h.connect("1.2");
        let sub = h.subscribe(id, "/topic/room/+", ack);
        h.chunks();
        h.out.set_ws_framing(true);
        let now = h.t0;
        h.s.on_delivery(Delivery::new(shared.clone(), sub, m.qos), now, &mut h.out);
        let mut framed = bytes::BytesMut::new();
        h.out.take_ws_frames(&mut framed);
        let (header, head) = diglot_core::ws_frame_header(0x1, alone.len());
        assert_eq!(&framed[..head], &header[..head], "subscription {id} ({ack})");
        assert_eq!(&framed[head..], &alone[..], "subscription {id} ({ack})");
        holders.push(h);
    }
    let kept = shared.encoded.get(diglot_core::WireSlot::Stomp12).unwrap();
    let frame = &kept[diglot_core::ws_header_len_of(kept)..];
    assert_eq!(kept[..2], [0x81, frame.len() as u8], "kept behind a text frame's header");
    assert!(std::str::from_utf8(frame).unwrap().starts_with("MESSAGE\nsubscription:sub-0\nmessage-id:77\n"));
}
