//! Shared subscriptions (`$share/<group>/<filter>`) and named-queue consumers
//! (`$queue/<name>`).

use diglot_core::{Action, CloseReason, Delivery, DurableRef, Limits, Qos, RetainHandling};
use diglot_mqtt::Config;
use rmqtt_codec::{v3, v5};

use crate::common::*;

#[test]
fn shared_subscription_v5() {
    let mut c = Client::connected5("s");
    let o = v5::SubscriptionOptions { retain_handling: v5::RetainHandling::AtSubscribe, ..qos5(1) };
    let a = c.send5(subscribe5(1, None, "$share/workers/jobs/+", o));
    let [Action::Subscribe { filter, sub: 1, qos: Qos::AtLeastOnce, no_local: false, merge: true, retained, share }] =
        &a[..]
    else {
        panic!("{a:?}")
    };
    assert_eq!(filter.as_str(), "jobs/+");
    assert_eq!(share.as_deref(), Some("workers"));
    assert_eq!(*retained, RetainHandling::Always);
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::SubscribeAck(a)] if a.status == [v5::SubscribeAckReason::GrantedQos1])
    );
    // Another group on the same filter, and the plain filter, are other subscriptions.
    let a = c.send5(subscribe5(2, None, "$share/other/jobs/+", qos5(0)));
    assert!(matches!(&a[..], [Action::Subscribe { sub: 2, .. }]), "{a:?}");
    let a = c.send5(subscribe5(3, None, "jobs/+", qos5(0)));
    assert!(matches!(&a[..], [Action::Subscribe { sub: 3, share: None, .. }]), "{a:?}");
    c.frames();

    let a = c.send5(v5::Packet::Unsubscribe(v5::Unsubscribe {
        packet_id: pid(4),
        user_properties: Vec::new(),
        topic_filters: vec!["$share/workers/jobs/+".into(), "$share/nobody/jobs/+".into(), "$share/x".into()],
    }));
    assert!(matches!(&a[..], [Action::Unsubscribe { filter, sub: 1 }] if filter.as_str() == "jobs/+"), "{a:?}");
    use v5::UnsubscribeAckReason::*;
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::UnsubscribeAck(a)] if a.status == [Success, NoSubscriptionExisted, TopicFilterInvalid])
    );
}

#[test]
fn invalid_shared_subscriptions() {
    let mut c = Client::connected5("s");
    for f in ["$share/g", "$share//a", "$share/g+/a", "$share/g#/a", "$share/g/", "$share/g/a/#/b"] {
        let a = c.send5(subscribe5(1, None, f, qos5(0)));
        assert!(a.is_empty(), "{f}: {a:?}");
        assert!(
            matches!(&c.recv5()[..], [v5::Packet::SubscribeAck(a)] if a.status == [v5::SubscribeAckReason::TopicFilterInvalid]),
            "{f}"
        );
    }
}

#[test]
fn no_local_on_a_shared_subscription_is_a_protocol_error() {
    let mut c = Client::connected5("s");
    let p = v5::Packet::Subscribe(v5::Subscribe {
        packet_id: pid(1),
        id: None,
        user_properties: Vec::new(),
        topic_filters: vec![
            ("fine".into(), qos5(0)),
            ("$share/g/a".into(), v5::SubscriptionOptions { no_local: true, ..qos5(0) }),
        ],
    });
    let a = c.send5(p);
    assert!(matches!(&a[..], [Action::Close(CloseReason::ProtocolError(_))]), "nothing subscribed: {a:?}");
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::Disconnect(d)] if d.reason_code == v5::DisconnectReasonCode::ProtocolError)
    );
}

#[test]
fn shared_subscription_v3_and_in_a_persistent_session() {
    let mut c = Client::connected3("s");
    let a = c.send3(v3::Packet::Subscribe {
        packet_id: pid(1),
        topic_filters: vec![("$share/g/a/#".into(), v3::QoS::ExactlyOnce)],
    });
    assert!(matches!(&a[..], [Action::Subscribe { share: Some(g), qos: Qos::ExactlyOnce, .. }] if g == "g"), "{a:?}");

    // Still a subscription of the connection, not a binding of the session queue; the
    // session keeps it apart, and forgets it on UNSUBSCRIBE.
    let mut c = persistent3("p", Limits::default());
    let a = c.send3(v3::Packet::Subscribe {
        packet_id: pid(1),
        topic_filters: vec![("$share/g/a".into(), v3::QoS::AtLeastOnce)],
    });
    assert!(
        matches!(&a[..], [Action::KeepSubscription { sub: k, keep: true }, Action::Subscribe { share: Some(_), sub: 1, .. }]
            if k.filter == "$share/g/a" && k.qos == 1),
        "{a:?}"
    );
    c.frames();
    let a = c.send3(v3::Packet::Unsubscribe { packet_id: pid(2), topic_filters: vec!["$share/g/a".into()] });
    assert!(
        matches!(&a[..], [Action::KeepSubscription { sub: k, keep: false }, Action::Unsubscribe { sub: 1, .. }]
            if k.filter == "$share/g/a"),
        "{a:?}"
    );
}

#[test]
fn queue_consumer_with_acknowledgements() {
    let limits = Limits { max_inflight: 4, ..Limits::default() };
    let mut c = Client::with(limits, Config::default());
    c.connect5(connect5("w"));
    let a = c.send5(subscribe5(1, None, "$queue/orders", qos5(1)));
    let [Action::Bind { queue, filter, qos: Qos::AtLeastOnce }, Action::Consume { queue: q2, sub: 1, prefetch: 4, auto_ack: false }] =
        &a[..]
    else {
        panic!("{a:?}")
    };
    assert_eq!((queue.as_str(), filter.as_str(), q2.as_str()), ("queue/orders", "$queue/orders", "queue/orders"));
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::SubscribeAck(a)] if a.status == [v5::SubscribeAckReason::GrantedQos1])
    );
    // The same SUBSCRIBE again keeps the consumer.
    assert!(c.send5(subscribe5(2, None, "$queue/orders", qos5(2))).is_empty());
    c.frames();

    let d = Delivery {
        msg: std::sync::Arc::new(msg("$queue/orders", b"o1", Qos::AtLeastOnce)),
        sub: 1,
        qos: Qos::AtLeastOnce,
        durable: Some(DurableRef { queue: 3, seq: 10 }),
        redeliveries: 0,
        retained: false,
    };
    c.deliver_with(d);
    let p = &publishes5(c.recv5())[0];
    assert_eq!((p.qos, p.packet_id, &p.topic[..]), (v5::QoS::AtLeastOnce, Some(pid(10)), "$queue/orders"));
    let a = c.send5(v5::Packet::PublishAck(ack5(10, v5::PublishAckReason::Success)));
    assert!(matches!(&a[..], [Action::Ack(DurableRef { queue: 3, seq: 10 })]), "{a:?}");

    let a = c.send5(v5::Packet::Unsubscribe(v5::Unsubscribe {
        packet_id: pid(3),
        user_properties: Vec::new(),
        topic_filters: vec!["$queue/orders".into(), "$queue/never".into()],
    }));
    assert!(matches!(&a[..], [Action::Unconsume { queue, sub: 1 }] if queue == "queue/orders"), "{a:?}");
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::UnsubscribeAck(a)] if a.status == [v5::UnsubscribeAckReason::Success, v5::UnsubscribeAckReason::NoSubscriptionExisted])
    );
}

#[test]
fn queue_consumer_at_qos0_is_auto_ack() {
    let mut c = Client::connected3("w");
    let a = c.send3(v3::Packet::Subscribe {
        packet_id: pid(1),
        topic_filters: vec![("$queue/dlq.orders".into(), v3::QoS::AtMostOnce)],
    });
    assert!(
        matches!(&a[..], [Action::Bind { queue, .. }, Action::Consume { queue: q2, auto_ack: true, .. }] if queue == "$dlq/queue/orders" && q2 == queue),
        "{a:?}"
    );
    c.frames();
    let d = Delivery {
        msg: std::sync::Arc::new(msg("$queue/dlq.orders", b"x", Qos::AtLeastOnce)),
        sub: 1,
        qos: Qos::AtLeastOnce,
        durable: Some(DurableRef { queue: 3, seq: 1 }),
        redeliveries: 0,
        retained: false,
    };
    c.deliver_with(d);
    let p = &publishes3(c.recv3())[0];
    assert_eq!((p.qos, p.packet_id), (v3::QoS::AtMostOnce, None), "the queue deleted it on handover");
    // Raising the QoS needs a consumer that waits for acknowledgements.
    let a = c.send3(v3::Packet::Subscribe {
        packet_id: pid(2),
        topic_filters: vec![("$queue/dlq.orders".into(), v3::QoS::AtLeastOnce)],
    });
    assert!(
        matches!(
            &a[..],
            [Action::Unconsume { sub: 1, .. }, Action::Bind { .. }, Action::Consume { sub: 1, auto_ack: false, .. }]
        ),
        "{a:?}"
    );
}

#[test]
fn invalid_queue_names() {
    let mut c = Client::connected3("w");
    let a = c.send3(v3::Packet::Subscribe {
        packet_id: pid(1),
        topic_filters: vec![("$queue/".into(), v3::QoS::AtMostOnce), ("$queue/a/+".into(), v3::QoS::AtMostOnce)],
    });
    assert!(a.is_empty(), "{a:?}");
    use v3::SubscribeReturnCode::*;
    assert!(matches!(&c.recv3()[..], [v3::Packet::SubscribeAck { status, .. }] if status == &[Failure, Failure]));
}
