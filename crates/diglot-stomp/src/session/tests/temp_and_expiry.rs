//! `/temp-queue/` request/reply and the `expires` header.

use super::*;

fn subscribe_action(a: &Action) -> (Filter, SubId) {
    match a {
        Action::Subscribe { filter, sub, qos, no_local, merge, retained, share } => {
            assert_eq!((*qos, *no_local, *merge), (Qos::AtLeastOnce, false, false));
            assert_eq!((*retained, share), (diglot_core::RetainHandling::Never, &None));
            (filter.clone(), *sub)
        }
        other => panic!("expected Subscribe, got {other:?}"),
    }
}

#[test]
fn reply_to_a_temp_queue_subscribes_once_and_is_rewritten() {
    let mut h = H::new();
    h.connect("1.2");
    let token = h.s.temp_token().to_owned();
    assert!(token.starts_with("7-") && token.len() > 10, "{token}");
    let private = format!("$temp/{token}/replies");

    h.feed(b"SEND\ndestination:/queue/rpc\nreply-to:/temp-queue/replies\ncorrelation-id:1\n\nq1\0");
    let mut actions = h.actions();
    assert_eq!(actions.len(), 2, "{actions:?}");
    let (filter, sub) = subscribe_action(&actions[0]);
    assert_eq!(filter.as_str(), private);
    let (msg, publish_token) = publish(actions.remove(1));
    h.done(publish_token);
    assert_eq!(msg.props.as_ref().unwrap().response_topic.as_deref(), Some(private.as_str()));
    assert!(msg.props.unwrap().user.is_empty());

    // The second request reuses the subscription.
    h.feed(b"SEND\ndestination:/queue/rpc\nreply-to:/temp-queue/replies\n\nq2\0");
    let mut actions = h.actions();
    assert!(matches!(actions.as_slice(), [Action::Publish { .. }]));
    h.done(publish(actions.remove(0)).1);

    // A reply arrives as /temp-queue/replies with RabbitMQ's subscription id, no ack needed.
    let mut reply = message(50, &private, b"a1");
    reply.props = Some(Box::new(Props { correlation_data: Some(Bytes::from_static(b"1")), ..Props::default() }));
    let f = h.deliver(sub, reply);
    assert_eq!(f.header("destination"), Some("/temp-queue/replies"));
    assert_eq!(f.header("subscription"), Some("/temp-queue/replies"));
    assert_eq!(f.header("correlation-id"), Some("1"));
    assert_eq!(f.header("ack"), None);
    assert_eq!(&f.body[..], b"a1");

    // A SEND to the temp queue itself publishes to the private topic (no new subscription).
    h.feed(b"SEND\ndestination:/temp-queue/replies\n\nself\0");
    let (msg, _) = publish(h.actions().remove(0));
    assert_eq!(msg.topic.as_str(), private);
    // A SEND to a new temp queue subscribes to it first.
    h.feed(b"SEND\ndestination:/temp-queue/other\n\nself\0");
    let actions = h.actions();
    assert_eq!(subscribe_action(&actions[0]).0.as_str(), format!("$temp/{token}/other"));
    assert!(matches!(actions[1], Action::Publish { .. }));

    // UNSUBSCRIBE by RabbitMQ's id removes the automatic subscription; the next use renews it.
    h.feed(b"UNSUBSCRIBE\nid:/temp-queue/replies\n\n\0");
    assert!(matches!(h.actions().as_slice(), [Action::Unsubscribe { sub: s, .. }] if *s == sub));
    h.feed(b"SEND\ndestination:/topic/x\nreply-to:/temp-queue/replies\n\n\0");
    assert_eq!(h.actions().len(), 2);
}

#[test]
fn temp_tokens_differ_between_sessions() {
    let (a, b) = (H::new(), H::new());
    assert_ne!(a.s.temp_token(), b.s.temp_token());
}

#[test]
fn explicit_subscription_to_a_temp_queue_replaces_the_automatic_one() {
    let mut h = H::new();
    h.connect("1.2");
    let private = format!("$temp/{}/r", h.s.temp_token());
    h.feed(b"SEND\ndestination:/topic/x\nreply-to:/temp-queue/r\n\n\0");
    let (_, auto) = subscribe_action(&h.actions()[0]);
    h.feed(b"SUBSCRIBE\nid:mine\ndestination:/temp-queue/r\nack:client\n\n\0");
    let actions = h.actions();
    assert!(matches!(&actions[0], Action::Unsubscribe { sub, filter } if *sub == auto && filter.as_str() == private));
    let (filter, mine) = subscribe_action(&actions[1]);
    assert_eq!(filter.as_str(), private);
    // Further requests need no subscription; replies carry the client's id and an ack.
    h.feed(b"SEND\ndestination:/topic/x\nreply-to:/temp-queue/r\n\n\0");
    assert!(matches!(h.actions().as_slice(), [Action::Publish { .. }]));
    let f = h.deliver(mine, message(3, &private, b"r"));
    assert_eq!(f.header("subscription"), Some("mine"));
    assert_eq!(f.header("destination"), Some("/temp-queue/r"));
    assert!(f.header("ack").is_some());
}

#[test]
fn temp_queue_in_a_transaction_subscribes_at_once_and_publishes_at_commit() {
    let mut h = H::new();
    h.connect("1.2");
    h.feed(b"BEGIN\ntransaction:t\n\n\0SEND\ndestination:/topic/x\nreply-to:/temp-queue/r\ntransaction:t\n\n\0");
    let actions = h.actions();
    assert_eq!(actions.len(), 1);
    subscribe_action(&actions[0]);
    h.feed(b"COMMIT\ntransaction:t\n\n\0");
    assert!(matches!(h.actions().as_slice(), [Action::Publish { .. }]));
}

#[test]
fn others_see_the_private_reply_to_as_a_topic_they_can_send_to() {
    let mut h = H::new();
    h.connect("1.2");
    let sub = h.subscribe("t", "/topic/rpc", "auto");
    let mut m = message(9, "rpc", b"q");
    m.props = Some(Box::new(Props { response_topic: Some("$temp/1-abc/r".into()), ..Props::default() }));
    assert_eq!(h.deliver(sub, m).header("reply-to"), Some("/topic/$temp/1-abc/r"));
    h.feed(b"SEND\ndestination:/topic/$temp/1-abc/r\nreceipt:x\n\nanswer\0");
    let (msg, _) = publish(h.actions().remove(0));
    assert_eq!(msg.topic.as_str(), "$temp/1-abc/r");
}

#[test]
fn expires_header_becomes_expires_at_and_back() {
    let mut h = H::new();
    h.connect("1.2");
    let in_a_minute = super::super::expiry::unix_ms_now() + 60_000;
    h.feed(format!("SEND\ndestination:/topic/x\nexpires:{in_a_minute}\nx-k:v\n\n\0").as_bytes());
    let (msg, _) = publish(h.actions().remove(0));
    let at = msg.expires_at.expect("expires_at");
    let ahead = at.duration_since(h.t0);
    assert!(ahead > Duration::from_secs(55) && ahead <= Duration::from_secs(60), "{ahead:?}");
    // `expires` is not a user property.
    assert_eq!(msg.props.unwrap().user, vec![("x-k".to_string(), "v".to_string())]);

    let sub = h.subscribe("s", "/topic/x", "auto");
    let mut m = message(1, "x", b"m");
    m.expires_at = Some(h.at(30_000));
    m.props = Some(Box::new(Props { user: vec![("expires".into(), "1".into())], ..Props::default() }));
    let f = h.deliver(sub, m);
    let expires: u64 = f.header("expires").unwrap().parse().unwrap();
    let now_ms = super::super::expiry::unix_ms_now();
    assert!(expires > now_ms + 25_000 && expires <= now_ms + 30_000, "{expires} vs {now_ms}");
    assert_eq!(f.headers.iter().filter(|(n, _)| n == "expires").count(), 1, "the user property is not repeated");
    let f = h.deliver(sub, message(2, "x", b"m"));
    assert_eq!(f.header("expires"), None);
}

#[test]
fn expired_messages_are_not_delivered_and_leave_the_store() {
    let mut h = H::with(None, Limits { max_inflight: 10, ..Limits::default() });
    h.connect("1.2");
    let topic = h.subscribe("t", "/topic/x", "client");
    let mut m = message(1, "x", b"old");
    m.expires_at = Some(h.t0);
    let now = h.t0;
    h.s.on_delivery(Delivery::new(Arc::new(m.clone()), topic, Qos::AtMostOnce), now, &mut h.out);
    assert!(h.chunks().is_empty());
    assert_eq!(h.s.next_timer(), None, "nothing owed for a topic message");

    // A durable delivery on a client-ack subscription: Ack it at the next opportunity.
    h.feed(b"SUBSCRIBE\nid:q\ndestination:/queue/jobs\nack:client\n\n\0");
    let q = match h.actions().pop() {
        Some(Action::Consume { sub, .. }) => sub,
        other => panic!("{other:?}"),
    };
    let mut d = Delivery::new(Arc::new(m.clone()), q, Qos::AtLeastOnce);
    d.durable = Some(durable_ref(4));
    let later = h.at(5);
    h.s.on_delivery(d, later, &mut h.out);
    assert!(h.chunks().is_empty());
    assert!(h.s.can_deliver(), "an expired delivery takes no room in the window");
    assert_eq!(h.s.next_timer(), Some(later), "the session asks to be woken to hand over the Ack");
    let t = h.at(6);
    h.s.on_timer(t, &mut h.out, &mut h.actions);
    assert!(matches!(h.actions().as_slice(), [Action::Ack(r)] if r.seq == 4));
    assert_eq!(h.s.next_timer(), None);

    // Owed actions also go out with the next inbound frame.
    let mut d = Delivery::new(Arc::new(m.clone()), q, Qos::AtLeastOnce);
    d.durable = Some(durable_ref(5));
    h.s.on_delivery(d, later, &mut h.out);
    h.feed(b"\n");
    assert!(matches!(h.actions().as_slice(), [Action::Ack(r)] if r.seq == 5));

    // On an auto subscription the driver deletes the entry itself: nothing owed.
    h.feed(b"SUBSCRIBE\nid:a\ndestination:/queue/other\n\n\0");
    let a = match h.actions().pop() {
        Some(Action::Consume { sub, .. }) => sub,
        other => panic!("{other:?}"),
    };
    let mut d = Delivery::new(Arc::new(m), a, Qos::AtLeastOnce);
    d.durable = Some(durable_ref(6));
    h.s.on_delivery(d, later, &mut h.out);
    assert!(h.chunks().is_empty());
    assert_eq!(h.s.next_timer(), None);
}
