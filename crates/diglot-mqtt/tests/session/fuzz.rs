//! Random and mutated input never panics the session, and a closed session stays closed.

use diglot_core::{Action, Adapter, CloseReason};
use rmqtt_codec::{v3, v5};

use crate::common::*;

/// xorshift64*: a tiny deterministic generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Feeds `input` in random-sized chunks; checks that nothing follows a close. Returns how
/// many messages the session routed.
fn feed(c: &mut Client, rng: &mut Rng, input: &[u8]) -> usize {
    let mut routed = 0;
    let mut closed = false;
    let mut rest = input;
    while !rest.is_empty() {
        let n = 1 + rng.below(rest.len().min(64));
        let a = c.raw(&rest[..n]);
        rest = &rest[n..];
        assert!(!closed || a.is_empty(), "actions after close: {a:?}");
        closed |= a.iter().any(|a| matches!(a, Action::Close(_)));
        for a in &a {
            if let Action::Publish { token: Some(t), .. } = a {
                let _ = c.done(*t, Ok(()));
            }
        }
        routed += a.iter().filter(|a| matches!(a, Action::Publish { .. })).count();
        let _ = c.frames();
    }
    c.server_close(CloseReason::PeerClosed);
    let _ = c.closed(CloseReason::PeerClosed);
    let _ = c.timer();
    routed
}

fn valid_stream(v5: bool) -> Vec<u8> {
    let mut s = Vec::new();
    if v5 {
        s.extend_from_slice(&enc5(v5::Packet::Connect(Box::new(connect5("fuzz")))));
        s.extend_from_slice(&enc5(v5::Packet::Publish(Box::new(publish("a/b", b"x", 2, Some(1))))));
        s.extend_from_slice(&enc5(v5::Packet::Subscribe(v5::Subscribe {
            packet_id: pid(2),
            id: None,
            user_properties: vec![("k".into(), "v".into())],
            topic_filters: vec![("a/+".into(), v5::SubscriptionOptions::default())],
        })));
        s.extend_from_slice(&enc5(v5::Packet::PingRequest));
        s.extend_from_slice(&enc5(v5::Packet::Disconnect(v5::Disconnect::default())));
    } else {
        s.extend_from_slice(&enc3(v3::Packet::Connect(Box::new(connect3("fuzz")))));
        s.extend_from_slice(&enc3(v3::Packet::Publish(Box::new(publish("a/b", b"x", 1, Some(1))))));
        s.extend_from_slice(&enc3(v3::Packet::Subscribe {
            packet_id: pid(2),
            topic_filters: vec![("a/#".into(), v3::QoS::AtLeastOnce)],
        }));
        s.extend_from_slice(&enc3(v3::Packet::PublishRelease { packet_id: pid(1) }));
        s.extend_from_slice(&enc3(v3::Packet::Disconnect));
    }
    s
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let mut c = Client::new();
        let n = rng.below(300);
        let mut input = rng.bytes(n);
        // Half the time start with a plausible CONNECT header so that detection is reached.
        if rng.below(2) == 0 && input.len() > 2 {
            input[0] = 0x10;
        }
        feed(&mut c, &mut rng, &input);
    }
}

#[test]
fn random_bytes_after_connect_never_panic() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for i in 0..3000 {
        let v5 = i % 2 == 0;
        let mut c = if v5 { Client::connected5("f") } else { Client::connected3("f") };
        let n = rng.below(400);
        let mut input = rng.bytes(n);
        // Bias towards real packet types with small lengths.
        if input.len() > 2 {
            input[1] &= 0x3f;
        }
        feed(&mut c, &mut rng, &input);
    }
}

#[test]
fn mutated_valid_streams_never_panic() {
    let mut rng = Rng(0x0bad_cafe_dead_beef);
    let mut routed = 0;
    for i in 0..5000 {
        let mut input = valid_stream(i % 2 == 0);
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(input.len());
            input[at] = rng.next() as u8;
        }
        if rng.below(4) == 0 {
            let cut = rng.below(input.len());
            input.truncate(cut);
        }
        let mut c = Client::new();
        routed += feed(&mut c, &mut rng, &input);
        // Deliveries to whatever state the session is in must not panic either.
        c.deliver(msg("a/b", b"x", diglot_core::Qos::AtLeastOnce), diglot_core::Qos::AtLeastOnce);
        let _ = c.session.can_deliver();
    }
    // The mutations leave many streams valid enough to reach PUBLISH handling.
    assert!(routed > 1000, "only {routed} publishes routed");
}
