//! SEND, SUBSCRIBE, UNSUBSCRIBE, receipts and destinations.

use super::*;

#[test]
fn subscribe_send_and_receipts() {
    let mut h = H::new();
    h.connect("1.2");
    h.feed(b"SUBSCRIBE\nid:s1\ndestination:/topic/a/+\nreceipt:r1\n\n\0");
    match h.actions().as_slice() {
        [Action::Subscribe { filter, qos, no_local, merge, .. }] => {
            assert_eq!(filter, &Filter::new("a/+").unwrap());
            assert_eq!((*qos, *no_local, *merge), (Qos::AtLeastOnce, false, false));
        }
        other => panic!("{other:?}"),
    }
    let r = h.one();
    assert_eq!((r.command, r.header("receipt-id")), (Command::Receipt, Some("r1")));

    // SEND without receipt: no token, nothing written.
    h.feed(b"SEND\ndestination:/topic/a/b\n\nhello\0");
    let (msg, token) = publish(h.actions().remove(0));
    assert_eq!(token, None);
    assert_eq!(msg.topic.as_str(), "a/b");
    assert_eq!(&msg.payload[..], b"hello");
    assert_eq!(msg.qos, Qos::AtMostOnce);
    assert_eq!(msg.origin, Some(7));
    assert!(msg.props.is_none());
    assert!(h.frames().is_empty());

    // SEND with receipt: RECEIPT only once the publish is done.
    h.feed(b"SEND\ndestination:/topic/a/b\npersistent:true\nreceipt:r2\n\n\0");
    let (msg, token) = publish(h.actions().remove(0));
    assert_eq!(msg.qos, Qos::AtLeastOnce);
    assert!(h.frames().is_empty());
    h.s.on_publish_done(token.unwrap(), Ok(()), &mut h.out, &mut h.actions);
    assert_eq!(h.one().header("receipt-id"), Some("r2"));

    h.feed(b"SEND\ndestination:/topic/a/b\nreceipt:r3\n\n\0");
    let (_, token) = publish(h.actions().remove(0));
    h.s.on_publish_done(token.unwrap(), Err(PublishError::Refused("store full".into())), &mut h.out, &mut h.actions);
    let (f, _) = h.expect_error("publish refused");
    assert_eq!(f.header("receipt-id"), Some("r3"));
    assert_eq!(&f.body[..], b"store full");
}

/// stomp.py writes a Python `True` header value as `True`: boolean headers ignore case, as
/// RabbitMQ's do, so `persistent=True` is not silently QoS 0.
#[test]
fn boolean_headers_ignore_case() {
    let mut h = H::new();
    h.connect("1.2");
    for (value, qos) in [("True", Qos::AtLeastOnce), ("TRUE", Qos::AtLeastOnce), ("False", Qos::AtMostOnce)] {
        h.feed(format!("SEND\ndestination:/topic/a\npersistent:{value}\n\nx\0").as_bytes());
        let (msg, _) = publish(h.actions().remove(0));
        assert_eq!(msg.qos, qos, "{value}");
        assert!(msg.props.is_none(), "persistent is not a user property");
    }
}

#[test]
fn send_headers_become_properties() {
    let mut h = H::new();
    h.connect("1.2");
    h.feed(
        b"SEND\ndestination:/topic/t\ncontent-type:text/plain\nreply-to:/topic/resp/1\ncorrelation-id:c-9\n\
x-a:1\nx-a:2\nx\\cb:v\\nw\ncontent-type:ignored\ncontent-length:2\n\nhi\0",
    );
    let (msg, _) = publish(h.actions().remove(0));
    let p = msg.props.as_deref().unwrap();
    assert_eq!(p.content_type.as_deref(), Some("text/plain"));
    assert_eq!(p.response_topic.as_deref(), Some("resp/1"));
    assert_eq!(p.correlation_data.as_deref(), Some(&b"c-9"[..]));
    assert_eq!(p.user, vec![("x-a".to_string(), "1".to_string()), ("x:b".to_string(), "v\nw".to_string())]);

    h.feed(b"SEND\ndestination:/topic/t\nreply-to:/exchange/x\nexpires:0\n\n\0");
    let (msg, _) = publish(h.actions().remove(0));
    assert_eq!(msg.props.unwrap().response_topic.as_deref(), Some("/exchange/x"));
    assert_eq!(msg.expires_at, None);
}

#[test]
fn destination_errors() {
    let cases = [
        ("SUBSCRIBE\nid:1\ndestination:/topic/$temp/1-x/r\nreceipt:q\n\n\0", "private destination"),
        ("SUBSCRIBE\nid:1\ndestination:/temp-queue/r/#\n\n\0", "invalid destination"),
        ("SEND\ndestination:/temp-queue/+\n\n\0", "invalid destination"),
        ("SEND\ndestination:/topic/t\nreply-to:/temp-queue/a/+\n\n\0", "invalid destination"),
        ("SEND\ndestination:/topic/t\nexpires:tomorrow\n\n\0", "invalid expires header"),
        ("SEND\ndestination:/queue/\n\n\0", "invalid destination"),
        ("SEND\ndestination:/queue/a/+\n\n\0", "invalid destination"),
        ("SUBSCRIBE\nid:1\ndestination:/queue/#\n\n\0", "invalid destination"),
        ("SUBSCRIBE\nid:1\ndestination:/topic/$queue/+\n\n\0", "invalid destination"),
        ("SEND\ndestination:/exchange/x\n\n\0", "unknown destination"),
        ("SEND\ndestination:/topic/a/#\n\n\0", "invalid destination"),
        ("SUBSCRIBE\nid:1\ndestination:/topic/a#\n\n\0", "invalid destination"),
        ("SEND\nreceipt:q\n\n\0", "missing header"),
        ("SUBSCRIBE\ndestination:/topic/a\n\n\0", "missing header"),
        ("SUBSCRIBE\nid:1\ndestination:/topic/a\nack:sometimes\n\n\0", "invalid ack mode"),
    ];
    for (frame, message) in cases {
        let mut h = H::new();
        h.connect("1.2");
        h.feed(frame.as_bytes());
        let (f, close) = h.expect_error(message);
        assert!(matches!(close, CloseReason::ProtocolError(_)));
        if frame.contains("receipt:q") {
            assert_eq!(f.header("receipt-id"), Some("q"));
        }
        if message == "private destination" {
            assert!(String::from_utf8_lossy(&f.body).contains("/temp-queue/"));
        }
    }
}

#[test]
fn subscription_ids_and_limits() {
    let mut h = H::with(None, Limits { max_subscriptions: 2, ..Limits::default() });
    h.connect("1.2");
    let a = h.subscribe("a", "/topic/x", "auto");
    let b = h.subscribe("b", "/topic/x", "auto");
    assert_ne!(a, b);
    h.feed(b"UNSUBSCRIBE\nid:a\nreceipt:u\n\n\0");
    assert!(
        matches!(h.actions().as_slice(), [Action::Unsubscribe { sub, filter }] if *sub == a && filter.as_str() == "x")
    );
    assert_eq!(h.one().header("receipt-id"), Some("u"));
    h.subscribe("c", "/topic/y", "auto");
    h.feed(b"SUBSCRIBE\nid:d\ndestination:/topic/z\n\n\0");
    let (_, close) = h.expect_error("too many subscriptions");
    assert!(matches!(close, CloseReason::LimitExceeded(_)));

    let mut h = H::new();
    h.connect("1.2");
    h.subscribe("a", "/topic/x", "auto");
    h.feed(b"SUBSCRIBE\nid:a\ndestination:/topic/y\n\n\0");
    h.expect_error("duplicate subscription id");

    let mut h = H::new();
    h.connect("1.2");
    h.feed(b"UNSUBSCRIBE\nid:nope\n\n\0");
    h.expect_error("unknown subscription");
}

#[test]
fn stomp_1_0_subscription_id_defaults_to_the_destination() {
    let mut h = H::new();
    h.connect("1.0");
    h.feed(b"SUBSCRIBE\ndestination:/topic/x\n\n\0");
    let sub = match h.actions().pop() {
        Some(Action::Subscribe { sub, .. }) => sub,
        other => panic!("{other:?}"),
    };
    assert_eq!(h.deliver(sub, message(1, "x", b"")).header("subscription"), Some("/topic/x"));
    h.feed(b"UNSUBSCRIBE\ndestination:/topic/x\n\n\0");
    assert!(matches!(h.actions().as_slice(), [Action::Unsubscribe { .. }]));
}

#[test]
fn frame_limits_close_with_limit_exceeded() {
    let mut h = H::with(None, Limits { max_frame_bytes: 128, ..Limits::default() });
    h.connect("1.2");
    let mut big = b"SEND\ndestination:/topic/a\n\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', 200));
    h.feed(&big);
    let (f, close) = h.expect_error("frame too large");
    assert!(matches!(close, CloseReason::LimitExceeded(_)));
    assert!(String::from_utf8_lossy(&f.body).contains("128"));
}

#[test]
fn byte_at_a_time_input_gives_the_same_result() {
    let input: &[u8] =
        b"CONNECT\r\naccept-version:1.2\r\n\r\n\0\n\nSUBSCRIBE\nid:1\ndestination:/topic/a\nreceipt:r\n\n\0\
SEND\ndestination:/topic/a\ncontent-length:3\n\na\0b\0";
    let mut whole = H::new();
    whole.feed(input);
    let mut bytewise = H::new();
    for b in input {
        bytewise.feed(std::slice::from_ref(b));
    }
    assert_eq!(whole.chunks(), bytewise.chunks());
    let summary = |h: &mut H| -> Vec<String> {
        h.actions()
            .into_iter()
            .map(|a| match a {
                Action::Publish { msg, .. } => format!("publish {} {:?}", msg.topic, msg.payload),
                other => format!("{other:?}"),
            })
            .collect()
    };
    let (a, b) = (summary(&mut whole), summary(&mut bytewise));
    assert_eq!(a, b);
    assert_eq!(a.len(), 2);
    assert_eq!(a[1], "publish a b\"a\\0b\"");
}
