//! Durable delivery: `/queue/` destinations, durable topic subscriptions, redelivery headers,
//! ACK / NACK of store entries, and store publish errors.

use super::*;

/// A session connected with STOMP `version`, `client-id` c1 (unless `None`), and
/// `max_inflight` 10.
fn connected(version: &str, client_id: Option<&str>) -> H {
    let mut h = H::with(None, Limits { max_inflight: 10, ..Limits::default() });
    let cid = client_id.map(|c| format!("client-id:{c}\n")).unwrap_or_default();
    h.feed(format!("CONNECT\naccept-version:{version}\nhost:/\n{cid}\n\0").as_bytes());
    assert_eq!(h.one().command, Command::Connected);
    h.actions();
    h
}

/// Feeds a SUBSCRIBE and returns its Bind and Consume, checked to name the same queue.
fn bind_consume(h: &mut H, frame: &str) -> (String, Filter, SubId, u16, bool) {
    h.feed(frame.as_bytes());
    match <[Action; 2]>::try_from(h.actions()) {
        Ok(
            [Action::Bind { queue, filter, qos: Qos::AtLeastOnce }, Action::Consume { queue: q2, sub, prefetch, auto_ack }],
        ) => {
            assert_eq!(queue, q2);
            (queue, filter, sub, prefetch, auto_ack)
        }
        other => panic!("expected Bind + Consume, got {other:?}"),
    }
}

fn acks(actions: Vec<Action>) -> Vec<(u64, Option<bool>)> {
    actions
        .into_iter()
        .map(|a| match a {
            Action::Ack(r) => (r.seq, None),
            Action::Nack { at, requeue } => (at.seq, Some(requeue)),
            other => panic!("expected Ack or Nack, got {other:?}"),
        })
        .collect()
}

fn ack_header(f: &Frame) -> String {
    f.header("ack").expect("ack header").to_owned()
}

#[test]
fn queue_subscribe_send_and_unsubscribe() {
    let mut h = connected("1.2", None);
    let (queue, filter, sub, prefetch, auto_ack) = bind_consume(
        &mut h,
        "SUBSCRIBE\nid:s\ndestination:/queue/jobs\nack:client-individual\nprefetch-count:5\nreceipt:r\n\n\0",
    );
    assert_eq!(queue, "queue/jobs");
    assert_eq!(queue, diglot_core::named_queue("jobs"));
    assert_eq!(filter, Filter::new(&diglot_core::queue_topic("jobs")).unwrap());
    assert_eq!((prefetch, auto_ack), (5, false));
    assert_eq!(h.one().header("receipt-id"), Some("r"));

    // SEND to a queue is QoS 1 without `persistent`, and `$queue/<name>` is its topic.
    // Without a receipt it still carries a token, so a store refusal can be reported; its
    // success writes nothing.
    h.feed(b"SEND\ndestination:/queue/jobs\n\nwork\0");
    let (msg, token) = publish(h.actions().remove(0));
    assert_eq!((msg.topic.as_str(), msg.qos), ("$queue/jobs", Qos::AtLeastOnce));
    assert!(msg.props.is_none());
    h.s.on_publish_done(token.expect("a bare token"), Ok(()), &mut h.out, &mut h.actions);
    assert!(h.frames().is_empty() && h.actions().is_empty());
    // With a receipt, the RECEIPT waits for the driver (the store).
    h.feed(b"SEND\ndestination:/queue/jobs\nreceipt:s1\n\n\0");
    let (_, token) = publish(h.actions().remove(0));
    assert!(h.frames().is_empty());
    h.s.on_publish_done(token.unwrap(), Ok(()), &mut h.out, &mut h.actions);
    assert_eq!(h.one().header("receipt-id"), Some("s1"));

    // UNSUBSCRIBE detaches the consumer; the queue stays, even if asked durable:true.
    h.feed(b"UNSUBSCRIBE\nid:s\ndurable:true\nreceipt:u\n\n\0");
    match h.actions().as_slice() {
        [Action::Unconsume { queue, sub: s }] => assert_eq!((queue.as_str(), *s), ("queue/jobs", sub)),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.one().header("receipt-id"), Some("u"));
}

#[test]
fn topic_dollar_queue_is_the_same_queue() {
    let mut h = connected("1.2", None);
    // ack:auto: the driver deletes each entry on hand-off; no prefetch-count: max_inflight.
    let (queue, filter, _, prefetch, auto_ack) =
        bind_consume(&mut h, "SUBSCRIBE\nid:s\ndestination:/topic/$queue/jobs\n\n\0");
    assert_eq!((queue.as_str(), filter.as_str(), prefetch, auto_ack), ("queue/jobs", "$queue/jobs", 10, true));
    // `durable:true` on a queue changes nothing: a queue is durable already.
    let (queue, ..) = bind_consume(&mut h, "SUBSCRIBE\nid:t\ndestination:/queue/jobs\ndurable:true\n\n\0");
    assert_eq!(queue, "queue/jobs");
    h.feed(b"SEND\ndestination:/topic/$queue/jobs\n\n\0");
    let (msg, token) = publish(h.actions().remove(0));
    assert_eq!((msg.topic.as_str(), msg.qos), ("$queue/jobs", Qos::AtLeastOnce));
    h.done(token);
    // A plain topic subscription cannot watch queues with wildcards.
    h.feed(b"SUBSCRIBE\nid:w\ndestination:/topic/$queue/#\n\n\0");
    h.expect_error("invalid destination");
}

#[test]
fn prefetch_count_is_checked() {
    for (value, ok) in [
        ("1", Some(1)),
        ("10", Some(10)),
        ("0", None),
        ("11", None),
        ("-1", None),
        ("x", None),
        ("", None),
        ("+5", None),
    ] {
        let mut h = connected("1.2", Some("c1"));
        let frame = format!("SUBSCRIBE\nid:s\ndestination:/queue/q\nack:client\nprefetch-count:{value}\n\n\0");
        match ok {
            Some(n) => assert_eq!(bind_consume(&mut h, &frame).3, n, "{value:?}"),
            None => {
                h.feed(frame.as_bytes());
                let (f, close) = h.expect_error("invalid prefetch-count");
                assert!(String::from_utf8_lossy(&f.body).contains("1 to 10"));
                assert!(matches!(close, CloseReason::ProtocolError(_)));
            }
        }
    }
    // Durable topic subscriptions take it too.
    let mut h = connected("1.2", Some("c1"));
    let frame = "SUBSCRIBE\nid:d\ndestination:/topic/a\ndurable:true\nprefetch-count:3\n\n\0";
    assert_eq!(bind_consume(&mut h, frame).3, 3);
    h.feed(b"SUBSCRIBE\nid:e\ndestination:/topic/a\npersistent:true\nprefetch-count:99\n\n\0");
    h.expect_error("invalid prefetch-count");
    // A plain topic subscription has no consumer window: the header is ignored there.
    let mut h = connected("1.2", None);
    h.subscribe("t", "/topic/a\nprefetch-count:0", "client");
}

#[test]
fn durable_topic_subscriptions() {
    let mut h = connected("1.2", Some("c1"));
    let (queue, filter, sub, prefetch, auto_ack) =
        bind_consume(&mut h, "SUBSCRIBE\nid:d1\ndestination:/topic/a/+\nack:client\ndurable:true\n\n\0");
    assert_eq!(queue, "$durable/c1/d1");
    assert_eq!(queue, diglot_core::durable_subscription_queue("c1", "d1"));
    assert_eq!((filter.as_str(), prefetch, auto_ack), ("a/+", 10, false));

    // A plain UNSUBSCRIBE detaches; the subscription's queue keeps collecting.
    h.feed(b"UNSUBSCRIBE\nid:d1\n\n\0");
    match h.actions().as_slice() {
        [Action::Unconsume { queue, sub: s }] => assert_eq!((queue.as_str(), *s), ("$durable/c1/d1", sub)),
        other => panic!("{other:?}"),
    }

    // `persistent:true` is accepted as RabbitMQ does; UNSUBSCRIBE with it deletes the queue.
    let (queue, filter, sub, _, auto_ack) =
        bind_consume(&mut h, "SUBSCRIBE\nid:d1\ndestination:/topic/#\npersistent:true\n\n\0");
    assert_eq!((queue.as_str(), filter.as_str(), auto_ack), ("$durable/c1/d1", "#", true));
    h.feed(b"UNSUBSCRIBE\nid:d1\npersistent:true\nreceipt:x\n\n\0");
    match h.actions().as_slice() {
        [Action::Unconsume { queue, sub: s }, Action::DeleteQueue(d)] => {
            assert_eq!((queue.as_str(), *s, d.as_str()), ("$durable/c1/d1", sub, "$durable/c1/d1"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.one().header("receipt-id"), Some("x"));

    // A durable subscription left by an earlier connection can be deleted by id.
    h.feed(b"UNSUBSCRIBE\nid:old\ndurable:true\n\n\0");
    match h.actions().as_slice() {
        [Action::DeleteQueue(d)] => assert_eq!(d, "$durable/c1/old"),
        other => panic!("{other:?}"),
    }
    // Without durable:true an unknown id is still an error.
    h.feed(b"UNSUBSCRIBE\nid:old\n\n\0");
    h.expect_error("unknown subscription");

    // Plain topic subscriptions and `durable:false` are untouched.
    let mut h = connected("1.2", Some("c1"));
    h.subscribe("p", "/topic/a\ndurable:false", "auto");
    h.feed(b"UNSUBSCRIBE\nid:p\ndurable:true\n\n\0");
    assert!(matches!(h.actions().as_slice(), [Action::Unsubscribe { .. }]));
}

#[test]
fn durable_subscriptions_need_a_client_id_and_an_id() {
    let mut h = connected("1.2", None);
    h.feed(b"SUBSCRIBE\nid:d\ndestination:/topic/a\ndurable:true\nreceipt:r\n\n\0");
    let (f, close) = h.expect_error("missing client-id");
    assert_eq!(f.header("receipt-id"), Some("r"));
    assert!(matches!(close, CloseReason::ProtocolError(_)));

    // STOMP 1.0 lets the destination name a plain subscription, but not a durable one.
    let mut h = connected("1.0", Some("c1"));
    h.feed(b"SUBSCRIBE\ndestination:/topic/a\npersistent:true\n\n\0");
    h.expect_error("missing header");
    let mut h = connected("1.0", Some("c1"));
    let (queue, ..) = bind_consume(&mut h, "SUBSCRIBE\nid:x\ndestination:/topic/a\npersistent:true\n\n\0");
    assert_eq!(queue, "$durable/c1/x");

    // UNSUBSCRIBE of an unknown id with durable:true but no client-id names nothing.
    let mut h = connected("1.2", None);
    h.feed(b"UNSUBSCRIBE\nid:d\ndurable:true\n\n\0");
    h.expect_error("unknown subscription");
}

#[test]
fn message_headers_for_queues_and_redeliveries() {
    let mut h = connected("1.2", None);
    let (_, _, sub, ..) = bind_consume(&mut h, "SUBSCRIBE\nid:s\ndestination:/queue/x\nack:client\n\n\0");
    let mut m = message(3, "$queue/x", b"p");
    m.qos = Qos::AtLeastOnce;
    m.props = Some(Box::new(Props {
        user: vec![("redelivery-count".into(), "spoof".into()), ("redelivered".into(), "spoof".into())],
        ..Props::default()
    }));
    let first = h.deliver_durable(sub, m.clone(), 1, 0);
    assert_eq!(first.header("destination"), Some("/queue/x"));
    assert_eq!(first.header("persistent"), Some("true"));
    assert_eq!((first.header("redelivered"), first.header("redelivery-count")), (None, None));
    assert!(first.header("ack").is_some());

    let again = h.deliver_durable(sub, m, 2, 3);
    assert_eq!(again.header("destination"), Some("/queue/x"));
    assert_eq!((again.header("redelivered"), again.header("redelivery-count")), (Some("true"), Some("3")));
    // The headers come exactly once (the spoofed user properties are dropped).
    assert_eq!(again.headers.iter().filter(|(n, _)| n.starts_with("redeliver")).count(), 2);

    // The exact bytes of a redelivered queue MESSAGE.
    let mut d = Delivery::new(Arc::new(message(9, "$queue/a/b", b"")), sub, Qos::AtMostOnce);
    d.durable = Some(durable_ref(4));
    d.redeliveries = 1;
    let now = h.t0;
    h.s.on_delivery(d, now, &mut h.out);
    assert_eq!(
        &h.chunks().pop().unwrap()[..],
        &b"MESSAGE\nsubscription:s\nmessage-id:9\nack:3\ndestination:/queue/a/b\nredelivered:true\n\
redelivery-count:1\ncontent-length:0\n\n\0"[..]
    );
    // A plain topic message is unchanged; `$queue` alone is a topic.
    let t = h.subscribe("t", "/topic/$queue", "auto");
    assert_eq!(h.deliver(t, message(10, "$queue", b"")).header("destination"), Some("/topic/$queue"));
}

#[test]
fn client_ack_is_cumulative_over_store_entries() {
    let mut h = connected("1.2", None);
    let (_, _, sub, ..) = bind_consume(&mut h, "SUBSCRIBE\nid:s\ndestination:/queue/q\nack:client\n\n\0");
    let ids: Vec<String> =
        (0..3).map(|i| ack_header(&h.deliver_durable(sub, message(i + 1, "$queue/q", b""), 10 + i, 0))).collect();
    h.feed(format!("ACK\nid:{}\nreceipt:k\n\n\0", ids[1]).as_bytes());
    assert_eq!(acks(h.actions()), [(10, None), (11, None)]);
    assert_eq!(h.one().header("receipt-id"), Some("k"));
    // NACK is cumulative too.
    h.feed(format!("NACK\nid:{}\n\n\0", ids[2]).as_bytes());
    assert_eq!(acks(h.actions()), [(12, Some(true))]);
    assert_eq!(h.s.subs.unacked(), 0);
}

#[test]
fn client_individual_ack_and_nack_with_requeue() {
    let mut h = connected("1.2", Some("c1"));
    let (_, _, sub, ..) =
        bind_consume(&mut h, "SUBSCRIBE\nid:s\ndestination:/topic/t\nack:client-individual\ndurable:true\n\n\0");
    let ids: Vec<String> =
        (0..4).map(|i| ack_header(&h.deliver_durable(sub, message(i + 1, "t", b""), 10 + i, 0))).collect();
    h.feed(format!("ACK\nid:{}\n\n\0", ids[1]).as_bytes());
    assert_eq!(acks(h.actions()), [(11, None)]);
    h.feed(format!("NACK\nid:{}\n\n\0", ids[0]).as_bytes());
    assert_eq!(acks(h.actions()), [(10, Some(true))]);
    h.feed(format!("NACK\nid:{}\nrequeue:false\n\n\0", ids[3]).as_bytes());
    assert_eq!(acks(h.actions()), [(13, Some(false))]);
    h.feed(format!("NACK\nid:{}\nrequeue:true\n\n\0", ids[2]).as_bytes());
    assert_eq!(acks(h.actions()), [(12, Some(true))]);
    assert!(h.frames().is_empty());

    let id = ack_header(&h.deliver_durable(sub, message(5, "t", b""), 14, 0));
    h.feed(format!("NACK\nid:{id}\nrequeue:maybe\n\n\0").as_bytes());
    h.expect_error("invalid requeue header");
}

#[test]
fn stomp_1_1_acks_store_entries_by_message_id() {
    let mut h = connected("1.1", None);
    let (_, _, sub, ..) = bind_consume(&mut h, "SUBSCRIBE\nid:s\ndestination:/queue/q\nack:client-individual\n\n\0");
    let m = h.deliver_durable(sub, message(7, "$queue/q", b""), 70, 1);
    assert_eq!(m.header("ack"), None);
    assert_eq!(m.header("redelivered"), Some("true"));
    h.feed(b"ACK\nmessage-id:7\nsubscription:s\n\n\0");
    assert_eq!(acks(h.actions()), [(70, None)]);
}

#[test]
fn non_durable_and_auto_deliveries_push_no_store_actions() {
    let mut h = connected("1.2", None);
    // A topic subscription's messages are not in the store: ACK and NACK only settle them.
    let t = h.subscribe("t", "/topic/a", "client");
    let id = ack_header(&h.deliver(t, message(1, "a", b"")));
    h.feed(format!("NACK\nid:{id}\nrequeue:false\n\n\0").as_bytes());
    assert!(h.actions().is_empty());
    // An ack:auto consumer: the driver deletes on hand-off; nothing to ACK.
    let (.., q, _, auto_ack) = bind_consume(&mut h, "SUBSCRIBE\nid:q\ndestination:/queue/q\n\n\0");
    assert!(auto_ack);
    let m = h.deliver_durable(q, message(2, "$queue/q", b""), 5, 0);
    assert_eq!(m.header("ack"), None);
    assert_eq!(h.s.subs.unacked(), 0);
    h.feed(b"ACK\nid:2\n\n\0");
    h.expect_error("unknown message");
}

#[test]
fn durable_deliveries_fill_the_connection_window() {
    let mut h = H::with(None, Limits { max_inflight: 2, ..Limits::default() });
    h.connect("1.2");
    let (_, _, sub, prefetch, _) = bind_consume(&mut h, "SUBSCRIBE\nid:s\ndestination:/queue/q\nack:client\n\n\0");
    assert_eq!(prefetch, 2);
    let ids: Vec<String> =
        (0..2).map(|i| ack_header(&h.deliver_durable(sub, message(i + 1, "$queue/q", b""), i, 0))).collect();
    assert!(!h.s.can_deliver());
    h.feed(format!("ACK\nid:{}\n\n\0", ids[1]).as_bytes());
    assert_eq!(acks(h.actions()), [(0, None), (1, None)]);
    assert!(h.s.can_deliver());
}

#[test]
fn transactional_acks_act_at_commit_in_order() {
    let mut h = connected("1.2", None);
    let (_, _, sub, ..) = bind_consume(&mut h, "SUBSCRIBE\nid:s\ndestination:/queue/q\nack:client-individual\n\n\0");
    let ids: Vec<String> =
        (0..3).map(|i| ack_header(&h.deliver_durable(sub, message(i + 1, "$queue/q", b""), 20 + i, 0))).collect();
    h.feed(b"BEGIN\ntransaction:t\n\n\0");
    h.feed(format!("ACK\nid:{}\ntransaction:t\n\n\0", ids[1]).as_bytes());
    h.feed(b"SEND\ndestination:/queue/out\ntransaction:t\n\nr\0");
    h.feed(format!("NACK\nid:{}\ntransaction:t\nrequeue:false\n\n\0", ids[0]).as_bytes());
    assert!(h.actions().is_empty());
    assert_eq!(h.s.subs.unacked(), 3);
    h.feed(b"COMMIT\ntransaction:t\nreceipt:c\n\n\0");
    match h.actions().as_slice() {
        [Action::Ack(a), Action::Publish { msg, token: Some(token) }, Action::Nack { at, requeue: false }] => {
            assert_eq!((a.seq, at.seq), (21, 20));
            assert_eq!((msg.topic.as_str(), msg.qos), ("$queue/out", Qos::AtLeastOnce));
            let token = *token;
            h.s.on_publish_done(token, Ok(()), &mut h.out, &mut h.actions);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.one().header("receipt-id"), Some("c"));
    assert_eq!(h.s.subs.unacked(), 1);

    // ABORT discards a transactional ACK: the entry stays unacked and can be acked later.
    h.feed(b"BEGIN\ntransaction:u\n\n\0");
    h.feed(format!("ACK\nid:{}\ntransaction:u\n\n\0", ids[2]).as_bytes());
    h.feed(b"ABORT\ntransaction:u\n\n\0");
    assert!(h.actions().is_empty());
    h.feed(format!("ACK\nid:{}\n\n\0", ids[2]).as_bytes());
    assert_eq!(acks(h.actions()), [(22, None)]);

    // A transactional ACK of an entry that was acked outside the transaction meanwhile (or
    // whose consumer is gone) pushes nothing at COMMIT.
    let id = ack_header(&h.deliver_durable(sub, message(9, "$queue/q", b""), 30, 0));
    h.feed(format!("BEGIN\ntransaction:v\n\n\0ACK\nid:{id}\ntransaction:v\n\n\0").as_bytes());
    h.feed(b"UNSUBSCRIBE\nid:s\n\n\0");
    assert!(matches!(h.actions().as_slice(), [Action::Unconsume { .. }]));
    h.feed(b"COMMIT\ntransaction:v\n\n\0");
    assert!(h.actions().is_empty());
}

#[test]
fn publish_errors_are_reported_and_close() {
    let cases = [
        (PublishError::QueueFull("queue/q".into()), "queue full"),
        (PublishError::Store("disk full".into()), "store error"),
        (PublishError::Refused("no".into()), "publish refused"),
    ];
    for (err, message) in cases {
        let mut h = connected("1.2", None);
        h.feed(b"SEND\ndestination:/queue/q\nreceipt:r\n\nx\0");
        let (_, token) = publish(h.actions().remove(0));
        let detail = match &err {
            PublishError::Refused(why) => why.clone(),
            other => other.to_string(),
        };
        h.s.on_publish_done(token.unwrap(), Err(err), &mut h.out, &mut h.actions);
        let (f, close) = h.expect_error(message);
        assert_eq!(f.header("receipt-id"), Some("r"));
        assert_eq!(String::from_utf8_lossy(&f.body), detail);
        match message {
            "queue full" => assert!(matches!(close, CloseReason::LimitExceeded(_))),
            "store error" => assert!(matches!(close, CloseReason::Io(_))),
            _ => assert!(matches!(close, CloseReason::ProtocolError(_))),
        }
    }
    // Without a receipt, a QoS 1 SEND (to a queue, or persistent) still learns its fate: the
    // ERROR then has no receipt-id. A QoS 0 topic SEND carries no token.
    for dest in ["/queue/q", "/topic/t\npersistent:true"] {
        let mut h = connected("1.2", None);
        h.feed(format!("SEND\ndestination:{dest}\n\nx\0").as_bytes());
        let (_, token) = publish(h.actions().remove(0));
        let err = PublishError::QueueFull("q".into());
        h.s.on_publish_done(token.expect("a bare token"), Err(err), &mut h.out, &mut h.actions);
        let (f, _) = h.expect_error("queue full");
        assert_eq!(f.header("receipt-id"), None);
    }
    let mut h = connected("1.2", None);
    h.feed(b"SEND\ndestination:/topic/t\n\nx\0");
    assert_eq!(publish(h.actions().remove(0)).1, None);

    // The same at COMMIT without a receipt: QoS 1 SENDs get tokens, QoS 0 ones do not.
    h.feed(b"BEGIN\ntransaction:t\n\n\0SEND\ndestination:/queue/q\ntransaction:t\n\n\0");
    h.feed(b"SEND\ndestination:/topic/t\ntransaction:t\n\n\0COMMIT\ntransaction:t\n\n\0");
    let tokens: Vec<Option<u64>> = h.actions().into_iter().map(|a| publish(a).1).collect();
    assert!(matches!(tokens.as_slice(), [Some(_), None]), "{tokens:?}");
    h.s.on_publish_done(tokens[0].unwrap(), Err(PublishError::Store("io".into())), &mut h.out, &mut h.actions);
    let (f, close) = h.expect_error("store error");
    assert_eq!((f.header("receipt-id"), &f.body[..]), (None, &b"store error: io"[..]));
    assert!(matches!(close, CloseReason::Io(_)));
}

/// stomp.py writes Python booleans as `True` / `False`: `durable:True` subscribes durably and
/// `requeue:False` dead-letters, as with the lower-case values.
#[test]
fn boolean_headers_ignore_case() {
    let mut h = connected("1.2", Some("c1"));
    let (queue, ..) =
        bind_consume(&mut h, "SUBSCRIBE\nid:d\ndestination:/topic/a\nack:client-individual\ndurable:True\n\n\0");
    assert_eq!(queue, "$durable/c1/d");
    let (_, _, sub, ..) = bind_consume(&mut h, "SUBSCRIBE\nid:q\ndestination:/queue/q\nack:client-individual\n\n\0");
    let ids: Vec<String> =
        (1..=2).map(|i| ack_header(&h.deliver_durable(sub, message(i, "$queue/q", b""), 10 + i, 0))).collect();
    h.feed(format!("NACK\nid:{}\nrequeue:False\n\n\0NACK\nid:{}\nrequeue:TRUE\n\n\0", ids[0], ids[1]).as_bytes());
    assert_eq!(acks(h.actions()), [(11, Some(false)), (12, Some(true))]);
    h.feed(b"NACK\nid:99\nrequeue:no\n\n\0");
    h.expect_error("invalid requeue header");
}
