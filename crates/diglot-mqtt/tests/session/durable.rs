//! Persistent sessions and durable deliveries: the session handshake (OpenSession, then
//! CONNACK with Session Present and Consume), bindings instead of subscriptions, durable
//! PUBLISHes with derived packet ids, DUP and `redelivery-count`, Ack on PUBACK, and refused
//! publishes to full queues.

use std::time::Duration;

use diglot_core::{Action, Adapter, CloseReason, DurableRef, Limits, PublishError, Qos};
use diglot_mqtt::{Config, SESSION_SUB};
use rmqtt_codec::types::Publish;
use rmqtt_codec::{v3, v5};

use crate::common::*;

fn puback5(id: u16) -> v5::Packet {
    v5::Packet::PublishAck(v5::PublishAck {
        packet_id: pid(id),
        reason_code: v5::PublishAckReason::Success,
        properties: Vec::new(),
        reason_string: None,
    })
}

fn one_publish3(c: &mut Client) -> Publish {
    match &c.recv3()[..] {
        [v3::Packet::Publish(p)] => (**p).clone(),
        other => panic!("{other:?}"),
    }
}

fn one_publish5(c: &mut Client) -> Publish {
    match &c.recv5()[..] {
        [v5::Packet::Publish(p)] => (**p).clone(),
        other => panic!("{other:?}"),
    }
}

fn redelivery_count(p: &Publish) -> Option<String> {
    let props = p.properties.as_ref()?;
    let mut it = props.user_properties.iter().filter(|(k, _)| k == "redelivery-count");
    let v = it.next().map(|(_, v)| v.to_string());
    assert!(it.next().is_none(), "one redelivery-count");
    v
}

#[test]
fn v3_persistent_session_waits_for_the_driver() {
    let mut c = Client::new();
    c.open = None;
    let mut bytes =
        enc3(v3::Packet::Connect(Box::new(v3::Connect { keep_alive: 10, clean_session: false, ..connect3("dev") })));
    // The client sends a PINGREQ right after CONNECT (§3.1.4): it waits for the session.
    bytes.extend_from_slice(&enc3(v3::Packet::PingRequest));
    let a = c.raw(&bytes);
    assert!(
        matches!(&a[..], [Action::ClaimClientId(id), Action::OpenSession { client_id, clean: false, persistent: true, .. }] if id == "dev" && client_id == "dev"),
        "{a:?}"
    );
    assert!(c.frames().is_empty(), "no CONNACK before the session is open");
    assert!(!c.session.can_deliver());
    assert_eq!(c.session.client_id(), Some("dev"));
    // The CONNECT deadline still runs.
    assert_eq!(c.session.next_timer(), Some(c.start + Duration::from_secs(10)));
    // A delivery the driver should not have made is not written.
    c.deliver(msg("t", b"x", Qos::AtLeastOnce), Qos::AtLeastOnce);
    assert!(c.frames().is_empty());

    let a = c.opened(true);
    let [Action::Consume { queue, sub, prefetch, auto_ack }] = &a[..] else { panic!("{a:?}") };
    assert_eq!(queue, "$session/dev");
    assert_eq!(*sub, SESSION_SUB);
    assert_eq!(*prefetch, Limits::default().max_inflight);
    assert!(!auto_ack);
    assert_eq!(
        c.recv3(),
        [v3::Packet::ConnectAck(v3::ConnectAck {
            return_code: v3::ConnectAckReason::ConnectionAccepted,
            session_present: true
        })]
    );
    assert!(c.session.can_deliver());
    // The keep-alive replaced the CONNECT deadline.
    assert_eq!(c.session.next_timer(), Some(c.start + Duration::from_secs(15)));
    // The PINGREQ that waited is read now.
    assert!(c.raw(&[]).is_empty());
    assert_eq!(c.recv3(), [v3::Packet::PingResponse]);
    // A second answer is ignored.
    assert!(c.opened(true).is_empty());
    assert!(c.frames().is_empty());
}

#[test]
fn clean_session_is_never_present() {
    let mut c = Client::new();
    c.open = None;
    let a = c.send3(v3::Packet::Connect(Box::new(connect3("dev"))));
    assert!(matches!(&a[..], [_, Action::OpenSession { clean: true, persistent: false, .. }]), "{a:?}");
    assert!(c.opened(true).is_empty(), "no Consume without a persistent session");
    assert!(matches!(&c.recv3()[..], [v3::Packet::ConnectAck(ack)] if !ack.session_present));

    // A resumed 3.1.1 session that was not stored is simply not present.
    let mut c = Client::new();
    c.open = None;
    c.send3(v3::Packet::Connect(Box::new(v3::Connect { clean_session: false, ..connect3("dev") })));
    assert_eq!(c.opened(false).len(), 1);
    assert!(matches!(&c.recv3()[..], [v3::Packet::ConnectAck(ack)] if !ack.session_present));
}

#[test]
fn v5_clean_start_and_session_expiry() {
    // (clean start, session expiry) → (clean, persistent, Session Present given present=1)
    for (clean_start, expiry, persistent, present) in
        [(true, 0, false, false), (false, 0, false, true), (true, 60, true, false), (false, 60, true, true)]
    {
        let mut c = Client::new();
        c.open = None;
        let connect = v5::Connect { clean_start, session_expiry_interval_secs: expiry, ..connect5("five") };
        let a = c.send5(v5::Packet::Connect(Box::new(connect.receive_max(5))));
        assert!(
            matches!(&a[..], [Action::ClaimClientId(_), Action::OpenSession { client_id, clean, persistent: p, .. }] if client_id == "five" && *clean == clean_start && *p == persistent),
            "{a:?}"
        );
        assert!(c.frames().is_empty());
        let a = c.opened(true);
        // A resumed session lives in its queue even when it ends with the connection.
        if persistent || present {
            assert!(
                matches!(&a[..], [Action::Consume { queue, sub: SESSION_SUB, prefetch: 5, auto_ack: false }] if queue == "$session/five"),
                "{a:?}"
            );
        } else {
            assert!(a.is_empty(), "{a:?}");
        }
        let got = c.recv5();
        let [v5::Packet::ConnectAck(ack)] = &got[..] else { panic!("{got:?}") };
        assert_eq!(ack.reason_code, v5::ConnectAckReason::Success);
        assert_eq!(ack.session_present, present, "clean start {clean_start}, expiry {expiry}");
    }
}

#[test]
fn prefetch_is_the_smaller_window() {
    let limits = Limits { max_inflight: 3, ..Limits::default() };
    let mut c = Client::with(limits, Config::default());
    let connect = v5::Connect { clean_start: false, session_expiry_interval_secs: 10, ..connect5("w") };
    let a = c.send5(v5::Packet::Connect(Box::new(connect.receive_max(100))));
    assert!(matches!(a.last(), Some(Action::Consume { prefetch: 3, .. })), "{a:?}");
}

#[test]
fn connect_timeout_covers_the_session_opening() {
    let mut c = Client::new();
    c.open = None;
    c.send3(v3::Packet::Connect(Box::new(v3::Connect { clean_session: false, ..connect3("slow") })));
    c.advance(10);
    assert_eq!(close_of(&c.timer()), Some(&CloseReason::HandshakeTimeout));
    // The driver answers late: nothing is written and nothing is consumed.
    assert!(c.opened(true).is_empty());
    assert!(c.frames().is_empty());
    assert!(!c.session.can_deliver());
}

#[test]
fn will_is_armed_only_by_the_connack() {
    let mut c = Client::new();
    c.open = None;
    let will = v3::LastWill { qos: v3::QoS::AtMostOnce, retain: false, topic: "w".into(), message: "bye".into() };
    c.send3(v3::Packet::Connect(Box::new(v3::Connect { last_will: Some(will), ..connect3("w") })));
    assert!(c.closed(CloseReason::PeerClosed).is_empty(), "no session, no will");
}

#[test]
fn subscribe_binds_in_a_persistent_session() {
    let mut c = persistent3("dev", Limits::default());
    let a = c.send3(v3::Packet::Subscribe {
        packet_id: pid(1),
        topic_filters: vec![("a/+".into(), v3::QoS::ExactlyOnce), ("a/#/b".into(), v3::QoS::AtLeastOnce)],
    });
    assert!(
        matches!(&a[..], [Action::Bind { queue, filter, qos: Qos::ExactlyOnce }, Action::SendRetained { filter: f2, sub: 1, qos: Qos::ExactlyOnce, queue: q2 }] if queue == "$session/dev" && q2 == queue && filter.as_str() == "a/+" && f2 == filter),
        "{a:?}"
    );
    use v3::SubscribeReturnCode::*;
    assert!(
        matches!(&c.recv3()[..], [v3::Packet::SubscribeAck { status, .. }] if status == &[Success(v3::QoS::ExactlyOnce), Failure])
    );
    // Known in this connection, and one bound by an earlier connection: both unbind.
    let a = c.send3(v3::Packet::Unsubscribe { packet_id: pid(2), topic_filters: vec!["a/+".into(), "old/#".into()] });
    let unbound: Vec<_> = a
        .iter()
        .map(|a| match a {
            Action::Unbind { queue, filter } => {
                assert_eq!(queue, "$session/dev");
                filter.as_str().to_string()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(unbound, ["a/+", "old/#"]);
    assert_eq!(c.recv3(), [v3::Packet::UnsubscribeAck { packet_id: pid(2) }]);

    let mut c = persistent5("five", Limits::default());
    let a = c.send5(v5::Packet::Subscribe(v5::Subscribe {
        packet_id: pid(1),
        id: None,
        user_properties: Vec::new(),
        topic_filters: vec![(
            "x/y".into(),
            v5::SubscriptionOptions { qos: v5::QoS::AtMostOnce, ..v5::SubscriptionOptions::default() },
        )],
    }));
    assert!(
        matches!(&a[..], [Action::Bind { qos: Qos::AtMostOnce, filter, .. }, Action::SendRetained { .. }] if filter.as_str() == "x/y"),
        "{a:?}"
    );
    c.frames();
    let a = c.send5(v5::Packet::Unsubscribe(v5::Unsubscribe {
        packet_id: pid(2),
        user_properties: Vec::new(),
        topic_filters: vec!["never/seen".into(), "a/#/b".into()],
    }));
    assert!(matches!(&a[..], [Action::Unbind { filter, .. }] if filter.as_str() == "never/seen"), "{a:?}");
    let got = c.recv5();
    let [v5::Packet::UnsubscribeAck(ack)] = &got[..] else { panic!("{got:?}") };
    assert_eq!(ack.status, [v5::UnsubscribeAckReason::Success, v5::UnsubscribeAckReason::TopicFilterInvalid]);
}

#[test]
fn subscribe_stays_a_subscription_without_persistence() {
    // MQTT 5 Clean Start 0 with Session Expiry 0 and no stored session: the session ends with
    // the connection, so filters stay subscriptions of the connection.
    let mut c = Client::new();
    c.open = Some(false);
    c.connect5(v5::Connect { clean_start: false, ..connect5("s") });
    let a = c.send5(v5::Packet::Subscribe(v5::Subscribe {
        packet_id: pid(1),
        id: None,
        user_properties: Vec::new(),
        topic_filters: vec![(
            "a".into(),
            v5::SubscriptionOptions { qos: v5::QoS::AtLeastOnce, no_local: true, ..v5::SubscriptionOptions::default() },
        )],
    }));
    assert!(matches!(&a[..], [Action::Subscribe { sub: 1, no_local: true, .. }]), "{a:?}");
    let a = c.send5(v5::Packet::Unsubscribe(v5::Unsubscribe {
        packet_id: pid(2),
        user_properties: Vec::new(),
        topic_filters: vec!["a".into()],
    }));
    assert!(matches!(&a[..], [Action::Unsubscribe { sub: 1, .. }]), "{a:?}");
}

#[test]
fn durable_delivery_is_acked_on_puback() {
    let mut c = persistent3("dev", Limits::default());
    c.deliver_durable(msg("a/b", b"one", Qos::AtLeastOnce), Qos::AtLeastOnce, 5, 0);
    let p = one_publish3(&mut c);
    assert_eq!((p.qos, p.packet_id, p.dup), (v3::QoS::AtLeastOnce, Some(pid(5)), false));
    assert_eq!((&p.topic[..], &p.payload[..]), ("a/b", &b"one"[..]));
    // A non-durable QoS 1 delivery in between takes the next free id.
    c.deliver(msg("n", b"x", Qos::AtLeastOnce), Qos::AtLeastOnce);
    assert_eq!(one_publish3(&mut c).packet_id, Some(pid(1)));

    let a = c.send3(v3::Packet::PublishAck { packet_id: pid(5) });
    assert!(matches!(&a[..], [Action::Ack(DurableRef { queue: 9, seq: 5 })]), "{a:?}");
    // The non-durable one owes no Ack; a duplicate PUBACK is ignored.
    assert!(c.send3(v3::Packet::PublishAck { packet_id: pid(1) }).is_empty());
    assert!(c.send3(v3::Packet::PublishAck { packet_id: pid(5) }).is_empty());
}

#[test]
fn durable_redelivery_after_reconnect() {
    // First connection: seq 1 and 2 go out, only 1 is acknowledged.
    let mut c = persistent5("dev", Limits::default());
    c.deliver_durable(msg("t", b"1", Qos::AtLeastOnce), Qos::AtLeastOnce, 1, 0);
    c.deliver_durable(msg("t", b"2", Qos::AtLeastOnce), Qos::AtLeastOnce, 2, 0);
    let first = c.recv5();
    assert_eq!(first.len(), 2);
    for p in &first {
        let v5::Packet::Publish(p) = p else { panic!("{p:?}") };
        assert!(!p.dup);
        assert_eq!(redelivery_count(p), None, "no count on a first delivery");
    }
    let a = c.send5(puback5(1));
    assert!(matches!(&a[..], [Action::Ack(DurableRef { seq: 1, .. })]), "{a:?}");
    c.closed(CloseReason::PeerClosed);

    // Reconnect: the driver redelivers seq 2, with its original packet id, DUP and count.
    let mut c = persistent5("dev", Limits::default());
    c.deliver_durable(msg("t", b"2", Qos::AtLeastOnce), Qos::AtLeastOnce, 2, 1);
    let p = one_publish5(&mut c);
    assert_eq!((p.packet_id, p.dup, p.qos), (Some(pid(2)), true, v5::QoS::AtLeastOnce));
    assert_eq!(redelivery_count(&p).as_deref(), Some("1"));
    let a = c.send5(puback5(2));
    assert!(matches!(&a[..], [Action::Ack(DurableRef { queue: 9, seq: 2 })]), "{a:?}");

    // MQTT 3.1.1 has DUP but no properties.
    let mut c = persistent3("dev", Limits::default());
    c.deliver_durable(msg("t", b"2", Qos::AtLeastOnce), Qos::AtLeastOnce, 2, 3);
    let p = one_publish3(&mut c);
    assert_eq!((p.packet_id, p.dup), (Some(pid(2)), true));
    assert!(p.properties.is_none());
}

#[test]
fn durable_packet_ids_fold_and_avoid_ids_in_use() {
    let mut c = persistent3("dev", Limits::default());
    c.deliver_durable(msg("t", b"a", Qos::AtLeastOnce), Qos::AtLeastOnce, 65_536, 0);
    assert_eq!(one_publish3(&mut c).packet_id, Some(pid(1)));
    // seq 1 folds to id 1 too, which is in use: it gets the next free id.
    c.deliver_durable(msg("t", b"b", Qos::AtLeastOnce), Qos::AtLeastOnce, 1, 0);
    let id = one_publish3(&mut c).packet_id.unwrap();
    assert_ne!(id, pid(1));
    let a = c.send3(v3::Packet::PublishAck { packet_id: id });
    assert!(matches!(&a[..], [Action::Ack(DurableRef { seq: 1, .. })]), "{a:?}");
    let a = c.send3(v3::Packet::PublishAck { packet_id: pid(1) });
    assert!(matches!(&a[..], [Action::Ack(DurableRef { seq: 65_536, .. })]), "{a:?}");
}

#[test]
fn durable_qos0_goes_out_as_qos1() {
    let mut c = persistent3("dev", Limits::default());
    c.deliver_durable(msg("t", b"z", Qos::AtMostOnce), Qos::AtMostOnce, 7, 0);
    let p = one_publish3(&mut c);
    assert_eq!((p.qos, p.packet_id), (v3::QoS::AtLeastOnce, Some(pid(7))));
    let a = c.send3(v3::Packet::PublishAck { packet_id: pid(7) });
    assert!(matches!(&a[..], [Action::Ack(DurableRef { seq: 7, .. })]), "{a:?}");
    // A non-durable QoS 0 redelivery flag never sets DUP on QoS 0 [MQTT-3.3.1-2].
    c.deliver(msg("t", b"z", Qos::AtMostOnce), Qos::AtMostOnce);
    let p = one_publish3(&mut c);
    assert_eq!((p.qos, p.dup), (v3::QoS::AtMostOnce, false));
}

#[test]
fn durable_window_is_shared_and_bounded() {
    let limits = Limits { max_inflight: 2, ..Limits::default() };
    let mut c = persistent3("dev", limits);
    c.deliver_durable(msg("t", b"1", Qos::AtLeastOnce), Qos::AtLeastOnce, 1, 0);
    c.deliver(msg("t", b"n", Qos::AtLeastOnce), Qos::AtLeastOnce);
    assert!(!c.session.can_deliver());
    assert_eq!(c.recv3().len(), 2);
    c.send3(v3::Packet::PublishAck { packet_id: pid(1) });
    assert!(c.session.can_deliver());
}

#[test]
fn durable_delivery_too_large_for_the_client_is_dead_lettered() {
    let mut c = Client::with(Limits::default(), Config::default());
    c.open = Some(true);
    let connect = v5::Connect {
        clean_start: false,
        session_expiry_interval_secs: 60,
        max_packet_size: std::num::NonZeroU32::new(64),
        ..connect5("small")
    };
    let a = c.send5(v5::Packet::Connect(Box::new(connect)));
    assert!(matches!(a.last(), Some(Action::Consume { .. })), "{a:?}");
    c.frames();
    assert_eq!(c.session.next_timer(), None);
    c.deliver_durable(msg("t", &[b'x'; 100], Qos::AtLeastOnce), Qos::AtLeastOnce, 3, 0);
    assert!(c.frames().is_empty(), "discarded [MQTT-3.1.2-25]");
    assert!(c.session.can_deliver(), "its packet id is free again");
    // on_delivery cannot push actions: the session asks for a timer at once and pushes the
    // Nack from on_timer (or from the next on_input).
    assert!(c.session.next_timer().is_some_and(|t| t <= c.now));
    let a = c.timer();
    assert!(matches!(&a[..], [Action::Nack { at: DurableRef { seq: 3, .. }, requeue: false }]), "{a:?}");
    assert_eq!(c.session.next_timer(), None);
    assert!(c.frames().is_empty(), "the timer closed nothing");
}

#[test]
fn durable_delivery_before_connack_is_given_back() {
    let mut c = Client::new();
    c.open = None;
    c.send3(v3::Packet::Connect(Box::new(v3::Connect { clean_session: false, ..connect3("dev") })));
    c.deliver_durable(msg("t", b"early", Qos::AtLeastOnce), Qos::AtLeastOnce, 4, 0);
    assert!(c.frames().is_empty());
    let a = c.opened(true);
    assert!(matches!(&a[..], [Action::Consume { .. }]), "{a:?}");
    assert!(matches!(&c.recv3()[..], [v3::Packet::ConnectAck(_)]));
    let a = c.raw(&[]);
    assert!(matches!(&a[..], [Action::Nack { at: DurableRef { seq: 4, .. }, requeue: true }]), "{a:?}");
}

#[test]
fn queue_full_and_store_errors() {
    // MQTT 5: a reason code per publish.
    let mut c = Client::connected5("p");
    let a = c.send5(v5::Packet::Publish(Box::new(publish("a", b"x", 1, Some(3)))));
    let [Action::Publish { token: Some(t), .. }] = &a[..] else { panic!("{a:?}") };
    assert!(c.done(*t, Err(PublishError::QueueFull("queue/orders".into()))).is_empty());
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::PublishAck(ack)] if ack.packet_id == pid(3) && ack.reason_code == v5::PublishAckReason::QuotaExceeded)
    );
    let a = c.send5(v5::Packet::Publish(Box::new(publish("a", b"x", 2, Some(4)))));
    let [Action::Publish { token: Some(t), .. }] = &a[..] else { panic!("{a:?}") };
    assert!(c.done(*t, Err(PublishError::QueueFull("queue/orders".into()))).is_empty());
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::PublishReceived(ack)] if ack.reason_code == v5::PublishAckReason::QuotaExceeded)
    );
    let a = c.send5(v5::Packet::Publish(Box::new(publish("a", b"x", 1, Some(5)))));
    let [Action::Publish { token: Some(t), .. }] = &a[..] else { panic!("{a:?}") };
    assert!(c.done(*t, Err(PublishError::Store("disk full".into()))).is_empty());
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::PublishAck(ack)] if ack.reason_code == v5::PublishAckReason::UnspecifiedError)
    );

    // MQTT 3.1.1 cannot refuse a publish: the connection is closed, with a clear reason.
    let mut c = Client::connected3("p");
    let a = c.send3(v3::Packet::Publish(Box::new(publish("a", b"x", 1, Some(3)))));
    let [Action::Publish { token: Some(t), .. }] = &a[..] else { panic!("{a:?}") };
    let a = c.done(*t, Err(PublishError::QueueFull("queue/orders".into())));
    let Some(CloseReason::LimitExceeded(why)) = close_of(&a) else { panic!("{a:?}") };
    assert!(why.contains("queue full: queue/orders") && why.contains("3.x cannot refuse"), "{why}");
    assert!(c.frames().is_empty(), "no PUBACK");

    let mut c = Client::connected3("p");
    let a = c.send3(v3::Packet::Publish(Box::new(publish("a", b"x", 1, Some(3)))));
    let [Action::Publish { token: Some(t), .. }] = &a[..] else { panic!("{a:?}") };
    let a = c.done(*t, Err(PublishError::Store("disk full".into())));
    assert!(matches!(close_of(&a), Some(CloseReason::ProtocolError(why)) if why.contains("disk full")), "{a:?}");
}

#[test]
fn publishing_to_a_named_queue() {
    let mut c = Client::connected3("p");
    let a = c.send3(v3::Packet::Publish(Box::new(publish("$queue/orders", b"o1", 1, Some(1)))));
    assert!(
        matches!(&a[..], [Action::Publish { msg, token: Some(_) }] if msg.topic.as_str() == diglot_core::queue_topic("orders")),
        "{a:?}"
    );
    let mut c = Client::connected5("p");
    let a = c.send5(v5::Packet::Publish(Box::new(publish("$queue/orders", b"o1", 0, None))));
    assert!(matches!(&a[..], [Action::Publish { msg, token: None }] if msg.topic.as_str() == "$queue/orders"), "{a:?}");
    // Other `$` topics are not refused either.
    let a = c.send5(v5::Packet::Publish(Box::new(publish("$SYS/x", b"", 0, None))));
    assert!(matches!(&a[..], [Action::Publish { .. }]), "{a:?}");
}

#[test]
fn resumed_session_that_ends_with_the_connection_still_uses_its_queue() {
    // MQTT 5 Clean Start 0, Session Expiry 0, and a stored session exists: its bindings feed
    // the session queue, so this connection consumes it and binds there too.
    let mut c = Client::new();
    c.open = Some(true);
    let a = c.send5(v5::Packet::Connect(Box::new(v5::Connect { clean_start: false, ..connect5("r") })));
    assert!(
        matches!(&a[..], [_, Action::OpenSession { clean: false, persistent: false, .. }, Action::Consume { .. }]),
        "{a:?}"
    );
    c.frames();
    let a = c.send5(v5::Packet::Subscribe(v5::Subscribe {
        packet_id: pid(1),
        id: None,
        user_properties: Vec::new(),
        topic_filters: vec![("a".into(), v5::SubscriptionOptions::default())],
    }));
    assert!(
        matches!(&a[..], [Action::Bind { queue, .. }, Action::SendRetained { .. }] if queue == "$session/r"),
        "{a:?}"
    );
}
