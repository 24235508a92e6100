//! PUBLISH in both directions, the QoS flows, framing across reads, and size limits.

use std::num::NonZeroU32;

use bytes::Bytes;
use diglot_core::{Action, Adapter, CloseReason, Limits, Message, Props, PublishError, Qos};
use diglot_mqtt::Config;
use rmqtt_codec::v5::PublishProperties;
use rmqtt_codec::{v3, v5};

use crate::common::*;

fn publish_action(a: &[Action]) -> (Message, Option<u64>) {
    match a {
        [Action::Publish { msg, token }] => (msg.clone(), *token),
        _ => panic!("expected one publish, got {a:?}"),
    }
}

#[test]
fn qos0_is_routed_without_reply() {
    let mut c = Client::connected3("p");
    let a = c.send3(v3::Packet::Publish(Box::new(publish("a/b", b"hi", 0, None))));
    let (msg, token) = publish_action(&a);
    assert_eq!(token, None);
    assert_eq!(msg.topic.as_str(), "a/b");
    assert_eq!(&msg.payload[..], b"hi");
    assert_eq!(msg.qos, Qos::AtMostOnce);
    assert_eq!(msg.origin, Some(CONN_ID));
    assert!(c.frames().is_empty());
}

#[test]
fn qos1_is_acked_after_routing() {
    let mut c = Client::connected3("p");
    let a = c.send3(v3::Packet::Publish(Box::new(publish("a", b"x", 1, Some(9)))));
    let (_, token) = publish_action(&a);
    assert!(c.frames().is_empty(), "no PUBACK before the message is routed");
    assert!(c.done(token.unwrap(), Ok(())).is_empty());
    assert_eq!(c.recv3(), [v3::Packet::PublishAck { packet_id: pid(9) }]);
}

#[test]
fn refused_qos1_publish() {
    let mut c = Client::connected3("p");
    let (_, token) = publish_action(&c.send3(v3::Packet::Publish(Box::new(publish("a", b"x", 1, Some(9))))));
    let a = c.done(token.unwrap(), Err(PublishError::Refused("no".into())));
    assert!(matches!(close_of(&a), Some(CloseReason::ProtocolError(_))), "3.x cannot nack: {a:?}");

    let mut c = Client::connected5("p");
    let (_, token) = publish_action(&c.send5(v5::Packet::Publish(Box::new(publish("a", b"x", 1, Some(9))))));
    assert!(c.done(token.unwrap(), Err(PublishError::Refused("no".into()))).is_empty());
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::PublishAck(ack)] if ack.reason_code == v5::PublishAckReason::UnspecifiedError)
    );
}

#[test]
fn qos2_exactly_once_with_duplicate() {
    let mut c = Client::connected3("p");
    let p = publish("a", b"x", 2, Some(5));
    let (msg, token) = publish_action(&c.send3(v3::Packet::Publish(Box::new(p.clone()))));
    assert_eq!(msg.qos, Qos::ExactlyOnce);
    c.done(token.unwrap(), Ok(()));
    assert_eq!(c.recv3(), [v3::Packet::PublishReceived { packet_id: pid(5) }]);
    // The PUBREC was lost; the client re-sends with DUP: answered, not routed again.
    let dup = rmqtt_codec::types::Publish { dup: true, ..p.clone() };
    assert!(c.send3(v3::Packet::Publish(Box::new(dup))).is_empty());
    assert_eq!(c.recv3(), [v3::Packet::PublishReceived { packet_id: pid(5) }]);
    assert!(c.send3(v3::Packet::PublishRelease { packet_id: pid(5) }).is_empty());
    assert_eq!(c.recv3(), [v3::Packet::PublishComplete { packet_id: pid(5) }]);
    // After PUBCOMP the id starts a new publication.
    let (_, token) = publish_action(&c.send3(v3::Packet::Publish(Box::new(p))));
    assert!(token.is_some());
}

#[test]
fn pubrel_for_an_unknown_id() {
    let mut c = Client::connected3("p");
    c.send3(v3::Packet::PublishRelease { packet_id: pid(3) });
    assert_eq!(c.recv3(), [v3::Packet::PublishComplete { packet_id: pid(3) }]);

    let mut c = Client::connected5("p");
    c.send5(v5::Packet::PublishRelease(v5::PublishAck2 {
        packet_id: pid(3),
        reason_code: v5::PublishAck2Reason::Success,
        properties: Vec::new(),
        reason_string: None,
    }));
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::PublishComplete(a)] if a.reason_code == v5::PublishAck2Reason::PacketIdNotFound)
    );
}

#[test]
fn qos2_awaiting_pubrel_is_bounded() {
    let limits = Limits { max_inflight: 2, ..Limits::default() };
    let mut c = Client::with(limits.clone(), Config::default());
    c.connect5(connect5("p"));
    for id in 1..=2 {
        let (_, token) = publish_action(&c.send5(v5::Packet::Publish(Box::new(publish("a", b"x", 2, Some(id))))));
        c.done(token.unwrap(), Ok(()));
    }
    assert_eq!(c.recv5().len(), 2);
    let a = c.send5(v5::Packet::Publish(Box::new(publish("a", b"x", 2, Some(3)))));
    assert!(matches!(close_of(&a), Some(CloseReason::ProtocolError(_))), "{a:?}");
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::Disconnect(d)] if d.reason_code == v5::DisconnectReasonCode::ReceiveMaximumExceeded)
    );

    // MQTT 3.x cannot be told a bound, so a 3.1.1 client is not closed for it: the set is
    // bounded by the packet identifier space.
    let mut c = Client::with(limits, Config::default());
    c.connect3(connect3("p"));
    for id in 1..=5 {
        let a = c.send3(v3::Packet::Publish(Box::new(publish("a", b"x", 2, Some(id)))));
        assert!(close_of(&a).is_none(), "{a:?}");
    }
}

#[test]
fn invalid_topic_name() {
    let mut c = Client::connected3("p");
    let a = c.send3(v3::Packet::Publish(Box::new(publish("a/+", b"x", 0, None))));
    assert!(matches!(close_of(&a), Some(CloseReason::ProtocolError(_))), "{a:?}");
    assert!(c.frames().is_empty());

    let mut c = Client::connected5("p");
    let a = c.send5(v5::Packet::Publish(Box::new(publish("a/#", b"x", 1, Some(1)))));
    assert!(close_of(&a).is_some());
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::Disconnect(d)] if d.reason_code == v5::DisconnectReasonCode::TopicNameInvalid)
    );
}

#[test]
fn subscription_identifier_from_a_client_is_a_protocol_error() {
    let mut c = Client::connected5("p");
    let mut p = publish("a", b"x", 0, None);
    p.properties =
        Some(PublishProperties { subscription_ids: vec![NonZeroU32::new(3).unwrap()], ..PublishProperties::default() });
    assert!(matches!(close_of(&c.send5(v5::Packet::Publish(Box::new(p)))), Some(CloseReason::ProtocolError(_))));
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::Disconnect(d)] if d.reason_code == v5::DisconnectReasonCode::ProtocolError)
    );
}

#[test]
fn mqtt5_properties_map_to_props() {
    let mut c = Client::connected5("p");
    let mut p = publish("req", b"{}", 0, None);
    p.properties = Some(PublishProperties {
        content_type: Some("application/json".into()),
        response_topic: Some("reply/1".into()),
        correlation_data: Some(Bytes::from_static(b"c1")),
        is_utf8_payload: true,
        user_properties: vec![("k".into(), "v".into())],
        ..PublishProperties::default()
    });
    let a = c.send5(v5::Packet::Publish(Box::new(p)));
    let (msg, _) = publish_action(&a);
    let props = msg.props.as_deref().unwrap();
    assert_eq!(props.content_type.as_deref(), Some("application/json"));
    assert_eq!(props.response_topic.as_deref(), Some("reply/1"));
    assert_eq!(props.correlation_data.as_deref(), Some(&b"c1"[..]));
    assert!(props.utf8_payload);
    assert_eq!(props.user, [("k".to_string(), "v".to_string())]);
}

#[test]
fn mqtt5_payload_format_is_checked() {
    let mut c = Client::connected5("p");
    let mut p = publish("a", b"\xff\xfe", 1, Some(4));
    p.properties = Some(PublishProperties { is_utf8_payload: true, ..PublishProperties::default() });
    assert!(c.send5(v5::Packet::Publish(Box::new(p))).is_empty(), "not routed");
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::PublishAck(a)] if a.reason_code == v5::PublishAckReason::PayloadFormatInvalid)
    );
}

#[test]
fn outbound_qos1_window_and_puback() {
    let limits = Limits { max_inflight: 2, ..Limits::default() };
    let mut c = Client::with(limits, Config::default());
    assert!(!c.session.can_deliver(), "not before CONNECT");
    c.connect3(connect3("sub"));
    assert!(c.session.can_deliver());
    c.deliver(msg("t", b"1", Qos::AtLeastOnce), Qos::AtLeastOnce);
    c.deliver(msg("t", b"2", Qos::AtLeastOnce), Qos::AtLeastOnce);
    assert!(!c.session.can_deliver(), "window of 2 is full");
    let got = c.recv3();
    let ids: Vec<_> = got
        .iter()
        .map(|p| match p {
            v3::Packet::Publish(p) => {
                assert_eq!(p.qos, v3::QoS::AtLeastOnce);
                assert!(!p.retain && !p.dup);
                p.packet_id.unwrap().get()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, [1, 2]);
    // A PUBACK for an unknown id is ignored.
    assert!(c.send3(v3::Packet::PublishAck { packet_id: pid(77) }).is_empty());
    assert!(!c.session.can_deliver());
    c.send3(v3::Packet::PublishAck { packet_id: pid(1) });
    assert!(c.session.can_deliver());
    c.deliver(msg("t", b"3", Qos::ExactlyOnce), Qos::ExactlyOnce);
    assert!(
        matches!(&c.recv3()[..], [v3::Packet::Publish(p)] if p.packet_id == Some(pid(3)) && p.qos == v3::QoS::ExactlyOnce)
    );
}

#[test]
fn outbound_qos0() {
    let mut c = Client::connected3("sub");
    c.deliver(msg("t/x", b"zero", Qos::AtLeastOnce), Qos::AtMostOnce);
    let got = c.recv3();
    let [v3::Packet::Publish(p)] = &got[..] else { panic!("{got:?}") };
    assert_eq!((p.qos, p.packet_id, &p.topic[..], &p.payload[..]), (v3::QoS::AtMostOnce, None, "t/x", &b"zero"[..]));
    assert!(c.session.can_deliver());
}

#[test]
fn mqtt5_receive_maximum_limits_the_window() {
    let mut c = Client::new();
    c.connect5(connect5("sub").receive_max(1));
    c.deliver(msg("t", b"1", Qos::AtLeastOnce), Qos::AtLeastOnce);
    assert!(!c.session.can_deliver());
    c.send5(v5::Packet::PublishAck(v5::PublishAck {
        packet_id: pid(1),
        reason_code: v5::PublishAckReason::Success,
        properties: Vec::new(),
        reason_string: None,
    }));
    assert!(c.session.can_deliver());
}

#[test]
fn mqtt5_outbound_properties_and_maximum_packet_size() {
    let mut c = Client::new();
    c.connect5(v5::Connect { max_packet_size: NonZeroU32::new(64), ..connect5("sub") });
    let mut m = msg("t", b"small", Qos::AtLeastOnce);
    m.props = Some(Box::new(Props { content_type: Some("text/plain".into()), ..Props::default() }));
    c.deliver(m, Qos::AtLeastOnce);
    let got = c.recv5();
    let [v5::Packet::Publish(p)] = &got[..] else { panic!("{got:?}") };
    assert_eq!(p.properties.as_ref().and_then(|p| p.content_type.as_deref()), Some("text/plain"));
    // [MQTT-3.1.2-25] Too large for the client: discarded, and its packet id freed.
    c.deliver(msg("t", &[b'x'; 100], Qos::AtLeastOnce), Qos::AtLeastOnce);
    assert!(c.frames().is_empty());
    c.send5(v5::Packet::PublishAck(v5::PublishAck {
        packet_id: pid(1),
        reason_code: v5::PublishAckReason::Success,
        properties: Vec::new(),
        reason_string: None,
    }));
    c.deliver(msg("t", b"again", Qos::AtLeastOnce), Qos::AtLeastOnce);
    assert!(matches!(&c.recv5()[..], [v5::Packet::Publish(p)] if p.packet_id == Some(pid(3))));
}

#[test]
fn packet_split_byte_by_byte() {
    let mut c = Client::new();
    let mut stream = enc5(v5::Packet::Connect(Box::new(connect5("split"))));
    stream.extend_from_slice(&enc5(v5::Packet::Publish(Box::new(publish("a/b", b"payload", 1, Some(2))))));
    stream.extend_from_slice(&enc5(v5::Packet::PingRequest));
    let mut actions = Vec::new();
    for b in stream.iter() {
        actions.extend(c.raw(&[*b]));
    }
    assert!(
        matches!(
            &actions[..],
            [Action::ClaimClientId(_), Action::OpenSession { .. }, Action::Publish { token: Some(_), .. }]
        ),
        "{actions:?}"
    );
    let got = c.recv5();
    assert!(matches!(&got[..], [v5::Packet::ConnectAck(_), v5::Packet::PingResponse]), "{got:?}");
}

#[test]
fn several_packets_in_one_buffer() {
    let mut c = Client::new();
    let mut stream = enc3(v3::Packet::Connect(Box::new(connect3("many"))));
    for _ in 0..3 {
        stream.extend_from_slice(&enc3(v3::Packet::Publish(Box::new(publish("a", b"x", 0, None)))));
    }
    stream.extend_from_slice(&enc3(v3::Packet::PingRequest));
    stream.extend_from_slice(&enc3(v3::Packet::Disconnect));
    let a = c.raw(&stream);
    assert_eq!(a.len(), 2 + 3 + 1, "{a:?}");
    assert!(matches!(a.last(), Some(Action::Close(CloseReason::ClientDisconnect))));
    let got = c.recv3();
    assert!(matches!(&got[..], [v3::Packet::ConnectAck(_), v3::Packet::PingResponse]), "{got:?}");
}

#[test]
fn oversized_packet() {
    let limits = Limits { max_frame_bytes: 64, ..Limits::default() };
    let mut c = Client::with(limits.clone(), Config::default());
    c.connect5(connect5("big"));
    // Only the fixed header has arrived: the limit is checked before the body.
    let bytes = enc5(v5::Packet::Publish(Box::new(publish("a", &[0u8; 100], 0, None))));
    let a = c.raw(&bytes[..3]);
    assert!(matches!(close_of(&a), Some(CloseReason::LimitExceeded(_))), "{a:?}");
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::Disconnect(d)] if d.reason_code == v5::DisconnectReasonCode::PacketTooLarge)
    );

    let mut c = Client::with(limits, Config::default());
    c.connect3(connect3("big"));
    let a = c.send3(v3::Packet::Publish(Box::new(publish("a", &[0u8; 100], 0, None))));
    assert!(matches!(close_of(&a), Some(CloseReason::LimitExceeded(_))), "{a:?}");
    assert!(c.frames().is_empty());
}

#[test]
fn server_only_packets_are_protocol_errors() {
    let mut c = Client::connected3("p");
    let a = c.send3(v3::Packet::SubscribeAck { packet_id: pid(1), status: vec![] });
    assert!(matches!(close_of(&a), Some(CloseReason::ProtocolError(_))), "{a:?}");

    let mut c = Client::connected5("p");
    let a = c.send5(v5::Packet::PingResponse);
    assert!(matches!(close_of(&a), Some(CloseReason::ProtocolError(_))), "{a:?}");
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::Disconnect(d)] if d.reason_code == v5::DisconnectReasonCode::ProtocolError)
    );
}

#[test]
fn decode_error_after_connack() {
    let mut c = Client::connected5("p");
    // SUBSCRIBE with reserved option bits set [MQTT-3.8.3-5]: malformed.
    let a = c.raw(&[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0xc0]);
    assert!(matches!(close_of(&a), Some(CloseReason::ProtocolError(_))), "{a:?}");
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::Disconnect(d)] if d.reason_code == v5::DisconnectReasonCode::MalformedPacket)
    );
}
