//! SUBSCRIBE and UNSUBSCRIBE.

use diglot_core::{Action, Limits, Qos};
use diglot_mqtt::Config;
use rmqtt_codec::{v3, v5};

use crate::common::*;

fn subs(a: &[Action]) -> Vec<(String, u32, Qos, bool)> {
    a.iter()
        .map(|a| match a {
            Action::Subscribe { filter, sub, qos, no_local, merge, .. } => {
                assert!(merge, "MQTT subscriptions merge");
                (filter.as_str().to_string(), *sub, *qos, *no_local)
            }
            other => panic!("{other:?}"),
        })
        .collect()
}

fn opts(qos: v5::QoS, no_local: bool) -> v5::SubscriptionOptions {
    v5::SubscriptionOptions { qos, no_local, ..v5::SubscriptionOptions::default() }
}

#[test]
fn invalid_filter_among_valid_ones() {
    let mut c = Client::connected3("s");
    let a = c.send3(v3::Packet::Subscribe {
        packet_id: pid(10),
        topic_filters: vec![
            ("a/+".into(), v3::QoS::AtLeastOnce),
            ("a/#/b".into(), v3::QoS::AtLeastOnce),
            ("x".into(), v3::QoS::ExactlyOnce),
            ("$share/g/x".into(), v3::QoS::AtMostOnce),
        ],
    });
    assert_eq!(
        subs(&a),
        [
            ("a/+".into(), 1, Qos::AtLeastOnce, false),
            ("x".into(), 2, Qos::ExactlyOnce, false),
            ("x".into(), 3, Qos::AtMostOnce, false)
        ]
    );
    assert!(matches!(&a[2], Action::Subscribe { share: Some(g), .. } if g == "g"), "{a:?}");
    use v3::SubscribeReturnCode::*;
    assert_eq!(
        c.recv3(),
        [v3::Packet::SubscribeAck {
            packet_id: pid(10),
            status: vec![
                Success(v3::QoS::AtLeastOnce),
                Failure,
                Success(v3::QoS::ExactlyOnce),
                Success(v3::QoS::AtMostOnce)
            ]
        }]
    );
    // [MQTT-3.8.4-3] The same filter again keeps its id, so the router replaces it.
    let a =
        c.send3(v3::Packet::Subscribe { packet_id: pid(11), topic_filters: vec![("x".into(), v3::QoS::AtMostOnce)] });
    assert_eq!(subs(&a), [("x".into(), 2, Qos::AtMostOnce, false)]);
}

#[test]
fn mqtt5_reason_codes() {
    let mut c = Client::connected5("s");
    let a = c.send5(v5::Packet::Subscribe(v5::Subscribe {
        packet_id: pid(3),
        id: None,
        user_properties: Vec::new(),
        topic_filters: vec![
            ("a/b".into(), opts(v5::QoS::ExactlyOnce, true)),
            ("a+".into(), opts(v5::QoS::AtMostOnce, false)),
            ("$share//a".into(), opts(v5::QoS::AtMostOnce, false)),
        ],
    }));
    assert_eq!(subs(&a), [("a/b".into(), 1, Qos::ExactlyOnce, true)]);
    let got = c.recv5();
    let [v5::Packet::SubscribeAck(ack)] = &got[..] else { panic!("{got:?}") };
    use v5::SubscribeAckReason::*;
    assert_eq!(ack.packet_id, pid(3));
    assert_eq!(ack.status, [GrantedQos2, TopicFilterInvalid, TopicFilterInvalid]);
    assert_eq!(ack.reason_string.as_deref(), Some("invalid topic filter"));
}

#[test]
fn subscription_quota() {
    let limits = Limits { max_subscriptions: 1, ..Limits::default() };
    let mut c = Client::with(limits.clone(), Config::default());
    c.connect3(connect3("s"));
    let a = c.send3(v3::Packet::Subscribe {
        packet_id: pid(1),
        topic_filters: vec![
            ("a".into(), v3::QoS::AtMostOnce),
            ("b".into(), v3::QoS::AtMostOnce),
            ("a".into(), v3::QoS::AtLeastOnce),
        ],
    });
    assert_eq!(subs(&a).len(), 2, "a twice, b refused");
    use v3::SubscribeReturnCode::*;
    assert!(
        matches!(&c.recv3()[..], [v3::Packet::SubscribeAck { status, .. }] if status == &[Success(v3::QoS::AtMostOnce), Failure, Success(v3::QoS::AtLeastOnce)])
    );

    let mut c = Client::with(limits, Config::default());
    c.connect5(connect5("s"));
    c.send5(v5::Packet::Subscribe(v5::Subscribe {
        packet_id: pid(1),
        id: None,
        user_properties: Vec::new(),
        topic_filters: vec![
            ("a".into(), opts(v5::QoS::AtMostOnce, false)),
            ("b".into(), opts(v5::QoS::AtMostOnce, false)),
        ],
    }));
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::SubscribeAck(a)] if a.status == [v5::SubscribeAckReason::GrantedQos0, v5::SubscribeAckReason::QuotaExceeded])
    );
}

#[test]
fn unsubscribe() {
    let mut c = Client::connected5("s");
    c.send5(v5::Packet::Subscribe(v5::Subscribe {
        packet_id: pid(1),
        id: None,
        user_properties: Vec::new(),
        topic_filters: vec![("a/#".into(), opts(v5::QoS::AtLeastOnce, false))],
    }));
    c.frames();
    let a = c.send5(v5::Packet::Unsubscribe(v5::Unsubscribe {
        packet_id: pid(2),
        user_properties: Vec::new(),
        topic_filters: vec!["a/#".into(), "b".into()],
    }));
    assert!(matches!(&a[..], [Action::Unsubscribe { filter, sub: 1 }] if filter.as_str() == "a/#"), "{a:?}");
    let got = c.recv5();
    let [v5::Packet::UnsubscribeAck(ack)] = &got[..] else { panic!("{got:?}") };
    assert_eq!(ack.packet_id, pid(2));
    assert_eq!(ack.status, [v5::UnsubscribeAckReason::Success, v5::UnsubscribeAckReason::NoSubscriptionExisted]);

    let mut c = Client::connected3("s");
    c.send3(v3::Packet::Subscribe { packet_id: pid(1), topic_filters: vec![("a".into(), v3::QoS::AtMostOnce)] });
    c.frames();
    let a = c.send3(v3::Packet::Unsubscribe { packet_id: pid(9), topic_filters: vec!["a".into()] });
    assert_eq!(a.len(), 1);
    assert_eq!(c.recv3(), [v3::Packet::UnsubscribeAck { packet_id: pid(9) }]);
}

#[test]
fn another_sessions_temp_replies_cannot_be_subscribed() {
    let mut c = Client::connected3("snoop");
    let a = c.send3(v3::Packet::Subscribe {
        packet_id: pid(3),
        topic_filters: vec![
            ("$temp/1-abc/x".into(), v3::QoS::AtLeastOnce),
            ("$share/g/$temp/#".into(), v3::QoS::AtLeastOnce),
            ("ok/+".into(), v3::QoS::AtLeastOnce),
        ],
    });
    assert_eq!(subs(&a), [("ok/+".into(), 1, Qos::AtLeastOnce, false)]);
    use v3::SubscribeReturnCode::*;
    assert_eq!(
        c.recv3(),
        [v3::Packet::SubscribeAck { packet_id: pid(3), status: vec![Failure, Failure, Success(v3::QoS::AtLeastOnce)] }]
    );
}
