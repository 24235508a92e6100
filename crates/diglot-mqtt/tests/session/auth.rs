//! Login at CONNECT, MQTT 5 enhanced authentication and re-authentication, and the ACL on
//! PUBLISH, SUBSCRIBE and the will.

use std::num::NonZeroU16;

use bytes::Bytes;
use diglot_core::{Action, Adapter, CloseReason, LoginOutcome, LoginRefusal, JWT_AUTH_METHOD};
use rmqtt_codec::v5::PublishProperties;
use rmqtt_codec::{v3, v5};

use crate::common::*;

/// Publish to and subscribe under `ok/` only.
const OK: Prefixes = Prefixes(&["ok/"]);

/// A v5 CONNECT with the Authentication Method `JWT` and `data` as its Authentication Data.
fn jwt5(id: &str, data: Option<&'static [u8]>) -> v5::Connect {
    v5::Connect { auth_method: Some(JWT_AUTH_METHOD.into()), auth_data: data.map(Bytes::from_static), ..connect5(id) }
}

/// An AUTH packet from the client.
fn auth5(reason_code: v5::AuthReasonCode, method: Option<&str>, data: Option<&'static [u8]>) -> v5::Packet {
    v5::Packet::Auth(v5::Auth {
        reason_code,
        auth_method: method.map(Into::into),
        auth_data: data.map(Bytes::from_static),
        ..v5::Auth::default()
    })
}

/// A client connected with MQTT 5 and the method `JWT`, granted `OK`.
fn jwt_client() -> Client {
    let mut c = Client::granted(OK);
    c.connect5(jwt5("j", Some(b"token-1")));
    c
}

/// Whether `actions` route anything.
fn routes(actions: &[Action]) -> bool {
    actions.iter().any(|a| matches!(a, Action::Publish { .. }))
}

fn with_alias(mut p: rmqtt_codec::types::Publish, alias: u16) -> rmqtt_codec::types::Publish {
    p.properties = Some(PublishProperties { topic_alias: NonZeroU16::new(alias), ..PublishProperties::default() });
    p
}

// ---- login at CONNECT ----

#[test]
fn connect_waits_for_the_login_with_the_credentials() {
    let mut c = Client::new();
    c.login = None;
    let connect = v3::Connect { username: Some("alice".into()), password: Some("secret".into()), ..connect3("dev") };
    let mut bytes = enc3(v3::Packet::Connect(Box::new(connect)));
    // A PINGREQ right behind the CONNECT waits until the login is answered.
    bytes.extend_from_slice(&enc3(v3::Packet::PingRequest));
    let a = c.raw(&bytes);
    let [Action::Login(req)] = &a[..] else { panic!("{a:?}") };
    assert_eq!(req.client_id, "dev");
    assert!(!req.reauth);
    assert_eq!(req.credentials.username.as_deref(), Some("alice"));
    assert_eq!(req.credentials.password.as_deref(), Some(&b"secret"[..]));
    assert_eq!(req.credentials.token, None);
    assert!(c.frames().is_empty(), "no CONNACK before the login is answered");
    assert!(!c.session.can_deliver());
    let a = c.answer_login(grant(OK));
    assert!(
        matches!(&a[..], [Action::ClaimClientId(id), Action::OpenSession { client_id, .. }] if id == "dev" && client_id == "dev"),
        "{a:?}"
    );
    assert!(
        matches!(&c.recv3()[..], [v3::Packet::ConnectAck(ack)] if ack.return_code == v3::ConnectAckReason::ConnectionAccepted)
    );
    // The PINGREQ is read now.
    c.raw(&[]);
    assert_eq!(c.recv3(), [v3::Packet::PingResponse]);
}

#[test]
fn the_connect_deadline_covers_the_login() {
    let mut c = Client::new();
    c.login = None;
    let a = c.send5(v5::Packet::Connect(Box::new(connect5("slow"))));
    assert!(matches!(&a[..], [Action::Login(_)]), "{a:?}");
    c.advance(10);
    assert_eq!(close_of(&c.timer()), Some(&CloseReason::HandshakeTimeout));
    // The late answer changes nothing.
    assert!(c.answer_login(grant(OK)).is_empty());
    assert!(c.frames().is_empty());
    assert!(!c.session.can_deliver());
}

#[test]
fn refused_logins_get_their_connack_code() {
    let cases = [
        (
            LoginRefusal::BadCredentials,
            v3::ConnectAckReason::BadUserNameOrPassword,
            v5::ConnectAckReason::BadUserNameOrPassword,
        ),
        (LoginRefusal::NotAuthorized, v3::ConnectAckReason::NotAuthorized, v5::ConnectAckReason::NotAuthorized),
        (LoginRefusal::Unavailable, v3::ConnectAckReason::ServiceUnavailable, v5::ConnectAckReason::ServerUnavailable),
    ];
    for (refusal, code3, code5) in cases {
        let mut c = Client::new();
        c.login = Some(LoginOutcome::Refused(refusal));
        let a = c.send3(v3::Packet::Connect(Box::new(v3::Connect { username: Some("u".into()), ..connect3("a") })));
        assert!(matches!(&a[..], [Action::Close(CloseReason::ConnectRefused(_))]), "{refusal:?}: {a:?}");
        assert_eq!(c.logins.len(), 1);
        assert_eq!(
            c.recv3(),
            [v3::Packet::ConnectAck(v3::ConnectAck { return_code: code3, session_present: false })],
            "{refusal:?}"
        );
        assert!(!c.session.can_deliver());

        let mut c = Client::new();
        c.login = Some(LoginOutcome::Refused(refusal));
        let a = c.send5(v5::Packet::Connect(Box::new(connect5("a"))));
        assert!(matches!(&a[..], [Action::Close(CloseReason::ConnectRefused(_))]), "{refusal:?}: {a:?}");
        let got = c.recv5();
        let [v5::Packet::ConnectAck(ack)] = &got[..] else { panic!("{got:?}") };
        assert_eq!(ack.reason_code, code5, "{refusal:?}");
        assert!(ack.reason_string.is_some(), "{ack:?}");
        assert!(!ack.session_present);
        assert_eq!(ack.auth_method, None);
    }
}

#[test]
fn password_without_user_name_is_refused_before_the_login() {
    let mut c = Client::new();
    let a = c.send3(v3::Packet::Connect(Box::new(v3::Connect { password: Some("p".into()), ..connect3("x") })));
    assert!(matches!(close_of(&a), Some(CloseReason::ProtocolError(_))), "{a:?}");
    assert!(c.logins.is_empty());
    // MQTT 5 allows it.
    let mut c = Client::new();
    c.connect5(v5::Connect { password: Some("p".into()), ..connect5("x") });
    assert_eq!(c.logins[0].credentials.password.as_deref(), Some(&b"p"[..]));
    assert_eq!(c.logins[0].credentials.username, None);
}

// ---- enhanced authentication ----

#[test]
fn jwt_connect_logs_in_with_the_token() {
    let mut c = Client::new();
    let a = c.send5(v5::Packet::Connect(Box::new(jwt5("j", Some(b"header.claims.sig")))));
    assert!(matches!(&a[..], [Action::ClaimClientId(_), Action::OpenSession { .. }]), "{a:?}");
    assert_eq!(c.logins.len(), 1);
    assert_eq!(c.logins[0].credentials.token.as_deref(), Some(&b"header.claims.sig"[..]));
    assert!(!c.logins[0].reauth);
    let got = c.recv5();
    let [v5::Packet::ConnectAck(ack)] = &got[..] else { panic!("{got:?}") };
    assert_eq!(ack.reason_code, v5::ConnectAckReason::Success);
    assert_eq!(ack.auth_method.as_deref(), Some("JWT"));

    // Without Authentication Data, the token is empty (the driver refuses it).
    let mut c = Client::new();
    c.connect5(jwt5("j", None));
    assert_eq!(c.logins[0].credentials.token, Some(Bytes::new()));

    // A CONNECT without a method has no token, and its CONNACK no method.
    let mut c = Client::new();
    c.send5(v5::Packet::Connect(Box::new(connect5("plain"))));
    assert_eq!(c.logins[0].credentials.token, None);
    assert!(matches!(&c.recv5()[..], [v5::Packet::ConnectAck(ack)] if ack.auth_method.is_none()));
}

#[test]
fn other_methods_are_refused_without_a_login() {
    let mut c = Client::new();
    let a = c.send5(v5::Packet::Connect(Box::new(v5::Connect {
        auth_method: Some("jwt".into()),
        auth_data: Some(Bytes::from_static(b"t")),
        ..connect5("x")
    })));
    assert!(matches!(&a[..], [Action::Close(CloseReason::ConnectRefused(_))]), "{a:?}");
    assert!(c.logins.is_empty());
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::ConnectAck(ack)] if ack.reason_code == v5::ConnectAckReason::BadAuthenticationMethod)
    );
}

#[test]
fn authentication_data_without_a_method_is_a_protocol_error() {
    let mut c = Client::new();
    let a = c.send5(v5::Packet::Connect(Box::new(v5::Connect {
        auth_data: Some(Bytes::from_static(b"t")),
        ..connect5("x")
    })));
    assert!(close_of(&a).is_some(), "{a:?}");
    assert!(c.logins.is_empty());
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::ConnectAck(ack)] if ack.reason_code == v5::ConnectAckReason::ProtocolError)
    );
}

// ---- re-authentication ----

#[test]
fn reauthentication_replaces_the_permissions() {
    let mut c = jwt_client();
    let a = c.send5(v5::Packet::Publish(Box::new(publish("more/x", b"1", 1, Some(1)))));
    assert!(!routes(&a), "{a:?}");
    let got = c.recv5();
    assert!(
        matches!(&got[..], [v5::Packet::PublishAck(ack)] if ack.reason_code == v5::PublishAckReason::NotAuthorized),
        "{got:?}"
    );

    c.login = Some(grant(Prefixes(&["ok/", "more/"])));
    let a = c.send5(auth5(v5::AuthReasonCode::ReAuth, Some("JWT"), Some(b"token-2")));
    assert!(a.is_empty(), "{a:?}");
    let req = &c.logins[1];
    assert!(req.reauth);
    assert_eq!(req.client_id, "j");
    assert_eq!(req.credentials.token.as_deref(), Some(&b"token-2"[..]));
    let got = c.recv5();
    assert!(
        matches!(&got[..], [v5::Packet::Auth(auth)] if auth.reason_code == v5::AuthReasonCode::Success && auth.auth_method.as_deref() == Some("JWT")),
        "{got:?}"
    );

    let a = c.send5(v5::Packet::Publish(Box::new(publish("more/x", b"2", 1, Some(2)))));
    assert!(matches!(&a[..], [Action::Publish { msg, .. }] if msg.topic.as_str() == "more/x"), "{a:?}");
}

#[test]
fn reauthentication_waits_for_the_answer() {
    let mut c = jwt_client();
    c.login = None;
    let mut bytes = enc5(auth5(v5::AuthReasonCode::ReAuth, Some("JWT"), None));
    bytes.extend_from_slice(&enc5(v5::Packet::PingRequest));
    let a = c.raw(&bytes);
    let [Action::Login(req)] = &a[..] else { panic!("{a:?}") };
    assert!(req.reauth);
    assert_eq!(req.credentials.token, Some(Bytes::new()));
    assert!(c.frames().is_empty(), "the PINGREQ waits");
    assert!(c.session.can_deliver(), "deliveries go on under the previous grant");
    assert!(c.answer_login(grant(OK)).is_empty());
    assert!(matches!(&c.recv5()[..], [v5::Packet::Auth(a)] if a.reason_code == v5::AuthReasonCode::Success));
    c.raw(&[]);
    assert_eq!(c.recv5(), [v5::Packet::PingResponse]);
}

#[test]
fn refused_reauthentication_disconnects() {
    let mut c = jwt_client();
    c.login = Some(LoginOutcome::Refused(LoginRefusal::BadCredentials));
    let a = c.send5(auth5(v5::AuthReasonCode::ReAuth, Some("JWT"), Some(b"expired")));
    assert!(
        matches!(&a[..], [Action::Close(CloseReason::NotAuthorized(t))] if t == "re-authentication failed"),
        "{a:?}"
    );
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::Disconnect(d)] if d.reason_code == v5::DisconnectReasonCode::NotAuthorized)
    );
    assert!(!c.session.can_deliver());
}

#[test]
fn auth_after_a_connect_without_a_method_is_a_protocol_error() {
    let mut c = Client::connected5("p");
    let a = c.send5(auth5(v5::AuthReasonCode::ReAuth, Some("JWT"), Some(b"t")));
    assert!(matches!(close_of(&a), Some(CloseReason::ProtocolError(_))), "{a:?}");
    assert_eq!(c.logins.len(), 1, "no re-authentication asked for");
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::Disconnect(d)] if d.reason_code == v5::DisconnectReasonCode::ProtocolError)
    );
}

#[test]
fn bad_reauthentication_packets_are_protocol_errors() {
    let bad = [
        // Continue: this server never asked for more.
        auth5(v5::AuthReasonCode::ContinueAuth, Some("JWT"), Some(b"t")),
        // Success is the server's to send.
        auth5(v5::AuthReasonCode::Success, Some("JWT"), Some(b"t")),
        // Another method than at CONNECT [MQTT-4.12.1-1], or none.
        auth5(v5::AuthReasonCode::ReAuth, Some("SCRAM-SHA-1"), Some(b"t")),
        auth5(v5::AuthReasonCode::ReAuth, None, Some(b"t")),
    ];
    for p in bad {
        let mut c = jwt_client();
        let a = c.send5(p.clone());
        assert!(matches!(close_of(&a), Some(CloseReason::ProtocolError(_))), "{p:?}: {a:?}");
        assert_eq!(c.logins.len(), 1, "{p:?}");
        assert!(
            matches!(&c.recv5()[..], [v5::Packet::Disconnect(d)] if d.reason_code == v5::DisconnectReasonCode::ProtocolError),
            "{p:?}"
        );
    }
}

// ---- ACL: PUBLISH ----

#[test]
fn denied_publishes_v5() {
    let mut c = Client::granted(OK);
    c.connect5(connect5("p"));
    // QoS 0: dropped, nothing said.
    let a = c.send5(v5::Packet::Publish(Box::new(publish("no/a", b"0", 0, None))));
    assert!(a.is_empty(), "{a:?}");
    assert!(c.frames().is_empty());
    // QoS 1: PUBACK 0x87.
    let a = c.send5(v5::Packet::Publish(Box::new(publish("no/a", b"1", 1, Some(1)))));
    assert!(a.is_empty(), "{a:?}");
    let got = c.recv5();
    assert!(
        matches!(&got[..], [v5::Packet::PublishAck(ack)] if ack.packet_id.get() == 1 && ack.reason_code == v5::PublishAckReason::NotAuthorized && ack.reason_string.is_some()),
        "{got:?}"
    );
    // QoS 2: PUBREC 0x87 ends the exchange; the id is free again.
    let a = c.send5(v5::Packet::Publish(Box::new(publish("no/a", b"2", 2, Some(2)))));
    assert!(a.is_empty(), "{a:?}");
    let got = c.recv5();
    assert!(
        matches!(&got[..], [v5::Packet::PublishReceived(ack)] if ack.packet_id.get() == 2 && ack.reason_code == v5::PublishAckReason::NotAuthorized),
        "{got:?}"
    );
    c.send5(v5::Packet::PublishRelease(ack2_5(2)));
    let got = c.recv5();
    assert!(
        matches!(&got[..], [v5::Packet::PublishComplete(a)] if a.reason_code == v5::PublishAck2Reason::PacketIdNotFound),
        "{got:?}"
    );
    // The id is usable for an allowed QoS 2 publish.
    let a = c.send5(v5::Packet::Publish(Box::new(publish("ok/a", b"3", 2, Some(2)))));
    assert!(matches!(&a[..], [Action::Publish { msg, token: Some(_) }] if msg.topic.as_str() == "ok/a"), "{a:?}");
    assert!(c.frames().is_empty(), "PUBREC waits for the routing");
    // None of this closed the connection.
    assert!(c.session.can_deliver());
}

#[test]
fn denied_publishes_v3_are_acknowledged_but_not_routed() {
    let mut c = Client::granted(OK);
    c.connect3(connect3("p"));
    let a = c.send3(v3::Packet::Publish(Box::new(publish("no/a", b"0", 0, None))));
    assert!(a.is_empty(), "{a:?}");
    assert!(c.frames().is_empty());
    let a = c.send3(v3::Packet::Publish(Box::new(publish("no/a", b"1", 1, Some(1)))));
    assert!(a.is_empty(), "{a:?}");
    assert_eq!(c.recv3(), [v3::Packet::PublishAck { packet_id: pid(1) }]);
    let a = c.send3(v3::Packet::Publish(Box::new(publish("no/a", b"2", 2, Some(2)))));
    assert!(a.is_empty(), "{a:?}");
    assert_eq!(c.recv3(), [v3::Packet::PublishReceived { packet_id: pid(2) }]);
    // A re-sent copy is answered PUBREC again, not routed.
    let mut again = publish("no/a", b"2", 2, Some(2));
    again.dup = true;
    let a = c.send3(v3::Packet::Publish(Box::new(again)));
    assert!(a.is_empty(), "{a:?}");
    assert_eq!(c.recv3(), [v3::Packet::PublishReceived { packet_id: pid(2) }]);
    let a = c.send3(v3::Packet::PublishRelease { packet_id: pid(2) });
    assert!(a.is_empty(), "{a:?}");
    assert_eq!(c.recv3(), [v3::Packet::PublishComplete { packet_id: pid(2) }]);
    // Allowed topics are still routed.
    let a = c.send3(v3::Packet::Publish(Box::new(publish("ok/a", b"0", 0, None))));
    assert!(routes(&a), "{a:?}");
    assert!(c.session.can_deliver());
}

#[test]
fn the_acl_sees_the_aliased_topic_and_queue_topics() {
    let mut c = Client::granted(Prefixes(&["ok/", "$queue/ok"]));
    c.connect5(connect5("p"));
    // Alias 1 → ok/a (allowed), alias 2 → no/b (denied); then each is used alone.
    let a = c.send5(v5::Packet::Publish(Box::new(with_alias(publish("ok/a", b"", 1, Some(1)), 1))));
    assert!(routes(&a), "{a:?}");
    let a = c.send5(v5::Packet::Publish(Box::new(with_alias(publish("no/b", b"", 1, Some(2)), 2))));
    assert!(!routes(&a), "{a:?}");
    let a = c.send5(v5::Packet::Publish(Box::new(with_alias(publish("", b"", 1, Some(3)), 1))));
    assert!(matches!(&a[..], [Action::Publish { msg, .. }] if msg.topic.as_str() == "ok/a"), "{a:?}");
    let a = c.send5(v5::Packet::Publish(Box::new(with_alias(publish("", b"", 1, Some(4)), 2))));
    assert!(!routes(&a), "{a:?}");
    let got = c.recv5();
    let codes: Vec<_> = got
        .iter()
        .filter_map(|p| match p {
            v5::Packet::PublishAck(a) => Some((a.packet_id.get(), a.reason_code)),
            _ => None,
        })
        .collect();
    assert_eq!(codes, [(2, v5::PublishAckReason::NotAuthorized), (4, v5::PublishAckReason::NotAuthorized)], "{got:?}");
    // `$queue/<name>` is checked as that topic.
    let a = c.send5(v5::Packet::Publish(Box::new(publish("$queue/ok-jobs", b"", 0, None))));
    assert!(routes(&a), "{a:?}");
    let a = c.send5(v5::Packet::Publish(Box::new(publish("$queue/jobs", b"", 0, None))));
    assert!(!routes(&a), "{a:?}");
}

// ---- ACL: SUBSCRIBE ----

#[test]
fn denied_subscriptions_v5() {
    let mut c = Client::granted(OK);
    c.connect5(connect5("s"));
    let a = c.send5(v5::Packet::Subscribe(v5::Subscribe {
        packet_id: pid(1),
        id: None,
        user_properties: Vec::new(),
        topic_filters: vec![("ok/#".into(), qos5(1)), ("no/#".into(), qos5(1)), ("#".into(), qos5(0))],
    }));
    assert!(
        matches!(&a[..], [Action::Subscribe { filter, .. }] if filter.as_str() == "ok/#"),
        "only the allowed filter is subscribed: {a:?}"
    );
    let got = c.recv5();
    let [v5::Packet::SubscribeAck(ack)] = &got[..] else { panic!("{got:?}") };
    use v5::SubscribeAckReason::*;
    assert_eq!(ack.status, [GrantedQos1, NotAuthorized, NotAuthorized]);
    // A denied filter left nothing to unsubscribe.
    c.send5(v5::Packet::Unsubscribe(v5::Unsubscribe {
        packet_id: pid(2),
        user_properties: Vec::new(),
        topic_filters: vec!["no/#".into()],
    }));
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::UnsubscribeAck(u)] if u.status == [v5::UnsubscribeAckReason::NoSubscriptionExisted])
    );
}

#[test]
fn denied_subscriptions_v3() {
    let mut c = Client::granted(OK);
    c.connect3(connect3("s"));
    let a = c.send3(v3::Packet::Subscribe {
        packet_id: pid(1),
        topic_filters: vec![("no/+".into(), v3::QoS::AtLeastOnce), ("ok/+".into(), v3::QoS::AtMostOnce)],
    });
    assert!(matches!(&a[..], [Action::Subscribe { filter, .. }] if filter.as_str() == "ok/+"), "{a:?}");
    use v3::SubscribeReturnCode::*;
    assert!(
        matches!(&c.recv3()[..], [v3::Packet::SubscribeAck { status, .. }] if status == &[Failure, Success(v3::QoS::AtMostOnce)])
    );
}

#[test]
fn persistent_sessions_bind_and_send_retained_only_when_allowed() {
    let mut c = Client::granted(OK);
    c.open = Some(true);
    let connect = v5::Connect { clean_start: false, session_expiry_interval_secs: 60, ..connect5("d") };
    c.send5(v5::Packet::Connect(Box::new(connect)));
    c.frames();
    let a = c.send5(subscribe5(1, None, "no/#", qos5(1)));
    assert!(a.is_empty(), "no binding, no retained messages: {a:?}");
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::SubscribeAck(s)] if s.status == [v5::SubscribeAckReason::NotAuthorized])
    );
    let a = c.send5(subscribe5(2, None, "ok/#", qos5(1)));
    assert!(matches!(&a[..], [Action::Bind { .. }, Action::SendRetained { .. }]), "{a:?}");
}

#[test]
fn shared_subscriptions_are_checked_on_the_inner_filter() {
    let mut c = Client::granted(OK);
    c.connect5(connect5("s"));
    let a = c.send5(subscribe5(1, None, "$share/g/ok/jobs", qos5(1)));
    assert!(
        matches!(&a[..], [Action::Subscribe { filter, share: Some(g), .. }] if filter.as_str() == "ok/jobs" && g == "g"),
        "{a:?}"
    );
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::SubscribeAck(s)] if s.status == [v5::SubscribeAckReason::GrantedQos1])
    );
    let a = c.send5(subscribe5(2, None, "$share/ok/no/jobs", qos5(1)));
    assert!(a.is_empty(), "{a:?}");
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::SubscribeAck(s)] if s.status == [v5::SubscribeAckReason::NotAuthorized])
    );
}

#[test]
fn queue_consumers_are_checked_on_the_queue_topic() {
    let mut c = Client::granted(Prefixes(&["$queue/ok"]));
    c.connect3(connect3("q"));
    let a = c.send3(v3::Packet::Subscribe {
        packet_id: pid(1),
        topic_filters: vec![
            ("$queue/ok-jobs".into(), v3::QoS::AtLeastOnce),
            ("$queue/jobs".into(), v3::QoS::AtLeastOnce),
        ],
    });
    assert!(
        matches!(&a[..], [Action::Bind { queue, .. }, Action::Consume { queue: q2, .. }] if queue == "queue/ok-jobs" && q2 == "queue/ok-jobs"),
        "{a:?}"
    );
    use v3::SubscribeReturnCode::*;
    assert!(
        matches!(&c.recv3()[..], [v3::Packet::SubscribeAck { status, .. }] if status == &[Success(v3::QoS::AtLeastOnce), Failure])
    );
}

// ---- ACL: the will ----

fn will3(topic: &str) -> v3::Connect {
    v3::Connect {
        last_will: Some(v3::LastWill {
            qos: v3::QoS::AtLeastOnce,
            retain: false,
            topic: topic.into(),
            message: Bytes::from_static(b"gone"),
        }),
        ..connect3("w")
    }
}

#[test]
fn a_denied_will_is_not_published() {
    let mut c = Client::granted(OK);
    c.connect3(will3("status/w"));
    let a = c.closed(CloseReason::PeerClosed);
    assert!(a.is_empty(), "{a:?}");

    let mut c = Client::granted(OK);
    c.connect3(will3("ok/status/w"));
    let a = c.closed(CloseReason::PeerClosed);
    assert!(matches!(&a[..], [Action::Will { msg, .. }] if msg.topic.as_str() == "ok/status/w"), "{a:?}");
}

#[test]
fn the_will_is_checked_against_the_last_grant() {
    let mut c = Client::granted(OK);
    let connect = v5::Connect {
        last_will: Some(v5::LastWill {
            qos: v5::QoS::AtMostOnce,
            retain: false,
            topic: "more/w".into(),
            message: Bytes::from_static(b"gone"),
            will_delay_interval_sec: None,
            correlation_data: None,
            message_expiry_interval: None,
            content_type: None,
            user_properties: Vec::new(),
            is_utf8_payload: None,
            response_topic: None,
        }),
        ..jwt5("w", Some(b"t"))
    };
    c.connect5(connect);
    c.login = Some(grant(Prefixes(&["more/"])));
    c.send5(auth5(v5::AuthReasonCode::ReAuth, Some("JWT"), Some(b"t2")));
    c.frames();
    let a = c.closed(CloseReason::KeepAliveTimeout);
    assert!(matches!(&a[..], [Action::Will { msg, .. }] if msg.topic.as_str() == "more/w"), "{a:?}");
}

// ---- the server's goodbye ----

#[test]
fn expired_credentials_disconnect_with_not_authorized() {
    let mut c = jwt_client();
    c.server_close(CloseReason::AuthExpired);
    let got = c.recv5();
    assert!(
        matches!(&got[..], [v5::Packet::Disconnect(d)] if d.reason_code == v5::DisconnectReasonCode::NotAuthorized && d.reason_string.as_deref() == Some("credentials expired")),
        "{got:?}"
    );
    assert!(!c.session.can_deliver());

    let mut c = Client::connected5("n");
    c.server_close(CloseReason::NotAuthorized("forbidden".into()));
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::Disconnect(d)] if d.reason_code == v5::DisconnectReasonCode::NotAuthorized)
    );

    // MQTT 3.x has no DISCONNECT from the server.
    let mut c = Client::connected3("t");
    c.server_close(CloseReason::AuthExpired);
    assert!(c.frames().is_empty());
    assert!(!c.session.can_deliver());
}

#[test]
fn a_refused_login_leaves_no_will() {
    // A will is only armed by the CONNACK, so a refused login leaves nothing to publish.
    let mut c = Client::new();
    c.login = Some(LoginOutcome::Refused(LoginRefusal::NotAuthorized));
    c.send3(v3::Packet::Connect(Box::new(will3("ok/w"))));
    assert!(!c.session.can_deliver());
    assert!(c.closed(CloseReason::PeerClosed).is_empty());
    c.advance(60);
    assert_eq!(c.session.next_timer(), None);
}
