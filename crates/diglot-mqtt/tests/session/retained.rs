//! Retained messages: RETAIN in, Retain Handling, RETAIN out and Retain As Published.

use diglot_core::{Action, Delivery, DurableRef, Limits, Qos, RetainHandling};
use diglot_mqtt::SESSION_SUB;
use rmqtt_codec::types::Publish;
use rmqtt_codec::{v3, v5};

use crate::common::*;

fn retained_publish(topic: &str, payload: &'static [u8]) -> Publish {
    Publish { retain: true, ..publish(topic, payload, 1, Some(1)) }
}

#[test]
fn retain_flag_is_routed_in_both_versions() {
    let mut c = Client::connected3("p");
    let a = c.send3(v3::Packet::Publish(Box::new(retained_publish("s/1", b"on"))));
    assert!(matches!(&a[..], [Action::Publish { msg, .. }] if msg.retain && &msg.payload[..] == b"on"), "{a:?}");
    // An empty payload clears the retained message: routed like any other, the driver clears.
    let a = c.send3(v3::Packet::Publish(Box::new(retained_publish("s/1", b""))));
    assert!(matches!(&a[..], [Action::Publish { msg, .. }] if msg.retain && msg.payload.is_empty()), "{a:?}");

    // MQTT 5 announces Retain Available and takes RETAIN=1 (no 0x9A any more).
    let mut c = Client::connected5("p");
    let a = c.send5(v5::Packet::Publish(Box::new(retained_publish("s/1", b"on"))));
    let [Action::Publish { msg, token: Some(t) }] = &a[..] else { panic!("{a:?}") };
    assert!(msg.retain);
    c.done(*t, Ok(()));
    assert!(matches!(&c.recv5()[..], [v5::Packet::PublishAck(a)] if a.reason_code == v5::PublishAckReason::Success));
}

fn handling(a: &[Action]) -> RetainHandling {
    match a {
        [Action::Subscribe { retained, .. }] => *retained,
        other => panic!("{other:?}"),
    }
}

#[test]
fn retain_handling_maps_to_the_core() {
    let mut c = Client::connected3("s");
    let a =
        c.send3(v3::Packet::Subscribe { packet_id: pid(1), topic_filters: vec![("a".into(), v3::QoS::AtMostOnce)] });
    assert_eq!(handling(&a), RetainHandling::Always);

    let mut c = Client::connected5("s");
    for (rh, want) in [
        (v5::RetainHandling::AtSubscribe, RetainHandling::Always),
        (v5::RetainHandling::AtSubscribeNew, RetainHandling::IfNew),
        (v5::RetainHandling::NoAtSubscribe, RetainHandling::Never),
    ] {
        let o = v5::SubscriptionOptions { retain_handling: rh, ..qos5(1) };
        assert_eq!(handling(&c.send5(subscribe5(1, None, "a", o))), want);
    }
}

#[test]
fn retain_handling_in_a_persistent_session_sends_retained_after_the_bind() {
    let mut c = persistent5("p", Limits::default());
    let sub = |c: &mut Client, rh| {
        let o = v5::SubscriptionOptions { retain_handling: rh, ..qos5(1) };
        c.send5(subscribe5(1, None, "a/#", o))
    };
    let a = sub(&mut c, v5::RetainHandling::AtSubscribeNew);
    assert!(
        matches!(&a[..], [Action::Bind { .. }, Action::SendRetained { filter, sub: 1, qos: Qos::AtLeastOnce, .. }] if filter.as_str() == "a/#"),
        "{a:?}"
    );
    // Not new any more.
    let a = sub(&mut c, v5::RetainHandling::AtSubscribeNew);
    assert!(matches!(&a[..], [Action::Bind { .. }]), "{a:?}");
    let a = sub(&mut c, v5::RetainHandling::AtSubscribe);
    assert!(matches!(&a[..], [Action::Bind { .. }, Action::SendRetained { .. }]), "{a:?}");
    let a = sub(&mut c, v5::RetainHandling::NoAtSubscribe);
    assert!(matches!(&a[..], [Action::Bind { .. }]), "{a:?}");
}

fn retained_msg(topic: &str) -> diglot_core::Message {
    let mut m = msg(topic, b"r", Qos::AtMostOnce);
    m.retain = true;
    m
}

#[test]
fn retain_flag_out_v3() {
    let mut c = Client::connected3("s");
    c.send3(v3::Packet::Subscribe { packet_id: pid(1), topic_filters: vec![("a".into(), v3::QoS::AtMostOnce)] });
    c.frames();
    // [MQTT-3.3.1-8] Sent because of the new subscription: RETAIN=1.
    let mut d = delivery(retained_msg("a"), 1, Qos::AtMostOnce);
    d.retained = true;
    c.deliver_with(d);
    // [MQTT-3.3.1-9] A message published with RETAIN to an established subscription: 0.
    c.deliver_with(delivery(retained_msg("a"), 1, Qos::AtMostOnce));
    let got = publishes3(c.recv3());
    assert_eq!(got.iter().map(|p| p.retain).collect::<Vec<_>>(), [true, false]);
}

#[test]
fn retain_as_published_v5() {
    let mut c = Client::connected5("s");
    c.send5(subscribe5(1, None, "plain", qos5(0)));
    let rap = v5::SubscriptionOptions { retain_as_published: true, ..qos5(0) };
    c.send5(subscribe5(2, None, "rap", rap));
    c.frames();
    c.deliver_with(delivery(retained_msg("plain"), 1, Qos::AtMostOnce));
    c.deliver_with(delivery(retained_msg("rap"), 2, Qos::AtMostOnce));
    c.deliver_with(delivery(msg("rap", b"not retained", Qos::AtMostOnce), 2, Qos::AtMostOnce));
    let mut d = delivery(retained_msg("plain"), 1, Qos::AtMostOnce);
    d.retained = true;
    c.deliver_with(d);
    let got = publishes5(c.recv5());
    assert_eq!(got.iter().map(|p| p.retain).collect::<Vec<_>>(), [false, true, false, true]);
}

/// The router sends one copy for overlapping subscriptions, naming the one with the highest
/// QoS; the copy keeps the RETAIN flag if any subscription that matches asked for Retain As
/// Published, whichever the router named and whatever the connection's other subscriptions.
#[test]
fn retain_as_published_on_a_merged_copy_if_any_matching_subscription_asked() {
    let mut c = Client::connected5("s");
    let rap = v5::SubscriptionOptions { retain_as_published: true, ..qos5(0) };
    c.send5(subscribe5(1, None, "a/#", rap));
    c.send5(subscribe5(2, None, "a/b", qos5(1)));
    c.frames();
    c.deliver_with(delivery(retained_msg("a/b"), 2, Qos::AtMostOnce));
    c.deliver_with(delivery(retained_msg("a/c"), 1, Qos::AtMostOnce));
    assert_eq!(publishes5(c.recv5()).iter().map(|p| p.retain).collect::<Vec<_>>(), [true, true]);
    c.send5(v5::Packet::Unsubscribe(v5::Unsubscribe {
        packet_id: pid(3),
        user_properties: Vec::new(),
        topic_filters: vec!["a/#".into()],
    }));
    c.frames();
    c.deliver_with(delivery(retained_msg("a/b"), 2, Qos::AtMostOnce));
    assert_eq!(publishes5(c.recv5()).iter().map(|p| p.retain).collect::<Vec<_>>(), [false]);
}

#[test]
fn retain_as_published_through_the_session_queue() {
    let mut c = persistent5("p", Limits::default());
    let rap = v5::SubscriptionOptions { retain_as_published: true, ..qos5(1) };
    c.send5(subscribe5(1, None, "rap/#", rap));
    c.send5(subscribe5(2, None, "plain/#", qos5(1)));
    c.frames();
    let durable = |m, seq| Delivery {
        msg: std::sync::Arc::new(m),
        sub: SESSION_SUB,
        qos: Qos::AtLeastOnce,
        durable: Some(DurableRef { queue: 9, seq }),
        redeliveries: 0,
        retained: false,
    };
    c.deliver_with(durable(retained_msg("rap/x"), 1));
    c.deliver_with(durable(retained_msg("plain/x"), 2));
    let got = publishes5(c.recv5());
    assert_eq!(got.iter().map(|p| p.retain).collect::<Vec<_>>(), [true, false]);
}
