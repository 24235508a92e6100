//! CONNECT, CONNACK, keep-alive, the will, and the server's goodbye.

use std::time::Duration;

use diglot_core::{Action, Adapter, CloseReason, Limits, Qos};
use diglot_mqtt::Config;
use rmqtt_codec::types::Protocol;
use rmqtt_codec::{v3, v5};

use crate::common::*;

/// An MQTT 3.1 CONNECT: the encoder writes the name `MQIsdp` for level 3 but always level 4.
fn connect31(id: &str) -> bytes::BytesMut {
    let mut bytes = enc3(v3::Packet::Connect(Box::new(v3::Connect { protocol: Protocol(3), ..connect3(id) })));
    assert_eq!(&bytes[2..10], b"\x00\x06MQIsdp");
    bytes[10] = 3;
    bytes
}

#[test]
fn accepts_mqtt_3_1_1() {
    let mut c = Client::new();
    assert_eq!(c.session.protocol(), "mqtt");
    assert!(!c.session.can_deliver());
    let a = c.send3(v3::Packet::Connect(Box::new(connect3("dev-1"))));
    assert!(
        matches!(&a[..], [Action::ClaimClientId(id), Action::OpenSession { client_id, clean: true, persistent: false, .. }] if id == "dev-1" && client_id == "dev-1"),
        "{a:?}"
    );
    let acks = c.recv3();
    assert_eq!(
        acks,
        [v3::Packet::ConnectAck(v3::ConnectAck {
            return_code: v3::ConnectAckReason::ConnectionAccepted,
            session_present: false
        })]
    );
    assert_eq!(c.session.protocol(), "mqtt/3.1.1");
    assert_eq!(c.session.client_id(), Some("dev-1"));
    assert!(c.session.can_deliver());
}

#[test]
fn accepts_mqtt_3_1() {
    let mut c = Client::new();
    let a = c.raw(&connect31("old"));
    assert!(matches!(&a[..], [Action::ClaimClientId(id), Action::OpenSession { .. }] if id == "old"), "{a:?}");
    assert!(
        matches!(&c.recv3()[..], [v3::Packet::ConnectAck(ack)] if ack.return_code == v3::ConnectAckReason::ConnectionAccepted)
    );
    assert_eq!(c.session.protocol(), "mqtt/3.1");
}

#[test]
fn accepts_mqtt_5_and_announces_capabilities() {
    let mut c = Client::new();
    let a = c.send5(v5::Packet::Connect(Box::new(connect5("five"))));
    assert!(
        matches!(&a[..], [Action::ClaimClientId(id), Action::OpenSession { clean: true, persistent: false, .. }] if id == "five"),
        "{a:?}"
    );
    let [v5::Packet::ConnectAck(ack)] = &c.recv5()[..] else { panic!("no CONNACK") };
    let limits = Limits::default();
    assert_eq!(ack.reason_code, v5::ConnectAckReason::Success);
    assert!(!ack.session_present);
    assert_eq!(ack.receive_max.get(), limits.max_inflight);
    assert_eq!(ack.max_qos, v5::QoS::ExactlyOnce, "Maximum QoS is not sent");
    assert_eq!(ack.max_packet_size, Some(limits.max_frame_bytes as u32));
    assert_eq!(ack.topic_alias_max, 16);
    assert!(ack.retain_available);
    assert!(ack.wildcard_subscription_available);
    assert!(ack.subscription_identifiers_available);
    assert!(ack.shared_subscription_available);
    assert_eq!(ack.assigned_client_id, None);
    assert_eq!(ack.server_keepalive_sec, None);
    assert_eq!(ack.response_info, None, "not asked for");
    assert_eq!(ack.reason_string, None);
    assert_eq!(c.session.protocol(), "mqtt/5.0");
}

#[test]
fn unsupported_level_gets_connack_0x01() {
    let mut c = Client::new();
    let mut bytes = enc3(v3::Packet::Connect(Box::new(connect3("x"))));
    bytes[8] = 6;
    let a = c.raw(&bytes);
    assert!(matches!(close_of(&a), Some(CloseReason::ConnectRefused(_))), "{a:?}");
    assert_eq!(&c.frames()[..], [&[0x20u8, 0x02, 0x00, 0x01][..]]);
    // MQTT with level 3 is not a valid pairing either [MQTT-3.1.2-2].
    let mut c = Client::new();
    let mut bytes = enc3(v3::Packet::Connect(Box::new(connect3("x"))));
    assert_eq!(&bytes[2..9], b"\x00\x04MQTT\x04");
    bytes[8] = 3;
    let a = c.raw(&bytes);
    assert!(matches!(close_of(&a), Some(CloseReason::ConnectRefused(_))), "{a:?}");
    assert_eq!(&c.frames()[..], [&[0x20u8, 0x02, 0x00, 0x01][..]]);
}

#[test]
fn bad_protocol_name_closes_without_connack() {
    let mut c = Client::new();
    let mut bytes = enc3(v3::Packet::Connect(Box::new(connect3("x"))));
    bytes[4..8].copy_from_slice(b"MQTX");
    let a = c.raw(&bytes);
    assert!(matches!(close_of(&a), Some(CloseReason::ProtocolError(_))), "{a:?}");
    assert!(c.frames().is_empty());
}

#[test]
fn empty_client_id_without_clean_session_is_rejected_in_3_1_1() {
    // [MQTT-3.1.3-8] of MQTT 3.1.1: CONNACK 0x02, then close.
    let mut c = Client::new();
    let a = c.send3(v3::Packet::Connect(Box::new(v3::Connect { clean_session: false, ..connect3("") })));
    assert!(matches!(close_of(&a), Some(CloseReason::ConnectRefused(_))), "{a:?}");
    assert!(
        matches!(&c.recv3()[..], [v3::Packet::ConnectAck(ack)] if ack.return_code == v3::ConnectAckReason::IdentifierRejected)
    );
}

/// Paho interoperability suite, client_test5 `test_zero_length_clientid`: MQTT 5 dropped the
/// 3.1.1 rule above. An empty id is assigned a unique one and the CONNECT is processed as if
/// the client had sent it [MQTT-3.1.3-6] [MQTT-3.1.3-7], Clean Start 0 included.
#[test]
fn empty_client_id_without_clean_start_is_assigned_in_mqtt_5() {
    let mut c = Client::new();
    c.open = None;
    let connect = v5::Connect { clean_start: false, session_expiry_interval_secs: 60, ..connect5("") };
    let a = c.send5(v5::Packet::Connect(Box::new(connect)));
    let [Action::ClaimClientId(id), Action::OpenSession { client_id, clean: false, persistent: true, expiry_secs }] =
        &a[..]
    else {
        panic!("{a:?}")
    };
    assert_eq!(id, client_id);
    assert!(id.starts_with(&format!("diglot-{CONN_ID}-")), "{id}");
    assert_eq!(*expiry_secs, Some(60));
    c.opened(false);
    let [v5::Packet::ConnectAck(ack)] = &c.recv5()[..] else { panic!("no CONNACK") };
    assert_eq!(ack.reason_code, v5::ConnectAckReason::Success);
    assert!(!ack.session_present);
    assert_eq!(ack.assigned_client_id.as_deref(), Some(id.as_str()));
    assert_eq!(c.session.client_id(), Some(id.as_str()));
}

#[test]
fn empty_client_id_with_clean_session_is_assigned() {
    let mut c = Client::new();
    let a = c.send5(v5::Packet::Connect(Box::new(connect5(""))));
    let [Action::ClaimClientId(id), Action::OpenSession { client_id, .. }] = &a[..] else { panic!("{a:?}") };
    assert_eq!(id, client_id);
    assert!(id.starts_with(&format!("diglot-{CONN_ID}-")), "{id}");
    let [v5::Packet::ConnectAck(ack)] = &c.recv5()[..] else { panic!("no CONNACK") };
    assert_eq!(ack.assigned_client_id.as_deref(), Some(id.as_str()));
    assert_eq!(c.session.client_id(), Some(id.as_str()));

    let mut c = Client::new();
    let a = c.send3(v3::Packet::Connect(Box::new(connect3(""))));
    assert!(matches!(&a[..], [Action::ClaimClientId(id), Action::OpenSession { .. }] if id.starts_with("diglot-")));
    // MQTT 3.1 requires an id of 1 to 23 characters.
    let mut c = Client::new();
    c.raw(&connect31(""));
    assert!(
        matches!(&c.recv3()[..], [v3::Packet::ConnectAck(ack)] if ack.return_code == v3::ConnectAckReason::IdentifierRejected)
    );
}

#[test]
fn client_id_longer_than_the_limit_is_rejected() {
    let limits = Limits { max_client_id_bytes: 8, ..Limits::default() };
    let mut c = Client::with(limits.clone(), Config::default());
    c.send3(v3::Packet::Connect(Box::new(connect3("123456789"))));
    assert!(
        matches!(&c.recv3()[..], [v3::Packet::ConnectAck(ack)] if ack.return_code == v3::ConnectAckReason::IdentifierRejected)
    );
    let mut c = Client::with(limits, Config::default());
    c.connect3(connect3("12345678"));
}

#[test]
fn first_packet_must_be_connect() {
    let mut c = Client::new();
    let a = c.send3(v3::Packet::PingRequest);
    assert!(matches!(close_of(&a), Some(CloseReason::ProtocolError(_))), "{a:?}");
    assert!(c.frames().is_empty());
    // Nothing more is read after the close.
    assert!(c.send3(v3::Packet::Connect(Box::new(connect3("x")))).is_empty());
}

#[test]
fn second_connect_is_a_protocol_error() {
    let mut c = Client::connected3("a");
    let a = c.send3(v3::Packet::Connect(Box::new(connect3("a"))));
    assert!(matches!(close_of(&a), Some(CloseReason::ProtocolError(_))), "{a:?}");
    assert!(c.frames().is_empty(), "3.x just closes");

    // MQTT 5 too: no DISCONNECT (see `Session::dispatch`), and none when the driver reports
    // the close.
    let mut c = Client::connected5("a");
    let a = c.send5(v5::Packet::Connect(Box::new(connect5("a"))));
    assert!(matches!(close_of(&a), Some(CloseReason::ProtocolError(_))), "{a:?}");
    assert!(c.frames().is_empty(), "5 just closes too");
    c.server_close(CloseReason::ProtocolError(String::new()));
    assert!(c.frames().is_empty());
}

#[test]
fn reserved_connect_flag_closes_without_connack() {
    let mut c = Client::new();
    let mut bytes = enc3(v3::Packet::Connect(Box::new(connect3("x"))));
    // Fixed header (2) + name (6) + level (1): the flags byte [MQTT-3.1.2-3].
    bytes[9] |= 0x01;
    let a = c.raw(&bytes);
    assert!(matches!(close_of(&a), Some(CloseReason::ProtocolError(_))), "{a:?}");
    assert!(c.frames().is_empty());
}

#[test]
fn password_without_user_name_is_refused_in_3_1_1() {
    let mut c = Client::new();
    let a = c.send3(v3::Packet::Connect(Box::new(v3::Connect { password: Some("p".into()), ..connect3("x") })));
    assert!(matches!(close_of(&a), Some(CloseReason::ProtocolError(_))), "{a:?}");
    assert!(c.frames().is_empty());
}

#[test]
fn enhanced_authentication_is_refused() {
    let mut c = Client::new();
    c.send5(v5::Packet::Connect(Box::new(v5::Connect { auth_method: Some("SCRAM".into()), ..connect5("x") })));
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::ConnectAck(ack)] if ack.reason_code == v5::ConnectAckReason::BadAuthenticationMethod)
    );
}

#[test]
fn connect_timeout() {
    let mut c = Client::new();
    assert_eq!(c.session.next_timer(), Some(c.start + Duration::from_secs(10)));
    c.advance(9);
    assert!(c.timer().is_empty());
    c.advance(1);
    assert_eq!(close_of(&c.timer()), Some(&CloseReason::HandshakeTimeout));
    assert!(c.frames().is_empty());
    assert_eq!(c.session.next_timer(), None);
}

#[test]
fn keep_alive_closes_after_one_and_a_half_times() {
    let mut c = Client::new();
    c.connect3(v3::Connect { keep_alive: 10, ..connect3("k") });
    assert_eq!(c.session.next_timer(), Some(c.start + Duration::from_secs(15)));
    c.advance(14);
    assert!(c.timer().is_empty());
    c.send3(v3::Packet::PingRequest);
    assert_eq!(c.recv3(), [v3::Packet::PingResponse]);
    assert_eq!(c.session.next_timer(), Some(c.now + Duration::from_secs(15)));
    c.advance(15);
    assert_eq!(close_of(&c.timer()), Some(&CloseReason::KeepAliveTimeout));
    assert!(c.frames().is_empty(), "3.x has no DISCONNECT");

    let mut c = Client::new();
    c.connect5(v5::Connect { keep_alive: 2, ..connect5("k") });
    c.advance(3);
    assert_eq!(close_of(&c.timer()), Some(&CloseReason::KeepAliveTimeout));
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::Disconnect(d)] if d.reason_code == v5::DisconnectReasonCode::KeepAliveTimeout)
    );
}

#[test]
fn no_keep_alive_means_no_timer() {
    let c = Client::connected3("k");
    assert_eq!(c.session.next_timer(), None);
}

#[test]
fn keep_alive_cap_is_announced_in_mqtt_5() {
    let config = Config { max_keep_alive_secs: 30, ..Config::default() };
    let mut c = Client::with(Limits::default(), config.clone());
    c.send5(v5::Packet::Connect(Box::new(v5::Connect { keep_alive: 0, ..connect5("k") })));
    let [v5::Packet::ConnectAck(ack)] = &c.recv5()[..] else { panic!() };
    assert_eq!(ack.server_keepalive_sec, Some(30));
    assert_eq!(c.session.next_timer(), Some(c.now + Duration::from_secs(45)));

    let mut c = Client::with(Limits::default(), config);
    c.send5(v5::Packet::Connect(Box::new(v5::Connect { keep_alive: 20, ..connect5("k") })));
    let [v5::Packet::ConnectAck(ack)] = &c.recv5()[..] else { panic!() };
    assert_eq!(ack.server_keepalive_sec, None);
}

fn will3() -> v3::Connect {
    v3::Connect {
        last_will: Some(v3::LastWill {
            qos: v3::QoS::AtLeastOnce,
            retain: false,
            topic: "status/dev".into(),
            message: "gone".into(),
        }),
        ..connect3("dev")
    }
}

fn will5(retain: bool) -> v5::Connect {
    v5::Connect {
        last_will: Some(v5::LastWill {
            qos: v5::QoS::AtMostOnce,
            retain,
            topic: "status/dev".into(),
            message: "gone".into(),
            will_delay_interval_sec: None,
            correlation_data: None,
            message_expiry_interval: None,
            content_type: Some("text/plain".into()),
            user_properties: Vec::new(),
            is_utf8_payload: None,
            response_topic: None,
        }),
        ..connect5("dev")
    }
}

/// A will is handed to the driver to keep in the store while the client is connected
/// (`Action::SaveWill`), its delay capped at the session's expiry and its Message Expiry
/// Interval as sent; a will whose topic the client may not publish to is not.
#[test]
fn a_connected_clients_will_is_kept_for_a_crash() {
    let mut c = Client::new();
    let mut connect = will5(false);
    connect.session_expiry_interval_secs = 30;
    if let Some(w) = connect.last_will.as_mut() {
        w.will_delay_interval_sec = Some(90);
        w.message_expiry_interval = std::num::NonZeroU32::new(7);
    }
    let a = c.send5(v5::Packet::Connect(Box::new(connect)));
    let Some(Action::SaveWill { msg, delay_secs: 30, expiry_secs: Some(7) }) =
        a.iter().find(|a| matches!(a, Action::SaveWill { .. }))
    else {
        panic!("{a:?}")
    };
    assert_eq!((msg.topic.as_str(), &msg.payload[..]), ("status/dev", &b"gone"[..]));

    let mut c = Client::new();
    let a = c.send3(v3::Packet::Connect(Box::new(connect3("dev"))));
    assert!(!a.iter().any(|a| matches!(a, Action::SaveWill { .. })), "no will, nothing kept: {a:?}");
}

#[test]
fn will_is_published_on_abnormal_close() {
    let mut c = Client::new();
    c.connect3(will3());
    let a = c.closed(CloseReason::PeerClosed);
    let [Action::Will { msg, delay_secs: 0 }] = &a[..] else { panic!("{a:?}") };
    assert_eq!(msg.topic.as_str(), "status/dev");
    assert_eq!(&msg.payload[..], b"gone");
    assert_eq!(msg.qos, Qos::AtLeastOnce);
    assert_eq!(msg.origin, Some(CONN_ID));
    // Published once.
    assert!(c.closed(CloseReason::PeerClosed).is_empty());

    let mut c = Client::new();
    c.connect5(will5(false));
    let a = c.closed(CloseReason::KeepAliveTimeout);
    let [Action::Will { msg, .. }] = &a[..] else { panic!("{a:?}") };
    assert_eq!(msg.props.as_ref().and_then(|p| p.content_type.as_deref()), Some("text/plain"));
}

#[test]
fn will_is_discarded_on_disconnect() {
    let mut c = Client::new();
    c.connect3(will3());
    let a = c.send3(v3::Packet::Disconnect);
    assert!(matches!(&a[..], [Action::Close(CloseReason::ClientDisconnect)]), "{a:?}");
    assert!(c.closed(CloseReason::ClientDisconnect).is_empty());
    assert!(c.frames().is_empty());

    let mut c = Client::new();
    c.connect5(will5(false));
    let a = c.send5(v5::Packet::Disconnect(v5::Disconnect::default()));
    assert!(matches!(&a[..], [Action::Close(CloseReason::ClientDisconnect)]), "{a:?}");
    assert!(c.closed(CloseReason::ClientDisconnect).is_empty());
}

#[test]
fn disconnect_with_will_publishes_it() {
    let mut c = Client::new();
    c.connect5(will5(false));
    let a = c.send5(v5::Packet::Disconnect(v5::Disconnect::new(v5::DisconnectReasonCode::DisconnectWithWillMessage)));
    assert!(matches!(&a[..], [Action::Close(CloseReason::ClientDisconnect)]), "{a:?}");
    // The will is handed over when the connection has ended, with its delay.
    let a = c.closed(CloseReason::ClientDisconnect);
    assert!(matches!(&a[..], [Action::Will { msg, delay_secs: 0 }] if msg.topic.as_str() == "status/dev"), "{a:?}");
    assert!(c.closed(CloseReason::ClientDisconnect).is_empty());
    assert!(c.frames().is_empty());
}

#[test]
fn will_checks() {
    // A retained will is accepted and published retained [MQTT-3.1.2-17].
    let mut c = Client::new();
    c.connect5(will5(true));
    let a = c.closed(CloseReason::PeerClosed);
    assert!(matches!(&a[..], [Action::Will { msg, .. }] if msg.retain), "{a:?}");
    let mut c = Client::new();
    let mut w = will3();
    if let Some(l) = w.last_will.as_mut() {
        l.retain = true;
    }
    c.connect3(w);
    let a = c.closed(CloseReason::PeerClosed);
    assert!(matches!(&a[..], [Action::Will { msg, .. }] if msg.retain), "{a:?}");
    // An invalid will topic: CONNACK 0x90 in MQTT 5, a plain close in 3.1.1.
    let mut c = Client::new();
    let mut w = will5(false);
    if let Some(l) = w.last_will.as_mut() {
        l.topic = "a/#".into();
    }
    c.send5(v5::Packet::Connect(Box::new(w)));
    let got = c.recv5();
    let [v5::Packet::ConnectAck(ack)] = &got[..] else { panic!("{got:?}") };
    assert_eq!(ack.reason_code, v5::ConnectAckReason::TopicNameInvalid);
    assert!(ack.reason_string.as_deref().is_some_and(|r| r.contains("will topic")), "{ack:?}");
    let mut c = Client::new();
    let mut w = will3();
    if let Some(l) = w.last_will.as_mut() {
        l.topic = "a/+".into();
    }
    let a = c.send3(v3::Packet::Connect(Box::new(w)));
    assert!(matches!(close_of(&a), Some(CloseReason::ProtocolError(_))), "{a:?}");
    assert!(c.frames().is_empty());
}

#[test]
fn server_close_sends_disconnect_in_mqtt_5_only() {
    let mut c = Client::connected5("s");
    c.server_close(CloseReason::ServerShutdown);
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::Disconnect(d)] if d.reason_code == v5::DisconnectReasonCode::ServerShuttingDown)
    );
    c.server_close(CloseReason::ServerShutdown);
    assert!(c.frames().is_empty(), "one goodbye");

    for (reason, code) in [
        (CloseReason::SessionTakenOver, v5::DisconnectReasonCode::SessionTakenOver),
        (CloseReason::SlowConsumer, v5::DisconnectReasonCode::QuotaExceeded),
        (CloseReason::LimitExceeded("x".into()), v5::DisconnectReasonCode::PacketTooLarge),
    ] {
        let mut c = Client::connected5("s");
        c.server_close(reason);
        assert!(matches!(&c.recv5()[..], [v5::Packet::Disconnect(d)] if d.reason_code == code));
    }

    let mut c = Client::connected3("s");
    c.server_close(CloseReason::ServerShutdown);
    assert!(c.frames().is_empty());

    // Never before CONNACK.
    let mut c = Client::new();
    c.server_close(CloseReason::ServerShutdown);
    assert!(c.frames().is_empty());
}
