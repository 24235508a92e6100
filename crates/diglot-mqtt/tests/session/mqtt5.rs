//! MQTT 5 features: message expiry, topic aliases both ways, Subscription Identifiers,
//! session expiry, the Will Delay Interval and will properties, Request/Response and
//! Request Problem Information, reason strings, and AUTH.

use std::num::{NonZeroU16, NonZeroU32};
use std::time::Duration;

use bytes::Bytes;
use diglot_core::{Action, Adapter, CloseReason, Delivery, DurableRef, Limits, PublishError, Qos};
use diglot_mqtt::{Config, SESSION_SUB};
use rmqtt_codec::v5::PublishProperties;
use rmqtt_codec::{v3, v5};

use crate::common::*;

fn with_props(mut p: rmqtt_codec::types::Publish, props: PublishProperties) -> rmqtt_codec::types::Publish {
    p.properties = Some(props);
    p
}

fn alias(n: u16) -> PublishProperties {
    PublishProperties { topic_alias: NonZeroU16::new(n), ..PublishProperties::default() }
}

// ---- Message expiry ----

#[test]
fn inbound_message_expiry_sets_expires_at() {
    let mut c = Client::connected5("p");
    let p = with_props(
        publish("a", b"x", 0, None),
        PublishProperties { message_expiry_interval: NonZeroU32::new(30), ..PublishProperties::default() },
    );
    let a = c.send5(v5::Packet::Publish(Box::new(p)));
    let [Action::Publish { msg, .. }] = &a[..] else { panic!("{a:?}") };
    assert_eq!(msg.expires_at, Some(c.now + Duration::from_secs(30)));
    assert_eq!(msg.received_at, c.now);
    // Without the property, no expiry; 3.x has none.
    let a = c.send5(v5::Packet::Publish(Box::new(publish("a", b"x", 0, None))));
    assert!(matches!(&a[..], [Action::Publish { msg, .. }] if msg.expires_at.is_none()));
    let mut c = Client::connected3("p");
    let a = c.send3(v3::Packet::Publish(Box::new(publish("a", b"x", 0, None))));
    assert!(matches!(&a[..], [Action::Publish { msg, .. }] if msg.expires_at.is_none()));
}

#[test]
fn outbound_expiry_is_decremented_or_the_message_dropped() {
    let mut c = Client::connected5("s");
    let mut m = msg("a", b"x", Qos::AtLeastOnce);
    m.expires_at = Some(c.now + Duration::from_secs(30));
    c.advance(10);
    c.deliver(m.clone(), Qos::AtLeastOnce);
    let got = publishes5(c.recv5());
    assert_eq!(got[0].properties.as_ref().and_then(|p| p.message_expiry_interval), NonZeroU32::new(20));
    // 3.x gets the message, without the property.
    let mut c3 = Client::connected3("s");
    c3.now = c.now;
    c3.deliver(m.clone(), Qos::AtLeastOnce);
    assert!(publishes3(c3.recv3())[0].properties.is_none());
    // Expired: not sent, and no packet id taken.
    c.advance(20);
    c.deliver(m.clone(), Qos::AtLeastOnce);
    assert!(c.frames().is_empty());
    c3.now = c.now;
    c3.deliver(m, Qos::AtMostOnce);
    assert!(c3.frames().is_empty());
}

#[test]
fn expired_durable_delivery_is_acknowledged_without_sending() {
    let mut c = persistent5("d", Limits::default());
    let mut m = msg("a", b"x", Qos::AtLeastOnce);
    m.expires_at = Some(c.now);
    c.deliver_durable(m, Qos::AtLeastOnce, 3, 0);
    assert!(c.frames().is_empty());
    assert!(c.session.can_deliver());
    let a = c.timer();
    assert!(matches!(&a[..], [Action::Ack(DurableRef { seq: 3, .. })]), "{a:?}");
}

// ---- Topic aliases ----

#[test]
fn inbound_topic_aliases() {
    let mut c = Client::connected5("p");
    // Alias with a topic sets it up; alias alone uses it; a new topic replaces it.
    let a = c.send5(v5::Packet::Publish(Box::new(with_props(publish("a/b", b"1", 0, None), alias(3)))));
    assert!(matches!(&a[..], [Action::Publish { msg, .. }] if msg.topic.as_str() == "a/b"), "{a:?}");
    let a = c.send5(v5::Packet::Publish(Box::new(with_props(publish("", b"2", 0, None), alias(3)))));
    assert!(matches!(&a[..], [Action::Publish { msg, .. }] if msg.topic.as_str() == "a/b"), "{a:?}");
    c.send5(v5::Packet::Publish(Box::new(with_props(publish("c", b"3", 0, None), alias(3)))));
    let a = c.send5(v5::Packet::Publish(Box::new(with_props(publish("", b"4", 1, Some(1)), alias(3)))));
    assert!(matches!(&a[..], [Action::Publish { msg, .. }] if msg.topic.as_str() == "c"), "{a:?}");
    // 16 is the announced maximum; 17 is too many.
    let a = c.send5(v5::Packet::Publish(Box::new(with_props(publish("x", b"", 0, None), alias(16)))));
    assert!(matches!(&a[..], [Action::Publish { .. }]), "{a:?}");
    let a = c.send5(v5::Packet::Publish(Box::new(with_props(publish("x", b"", 0, None), alias(17)))));
    assert!(matches!(close_of(&a), Some(CloseReason::ProtocolError(_))), "{a:?}");
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::Disconnect(d)] if d.reason_code == v5::DisconnectReasonCode::TopicAliasInvalid)
    );
}

#[test]
fn unknown_alias_and_empty_topic_are_protocol_errors() {
    let mut c = Client::connected5("p");
    let a = c.send5(v5::Packet::Publish(Box::new(with_props(publish("", b"", 0, None), alias(2)))));
    assert!(close_of(&a).is_some());
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::Disconnect(d)] if d.reason_code == v5::DisconnectReasonCode::ProtocolError)
    );
    let mut c = Client::connected5("p");
    let a = c.send5(v5::Packet::Publish(Box::new(publish("", b"", 0, None))));
    assert!(close_of(&a).is_some());
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::Disconnect(d)] if d.reason_code == v5::DisconnectReasonCode::ProtocolError)
    );
    // With Topic Alias Maximum 0, any alias is invalid.
    let mut c = Client::with(Limits::default(), Config { topic_alias_max: 0, ..Config::default() });
    c.send5(v5::Packet::Connect(Box::new(connect5("p"))));
    assert!(matches!(&c.recv5()[..], [v5::Packet::ConnectAck(a)] if a.topic_alias_max == 0));
    let a = c.send5(v5::Packet::Publish(Box::new(with_props(publish("a", b"", 0, None), alias(1)))));
    assert!(close_of(&a).is_some());
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::Disconnect(d)] if d.reason_code == v5::DisconnectReasonCode::TopicAliasInvalid)
    );
}

#[test]
fn topic_alias_zero_is_invalid_not_malformed() {
    let mut c = Client::connected5("p");
    // PUBLISH QoS 0, topic "a", properties: Topic Alias 0. The codec cannot encode it.
    let a = c.raw(&[0x30, 0x07, 0x00, 0x01, b'a', 0x03, 0x23, 0x00, 0x00]);
    assert!(close_of(&a).is_some(), "{a:?}");
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::Disconnect(d)] if d.reason_code == v5::DisconnectReasonCode::TopicAliasInvalid)
    );
}

#[test]
fn outbound_topic_aliases() {
    let mut c = Client::new();
    c.connect5(v5::Connect { topic_alias_max: 2, ..connect5("s") });
    for t in ["a", "a", "b", "c", "b", "a"] {
        c.deliver(msg(t, b"x", Qos::AtMostOnce), Qos::AtMostOnce);
    }
    let got: Vec<_> = publishes5(c.recv5())
        .into_iter()
        .map(|p| (p.topic.to_string(), p.properties.and_then(|p| p.topic_alias).map_or(0, |a| a.get())))
        .collect();
    let want = [("a", 1), ("", 1), ("b", 2), ("c", 0), ("", 2), ("", 1)];
    assert_eq!(got, want.map(|(t, a)| (t.to_string(), a)));

    // No aliases for a client that allows none, nor for 3.x.
    let mut c = Client::connected5("s");
    c.deliver(msg("a", b"x", Qos::AtMostOnce), Qos::AtMostOnce);
    c.deliver(msg("a", b"x", Qos::AtMostOnce), Qos::AtMostOnce);
    assert!(publishes5(c.recv5())
        .iter()
        .all(|p| &p.topic[..] == "a" && p.properties.as_ref().unwrap().topic_alias.is_none()));
}

#[test]
fn outbound_alias_of_a_discarded_publish_is_not_kept() {
    let mut c = Client::new();
    c.connect5(v5::Connect { topic_alias_max: 4, max_packet_size: NonZeroU32::new(40), ..connect5("s") });
    c.deliver(msg("big", &[b'x'; 60], Qos::AtMostOnce), Qos::AtMostOnce);
    assert!(c.frames().is_empty());
    c.deliver(msg("big", b"small", Qos::AtMostOnce), Qos::AtMostOnce);
    let p = &publishes5(c.recv5())[0];
    assert_eq!(&p.topic[..], "big", "the client never learnt the alias");
    assert_eq!(p.properties.as_ref().and_then(|p| p.topic_alias), NonZeroU16::new(1));
}

// ---- Subscription Identifiers ----

fn idents(c: &mut Client) -> Vec<Vec<u32>> {
    publishes5(c.recv5())
        .into_iter()
        .map(|p| p.properties.unwrap().subscription_ids.iter().map(|i| i.get()).collect::<Vec<_>>())
        .collect()
}

/// Overlapping subscriptions are merged by the router into one copy per message
/// [MQTT-3.3.4-2], whichever of them it names; the copy carries the identifiers of every
/// matching subscription [MQTT-3.3.4-4].
#[test]
fn subscription_identifiers() {
    let mut c = Client::connected5("s");
    let a = c.send5(subscribe5(1, Some(7), "a/+", qos5(1)));
    assert!(matches!(&a[..], [Action::Subscribe { sub: 1, merge: true, .. }]), "{a:?}");
    let a = c.send5(subscribe5(2, None, "a/#", qos5(1)));
    assert!(matches!(&a[..], [Action::Subscribe { sub: 2, merge: true, .. }]), "{a:?}");
    c.send5(subscribe5(3, Some(5), "+/b", qos5(1)));
    c.send5(subscribe5(4, Some(9), "z/#", qos5(1)));
    assert_eq!(c.recv5().len(), 4, "four SUBACKs");
    c.deliver_with(delivery(msg("a/b", b"x", Qos::AtMostOnce), 1, Qos::AtMostOnce));
    c.deliver_with(delivery(msg("a/b", b"x", Qos::AtMostOnce), 2, Qos::AtMostOnce));
    c.deliver_with(delivery(msg("a/c", b"x", Qos::AtMostOnce), 2, Qos::AtMostOnce));
    c.deliver_with(delivery(msg("q/r", b"x", Qos::AtMostOnce), 2, Qos::AtMostOnce));
    assert_eq!(idents(&mut c), [vec![5, 7], vec![5, 7], vec![7], vec![]]);
    // A retained message sent for a new subscription carries that subscription's only.
    let mut d = delivery(msg("z/b", b"x", Qos::AtMostOnce), 4, Qos::AtMostOnce);
    d.retained = true;
    c.deliver_with(d);
    assert_eq!(idents(&mut c), [vec![9]]);
    // Subscribing again without an identifier removes it [MQTT-3.8.4-3]; unsubscribing
    // removes the subscription's.
    let a = c.send5(subscribe5(5, None, "a/+", qos5(1)));
    assert!(matches!(&a[..], [Action::Subscribe { sub: 1, merge: true, .. }]), "{a:?}");
    c.send5(v5::Packet::Unsubscribe(v5::Unsubscribe {
        packet_id: pid(6),
        user_properties: Vec::new(),
        topic_filters: vec!["+/b".into()],
    }));
    c.frames();
    c.deliver_with(delivery(msg("a/b", b"x", Qos::AtMostOnce), 1, Qos::AtMostOnce));
    c.deliver_with(delivery(msg("z/b", b"x", Qos::AtMostOnce), 4, Qos::AtMostOnce));
    assert_eq!(idents(&mut c), [vec![], vec![9]]);
}

/// No Local: a subscription that would not have matched the connection's own message adds no
/// identifier to the copy another subscription brought [MQTT-3.8.3-3].
#[test]
fn subscription_identifiers_skip_no_local_on_own_messages() {
    let mut c = Client::connected5("s");
    c.send5(subscribe5(1, Some(1), "a/#", v5::SubscriptionOptions { no_local: true, ..qos5(1) }));
    c.send5(subscribe5(2, Some(2), "a/b", qos5(1)));
    c.frames();
    let mut m = msg("a/b", b"x", Qos::AtMostOnce);
    m.origin = Some(CONN_ID);
    c.deliver_with(delivery(m, 2, Qos::AtMostOnce));
    c.deliver_with(delivery(msg("a/b", b"x", Qos::AtMostOnce), 2, Qos::AtMostOnce));
    assert_eq!(idents(&mut c), [vec![2], vec![1, 2]]);
}

#[test]
fn subscription_identifiers_through_the_session_queue() {
    let mut c = persistent5("p", Limits::default());
    c.send5(subscribe5(1, Some(1), "a/#", qos5(1)));
    c.send5(subscribe5(2, Some(2), "a/b", qos5(1)));
    c.send5(subscribe5(3, Some(3), "z", qos5(1)));
    c.frames();
    c.deliver_with(Delivery {
        msg: std::sync::Arc::new(msg("a/b", b"x", Qos::AtLeastOnce)),
        sub: SESSION_SUB,
        qos: Qos::AtLeastOnce,
        durable: Some(DurableRef { queue: 9, seq: 1 }),
        redeliveries: 0,
        retained: false,
    });
    let p = &publishes5(c.recv5())[0];
    let ids: Vec<u32> = p.properties.as_ref().unwrap().subscription_ids.iter().map(|i| i.get()).collect();
    assert_eq!(ids, [1, 2], "[MQTT-3.3.4-4] every matching subscription's identifier");
}

/// A message from the session queue goes out at most at the highest QoS granted to the
/// matching subscriptions [MQTT-3.8.4-8]: the queue holds it at the QoS it was published
/// with, which may be higher.
#[test]
fn the_session_queue_delivers_at_most_the_granted_qos() {
    let mut c = persistent5("p", Limits::default());
    c.send5(subscribe5(1, None, "a/#", qos5(1)));
    c.send5(subscribe5(2, None, "a/two", qos5(2)));
    c.frames();
    let durable = |topic, seq| Delivery {
        msg: std::sync::Arc::new(msg(topic, b"x", Qos::ExactlyOnce)),
        sub: SESSION_SUB,
        qos: Qos::ExactlyOnce,
        durable: Some(DurableRef { queue: 9, seq }),
        redeliveries: 0,
        retained: false,
    };
    c.deliver_with(durable("a/one", 1));
    c.deliver_with(durable("a/two", 2));
    let got: Vec<(String, v5::QoS)> = publishes5(c.recv5()).into_iter().map(|p| (p.topic.to_string(), p.qos)).collect();
    assert_eq!(got, [("a/one".to_string(), v5::QoS::AtLeastOnce), ("a/two".to_string(), v5::QoS::ExactlyOnce)]);
}

// ---- Session expiry ----

fn open_session(a: &[Action]) -> (bool, Option<u32>) {
    match a {
        [Action::ClaimClientId(_), Action::OpenSession { persistent, expiry_secs, .. }, ..] => {
            (*persistent, *expiry_secs)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn session_expiry_goes_to_open_session() {
    for (expiry, want) in [(0, (false, Some(0))), (60, (true, Some(60))), (u32::MAX, (true, None))] {
        let mut c = Client::new();
        let a = c.send5(v5::Packet::Connect(Box::new(v5::Connect {
            session_expiry_interval_secs: expiry,
            ..connect5("e")
        })));
        assert_eq!(open_session(&a), want, "expiry {expiry}");
    }
    let mut c = Client::new();
    let a = c.send3(v3::Packet::Connect(Box::new(v3::Connect { clean_session: false, ..connect3("e") })));
    assert_eq!(open_session(&a), (true, None));
    let mut c = Client::new();
    let a = c.send3(v3::Packet::Connect(Box::new(connect3("e"))));
    assert_eq!(open_session(&a), (false, Some(0)));
}

fn disconnect_with_expiry(secs: Option<u32>) -> v5::Packet {
    v5::Packet::Disconnect(v5::Disconnect { session_expiry_interval_secs: secs, ..v5::Disconnect::default() })
}

#[test]
fn session_expiry_set_to_zero_on_disconnect_ends_the_session() {
    let mut c = persistent5("e", Limits::default());
    let a = c.send5(disconnect_with_expiry(Some(0)));
    assert!(
        matches!(&a[..], [Action::DeleteQueue(q), Action::Close(CloseReason::ClientDisconnect)] if q == "$session/e"),
        "{a:?}"
    );
    // Another value replaces CONNECT's (§3.14.2.2.2); 0xFFFFFFFF never expires; the same
    // value, or none, changes nothing.
    for (secs, want) in [(10, Some(Some(10))), (u32::MAX, Some(None)), (3600, None)] {
        let mut c = persistent5("e", Limits::default());
        let a = c.send5(disconnect_with_expiry(Some(secs)));
        match want {
            Some(expiry) => assert!(
                matches!(&a[..], [Action::SetSessionExpiry(e), Action::Close(CloseReason::ClientDisconnect)] if *e == expiry),
                "{secs}: {a:?}"
            ),
            None => assert!(matches!(&a[..], [Action::Close(CloseReason::ClientDisconnect)]), "{secs}: {a:?}"),
        }
    }
    let mut c = persistent5("e", Limits::default());
    let a = c.send5(disconnect_with_expiry(None));
    assert!(matches!(&a[..], [Action::Close(CloseReason::ClientDisconnect)]), "{a:?}");
    // Already 0: nothing to end early.
    let mut c = Client::connected5("e");
    let a = c.send5(disconnect_with_expiry(Some(0)));
    assert!(matches!(&a[..], [Action::Close(CloseReason::ClientDisconnect)]), "{a:?}");
    // [MQTT-3.14.2-2] From 0 to non-zero is a protocol error.
    let mut c = Client::connected5("e");
    let a = c.send5(disconnect_with_expiry(Some(5)));
    assert!(matches!(close_of(&a), Some(CloseReason::ProtocolError(_))), "{a:?}");
}

// ---- Will ----

fn will5(delay: Option<u32>, session_expiry: u32) -> v5::Connect {
    v5::Connect {
        session_expiry_interval_secs: session_expiry,
        last_will: Some(v5::LastWill {
            qos: v5::QoS::AtLeastOnce,
            retain: false,
            topic: "w".into(),
            message: "bye".into(),
            will_delay_interval_sec: delay,
            correlation_data: Some(Bytes::from_static(b"c")),
            message_expiry_interval: NonZeroU32::new(100),
            content_type: Some("text/plain".into()),
            user_properties: vec![("k".into(), "v".into())],
            is_utf8_payload: Some(true),
            response_topic: Some("re/w".into()),
        }),
        ..connect5("w")
    }
}

fn will_of(a: &[Action]) -> (diglot_core::Message, u32) {
    match a {
        [Action::Will { msg, delay_secs }] => (msg.clone(), *delay_secs),
        other => panic!("{other:?}"),
    }
}

#[test]
fn will_delay_is_capped_by_the_session_expiry() {
    for (delay, expiry, want) in
        [(Some(30), 60, 30), (Some(30), 10, 10), (Some(30), 0, 0), (Some(30), u32::MAX, 30), (None, 60, 0)]
    {
        let mut c = Client::new();
        c.open = Some(expiry > 0);
        c.send5(v5::Packet::Connect(Box::new(will5(delay, expiry))));
        c.frames();
        let (_, d) = will_of(&c.closed(CloseReason::PeerClosed));
        assert_eq!(d, want, "delay {delay:?}, expiry {expiry}");
    }
}

#[test]
fn will_properties_reach_the_message() {
    let mut c = Client::new();
    c.open = Some(true);
    c.send5(v5::Packet::Connect(Box::new(will5(Some(20), 60))));
    c.frames();
    let (msg, delay) = will_of(&c.closed(CloseReason::KeepAliveTimeout));
    assert_eq!(delay, 20);
    let p = msg.props.as_deref().unwrap();
    assert_eq!(p.content_type.as_deref(), Some("text/plain"));
    assert_eq!(p.response_topic.as_deref(), Some("re/w"));
    assert_eq!(p.correlation_data.as_deref(), Some(&b"c"[..]));
    assert!(p.utf8_payload);
    assert_eq!(p.user, [("k".to_string(), "v".to_string())]);
    assert_eq!(msg.qos, Qos::AtLeastOnce);
    // The expiry counts from when the will is due: after the delay.
    assert_eq!(msg.expires_at.map(|e| e - msg.received_at), Some(Duration::from_secs(120)));
}

/// The will goes out when the session ends [MQTT-3.1.3-9]: a DISCONNECT with reason 0x04
/// that ends the session (expiry 0) sends a delayed will at once, and one that shortens it to
/// 5 s sends it after 5 s, not the 30 s asked for.
#[test]
fn disconnect_changing_the_session_expiry_caps_the_will_delay() {
    for (expiry, delay) in [(0, 0), (5, 5)] {
        let mut c = Client::new();
        c.open = Some(true);
        c.send5(v5::Packet::Connect(Box::new(will5(Some(30), 60))));
        c.frames();
        let a = c.send5(v5::Packet::Disconnect(v5::Disconnect {
            reason_code: v5::DisconnectReasonCode::DisconnectWithWillMessage,
            session_expiry_interval_secs: Some(expiry),
            ..v5::Disconnect::default()
        }));
        match expiry {
            0 => assert!(matches!(&a[..], [Action::DeleteQueue(_), Action::Close(_)]), "{a:?}"),
            _ => assert!(matches!(&a[..], [Action::SetSessionExpiry(Some(5)), Action::Close(_)]), "{a:?}"),
        }
        assert_eq!(will_of(&c.closed(CloseReason::ClientDisconnect)).1, delay, "expiry {expiry}");
    }
}

// ---- Request/Response Information, Request Problem Information, reason strings ----

#[test]
fn response_information() {
    let mut c = Client::new();
    c.send5(v5::Packet::Connect(Box::new(v5::Connect { request_response_info: true, ..connect5("dev-1") })));
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::ConnectAck(a)] if a.response_info.as_deref() == Some("$response/dev-1/"))
    );
    // A client id that cannot be part of a topic name gets none.
    let mut c = Client::new();
    c.send5(v5::Packet::Connect(Box::new(v5::Connect { request_response_info: true, ..connect5("a+b") })));
    assert!(matches!(&c.recv5()[..], [v5::Packet::ConnectAck(a)] if a.response_info.is_none()));
}

#[test]
fn reason_strings_follow_request_problem_information() {
    let mut c = Client::connected5("p");
    let a = c.send5(v5::Packet::Publish(Box::new(publish("a", b"x", 1, Some(3)))));
    let [Action::Publish { token: Some(t), .. }] = &a[..] else { panic!("{a:?}") };
    c.done(*t, Err(PublishError::QueueFull("queue/orders".into())));
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::PublishAck(a)] if a.reason_string.as_deref() == Some("queue full: queue/orders"))
    );
    // Success carries none.
    let a = c.send5(v5::Packet::Publish(Box::new(publish("a", b"x", 1, Some(4)))));
    let [Action::Publish { token: Some(t), .. }] = &a[..] else { panic!("{a:?}") };
    c.done(*t, Ok(()));
    assert!(matches!(&c.recv5()[..], [v5::Packet::PublishAck(a)] if a.reason_string.is_none()));
    // The server's DISCONNECT says why.
    c.send5(v5::Packet::PingResponse);
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::Disconnect(d)] if d.reason_string.as_deref().is_some_and(|r| r.contains("PINGRESP")))
    );

    // Request Problem Information 0: none on PUBACK or SUBACK [MQTT-3.1.2-29], still on
    // DISCONNECT.
    let mut c = Client::new();
    c.connect5(v5::Connect { request_problem_info: false, ..connect5("p") });
    let a = c.send5(v5::Packet::Publish(Box::new(publish("a", b"x", 1, Some(3)))));
    let [Action::Publish { token: Some(t), .. }] = &a[..] else { panic!("{a:?}") };
    c.done(*t, Err(PublishError::Store("disk".into())));
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::PublishAck(a)] if a.reason_string.is_none() && a.reason_code == v5::PublishAckReason::UnspecifiedError)
    );
    c.send5(subscribe5(1, None, "a/#/b", qos5(0)));
    assert!(matches!(&c.recv5()[..], [v5::Packet::SubscribeAck(a)] if a.reason_string.is_none()));
    c.server_close(CloseReason::ServerShutdown);
    assert!(matches!(&c.recv5()[..], [v5::Packet::Disconnect(d)] if d.reason_string.is_some()));
}

#[test]
fn reason_string_is_dropped_when_too_large_for_the_client() {
    let mut c = Client::new();
    c.connect5(v5::Connect { max_packet_size: NonZeroU32::new(12), ..connect5("p") });
    c.server_close(CloseReason::ProtocolError("a long explanation that does not fit".into()));
    let got = c.recv5();
    assert!(
        matches!(&got[..], [v5::Packet::Disconnect(d)] if d.reason_string.is_none() && d.reason_code == v5::DisconnectReasonCode::ProtocolError),
        "{got:?}"
    );
}

// ---- AUTH and bad input ----

#[test]
fn auth_without_a_method_is_a_protocol_error() {
    let mut c = Client::connected5("p");
    let a = c.send5(v5::Packet::Auth(v5::Auth::default()));
    assert!(matches!(close_of(&a), Some(CloseReason::ProtocolError(_))), "{a:?}");
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::Disconnect(d)] if d.reason_code == v5::DisconnectReasonCode::ProtocolError)
    );
}

#[test]
fn qos_3_is_malformed() {
    let mut c = Client::connected5("p");
    let a = c.raw(&[0x36, 0x06, 0x00, 0x01, b'a', 0x00, 0x01, 0x00]);
    assert!(close_of(&a).is_some(), "{a:?}");
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::Disconnect(d)] if d.reason_code == v5::DisconnectReasonCode::MalformedPacket)
    );
    let mut c = Client::connected3("p");
    let a = c.raw(&[0x36, 0x05, 0x00, 0x01, b'a', 0x00, 0x01]);
    assert!(close_of(&a).is_some(), "{a:?}");
    assert!(c.frames().is_empty());
}
