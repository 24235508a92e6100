//! SENDs read on while earlier ones wait for the store; replies keep frame order; MESSAGEs
//! share the part of the frame that does not depend on the subscriber.

use super::*;

fn token(a: Action) -> u64 {
    publish(a).1.expect("a token")
}

#[test]
fn pipelined_sends_are_answered_in_order_and_later_frames_wait() {
    let mut h = H::new();
    h.connect("1.2");
    h.feed(
        b"SEND\ndestination:/queue/q\nreceipt:r1\n\nA\0\
SEND\ndestination:/queue/q\nreceipt:r2\n\nB\0\
SEND\ndestination:/topic/t\n\nC\0\
SUBSCRIBE\nid:s\ndestination:/topic/x\nreceipt:r3\n\n\0\
DISCONNECT\nreceipt:r4\n\n\0",
    );
    // The three SENDs went through; the SUBSCRIBE waits for the two receipts.
    let mut actions = h.actions().into_iter();
    let (t1, t2) = (token(actions.next().unwrap()), token(actions.next().unwrap()));
    assert_eq!(publish(actions.next().unwrap()).1, None);
    assert!(actions.next().is_none());
    assert!(h.frames().is_empty());
    assert!(h.s.awaits_publishes());

    h.s.on_publish_done(t1, Ok(()), &mut h.out, &mut h.actions);
    assert_eq!(h.one().header("receipt-id"), Some("r1"));
    assert!(h.s.awaits_publishes());
    h.s.on_publish_done(t2, Ok(()), &mut h.out, &mut h.actions);
    assert!(!h.s.awaits_publishes());
    // The driver calls again: the SUBSCRIBE, then the DISCONNECT, each answered after r2.
    h.feed(b"");
    let ids: Vec<_> = h.frames().iter().map(|f| f.header("receipt-id").map(str::to_owned)).collect();
    assert_eq!(ids, [Some("r2".to_owned()), Some("r3".to_owned()), Some("r4".to_owned())]);
    let actions = h.actions();
    assert!(matches!(actions.first(), Some(Action::Subscribe { .. })), "{actions:?}");
    assert!(matches!(actions.last(), Some(Action::Close(CloseReason::ClientDisconnect))), "{actions:?}");
}

#[test]
fn an_error_waits_for_earlier_receipts() {
    let mut h = H::new();
    h.connect("1.2");
    // The second SEND has no destination: its ERROR must come after r1.
    h.feed(b"SEND\ndestination:/queue/q\nreceipt:r1\n\nA\0SEND\nreceipt:r2\n\nB\0");
    let t1 = token(h.actions().remove(0));
    assert!(h.frames().is_empty());
    assert!(h.s.awaits_publishes());
    h.s.on_publish_done(t1, Ok(()), &mut h.out, &mut h.actions);
    h.feed(b"");
    let frames = h.frames();
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!((frames[0].command, frames[0].header("receipt-id")), (Command::Receipt, Some("r1")));
    assert_eq!((frames[1].command, frames[1].header("receipt-id")), (Command::Error, Some("r2")));
}

#[test]
fn a_send_in_a_transaction_waits_but_acks_do_not() {
    let mut h = H::new();
    h.connect("1.2");
    h.feed(b"BEGIN\ntransaction:x\n\n\0SEND\ndestination:/queue/q\nreceipt:r1\n\nA\0");
    let t1 = token(h.actions().remove(0));
    // Its receipt is immediate, so it waits for r1.
    h.feed(b"SEND\ndestination:/queue/q\ntransaction:x\nreceipt:r2\n\nB\0");
    assert!(h.s.awaits_publishes());
    h.s.on_publish_done(t1, Ok(()), &mut h.out, &mut h.actions);
    h.feed(b"");
    let ids: Vec<_> = h.frames().iter().map(|f| f.header("receipt-id").map(str::to_owned)).collect();
    assert_eq!(ids, [Some("r1".to_owned()), Some("r2".to_owned())]);
}

#[test]
fn subscribers_share_the_end_of_a_message_frame() {
    let mut h = H::new();
    h.connect("1.2");
    let a = h.subscribe("a", "/topic/t", "auto");
    let b = h.subscribe("b:1", "/topic/t", "client-individual");
    let mut m = message(42, "t", b"body");
    m.props = Some(Box::new(Props { content_type: Some("text/plain".into()), ..Props::default() }));
    let msg = Arc::new(m);
    // Two deliveries of one message: the second reuses what the first encoded.
    h.s.on_delivery(Delivery::new(msg.clone(), a, Qos::AtMostOnce), h.t0, &mut h.out);
    assert!(msg.encoded.get(diglot_core::WireSlot::Stomp12).is_some());
    h.s.on_delivery(Delivery::new(msg.clone(), b, Qos::AtMostOnce), h.t0, &mut h.out);
    let chunks = h.chunks();
    assert_eq!(
        &chunks[0][..],
        &b"MESSAGE\nsubscription:a\nmessage-id:42\ndestination:/topic/t\ncontent-type:text/plain\n\
content-length:4\n\nbody\0"[..]
    );
    assert_eq!(
        &chunks[1][..],
        &b"MESSAGE\nsubscription:b\\c1\nmessage-id:42\nack:1\ndestination:/topic/t\ncontent-type:text/plain\n\
content-length:4\n\nbody\0"[..]
    );
    // A lone delivery (no other holder of the message) is written straight into the output,
    // and is the same.
    let lone = Arc::new(message(43, "t", b"body"));
    h.s.on_delivery(Delivery::new(lone, a, Qos::AtMostOnce), h.t0, &mut h.out);
    assert_eq!(
        &h.chunks()[0][..],
        &b"MESSAGE\nsubscription:a\nmessage-id:43\ndestination:/topic/t\ncontent-length:4\n\nbody\0"[..]
    );
}
