//! Outbound QoS 2: PUBLISH → PUBREC → PUBREL → PUBCOMP, the window, refusals, and durable
//! deliveries acknowledged at PUBCOMP.

use diglot_core::{Action, Adapter, Delivery, DurableRef, Limits, Qos};
use diglot_mqtt::{Config, SESSION_SUB};
use rmqtt_codec::{v3, v5};

use crate::common::*;

#[test]
fn qos2_flow_v3() {
    let limits = Limits { max_inflight: 1, ..Limits::default() };
    let mut c = Client::with(limits, Config::default());
    c.connect3(connect3("q"));
    c.deliver(msg("t", b"2", Qos::ExactlyOnce), Qos::ExactlyOnce);
    let got = publishes3(c.recv3());
    assert_eq!((got[0].qos, got[0].packet_id), (v3::QoS::ExactlyOnce, Some(pid(1))));
    assert!(!c.session.can_deliver());
    // A PUBACK does not end a QoS 2 flow.
    assert!(c.send3(v3::Packet::PublishAck { packet_id: pid(1) }).is_empty());
    assert!(!c.session.can_deliver());
    assert!(c.send3(v3::Packet::PublishReceived { packet_id: pid(1) }).is_empty());
    assert_eq!(c.recv3(), [v3::Packet::PublishRelease { packet_id: pid(1) }]);
    // Still in flight until PUBCOMP [MQTT-4.9.0-2]; a repeated PUBREC gets PUBREL again.
    assert!(!c.session.can_deliver());
    c.send3(v3::Packet::PublishReceived { packet_id: pid(1) });
    assert_eq!(c.recv3(), [v3::Packet::PublishRelease { packet_id: pid(1) }]);
    assert!(c.send3(v3::Packet::PublishComplete { packet_id: pid(1) }).is_empty());
    assert!(c.session.can_deliver());
    assert!(c.frames().is_empty());
    // A PUBREC for an id not in flight: 3.1.1 answers PUBREL as always.
    c.send3(v3::Packet::PublishReceived { packet_id: pid(9) });
    assert_eq!(c.recv3(), [v3::Packet::PublishRelease { packet_id: pid(9) }]);
}

#[test]
fn qos2_flow_v5_with_receive_maximum() {
    let mut c = Client::new();
    c.connect5(connect5("q").receive_max(2));
    c.deliver(msg("t", b"1", Qos::AtLeastOnce), Qos::AtLeastOnce);
    c.deliver(msg("t", b"2", Qos::ExactlyOnce), Qos::ExactlyOnce);
    // QoS 1 and QoS 2 share the Receive Maximum.
    assert!(!c.session.can_deliver());
    let got = publishes5(c.recv5());
    assert_eq!(got.iter().map(|p| p.qos).collect::<Vec<_>>(), [v5::QoS::AtLeastOnce, v5::QoS::ExactlyOnce]);
    c.send5(v5::Packet::PublishReceived(ack5(2, v5::PublishAckReason::Success)));
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::PublishRelease(r)] if r.packet_id == pid(2) && r.reason_code == v5::PublishAck2Reason::Success)
    );
    c.send5(v5::Packet::PublishComplete(ack2_5(2)));
    assert!(c.session.can_deliver());
    // An unknown id: PUBREL "Packet Identifier not found".
    c.send5(v5::Packet::PublishReceived(ack5(7, v5::PublishAckReason::Success)));
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::PublishRelease(r)] if r.reason_code == v5::PublishAck2Reason::PacketIdNotFound)
    );
    // A PUBREC for the QoS 1 id is not a QoS 2 flow either.
    c.send5(v5::Packet::PublishReceived(ack5(1, v5::PublishAckReason::Success)));
    assert!(
        matches!(&c.recv5()[..], [v5::Packet::PublishRelease(r)] if r.reason_code == v5::PublishAck2Reason::PacketIdNotFound)
    );
}

#[test]
fn refusing_pubrec_ends_the_flow() {
    let mut c = Client::new();
    c.connect5(connect5("q").receive_max(1));
    c.deliver(msg("t", b"2", Qos::ExactlyOnce), Qos::ExactlyOnce);
    c.frames();
    assert!(c.send5(v5::Packet::PublishReceived(ack5(1, v5::PublishAckReason::UnspecifiedError))).is_empty());
    assert!(c.frames().is_empty(), "no PUBREL after a refusing PUBREC");
    assert!(c.session.can_deliver());
}

#[test]
fn granted_qos_caps_the_delivery() {
    let mut c = Client::connected5("q");
    c.send5(subscribe5(1, None, "a", qos5(1)));
    c.frames();
    c.deliver_with(delivery(msg("a", b"x", Qos::ExactlyOnce), 1, Qos::ExactlyOnce));
    assert_eq!(publishes5(c.recv5())[0].qos, v5::QoS::AtLeastOnce);
}

fn durable2(seq: u64) -> Delivery {
    Delivery {
        msg: std::sync::Arc::new(msg("t", b"d", Qos::ExactlyOnce)),
        sub: SESSION_SUB,
        qos: Qos::ExactlyOnce,
        durable: Some(DurableRef { queue: 9, seq }),
        redeliveries: 0,
        retained: false,
    }
}

#[test]
fn durable_qos2_is_acked_at_pubcomp() {
    let mut c = persistent3("d", Limits::default());
    c.deliver_with(durable2(4));
    let p = &publishes3(c.recv3())[0];
    assert_eq!((p.qos, p.packet_id), (v3::QoS::ExactlyOnce, Some(pid(4))));
    // The entry stays in its queue until the exchange is over.
    assert!(c.send3(v3::Packet::PublishReceived { packet_id: pid(4) }).is_empty());
    assert_eq!(c.recv3(), [v3::Packet::PublishRelease { packet_id: pid(4) }]);
    let a = c.send3(v3::Packet::PublishComplete { packet_id: pid(4) });
    assert!(matches!(&a[..], [Action::Ack(DurableRef { queue: 9, seq: 4 })]), "{a:?}");
    assert!(c.send3(v3::Packet::PublishComplete { packet_id: pid(4) }).is_empty(), "once");

    // Refused by an MQTT 5 client: the delivery is over, the entry leaves its queue.
    let mut c = persistent5("d", Limits::default());
    c.deliver_with(durable2(5));
    c.frames();
    let a = c.send5(v5::Packet::PublishReceived(ack5(5, v5::PublishAckReason::QuotaExceeded)));
    assert!(matches!(&a[..], [Action::Ack(DurableRef { seq: 5, .. })]), "{a:?}");
    assert!(c.frames().is_empty());
}
