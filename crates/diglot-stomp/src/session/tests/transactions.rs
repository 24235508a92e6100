//! BEGIN, COMMIT and ABORT.

use super::*;

#[test]
fn commit_replays_sends_and_acks_in_order() {
    let mut h = H::new();
    h.connect("1.2");
    let sub = h.subscribe("s", "/topic/a", "client-individual");
    let ack = h.deliver(sub, message(1, "a", b"")).header("ack").unwrap().to_owned();
    h.feed(b"BEGIN\ntransaction:t1\nreceipt:b\n\n\0");
    assert_eq!(h.one().header("receipt-id"), Some("b"));
    h.feed(b"SEND\ndestination:/topic/x\ntransaction:t1\nreceipt:s1\n\none\0");
    h.feed(b"SEND\ndestination:/topic/y\ntransaction:t1\n\ntwo\0");
    h.feed(format!("ACK\nid:{ack}\ntransaction:t1\n\n\0").as_bytes());
    assert_eq!(h.one().header("receipt-id"), Some("s1"));
    assert!(h.actions().is_empty());
    assert!(!h.s.can_deliver() || h.s.subs.unacked() == 1);
    assert_eq!(h.s.subs.unacked(), 1);

    h.feed(b"COMMIT\ntransaction:t1\nreceipt:c\n\n\0");
    let published: Vec<(Message, Option<u64>)> = h.actions().into_iter().map(publish).collect();
    assert_eq!(published.iter().map(|(m, _)| m.topic.as_str()).collect::<Vec<_>>(), ["x", "y"]);
    assert_eq!(h.s.subs.unacked(), 0);
    assert!(h.frames().is_empty());
    h.s.on_publish_done(published[1].1.unwrap(), Ok(()), &mut h.out, &mut h.actions);
    assert!(h.frames().is_empty());
    h.s.on_publish_done(published[0].1.unwrap(), Ok(()), &mut h.out, &mut h.actions);
    assert_eq!(h.one().header("receipt-id"), Some("c"));
}

#[test]
fn abort_discards_and_unknown_transactions_are_errors() {
    let mut h = H::new();
    h.connect("1.2");
    h.feed(b"BEGIN\ntransaction:t\n\n\0SEND\ndestination:/topic/x\ntransaction:t\n\nz\0ABORT\ntransaction:t\n\n\0");
    assert!(h.actions().is_empty());
    h.feed(b"COMMIT\ntransaction:t\n\n\0");
    h.expect_error("unknown transaction");

    let mut h = H::new();
    h.connect("1.2");
    h.feed(b"SEND\ndestination:/topic/x\ntransaction:nope\n\n\0");
    h.expect_error("unknown transaction");

    let mut h = H::new();
    h.connect("1.2");
    h.feed(b"BEGIN\ntransaction:t\n\n\0BEGIN\ntransaction:t\n\n\0");
    h.expect_error("duplicate transaction");
}

#[test]
fn transactions_are_bounded() {
    let mut h = H::with(None, Limits { max_frame_bytes: 64, ..Limits::default() });
    h.connect("1.2");
    h.feed(b"BEGIN\ntransaction:t\n\n\0");
    for _ in 0..100 {
        h.feed(b"SEND\ndestination:/topic/x\ntransaction:t\n\n0123456789\0");
    }
    let (_, close) = h.expect_error("transaction too large");
    assert!(matches!(close, CloseReason::LimitExceeded(_)));
}

#[test]
fn disconnect_aborts_transactions() {
    let mut h = H::new();
    h.connect("1.2");
    h.feed(b"BEGIN\ntransaction:t\n\n\0SEND\ndestination:/topic/x\ntransaction:t\n\nz\0");
    h.feed(b"DISCONNECT\nreceipt:bye\n\n\0");
    assert_eq!(h.one().header("receipt-id"), Some("bye"));
    assert!(matches!(h.actions().as_slice(), [Action::Close(CloseReason::ClientDisconnect)]));
}
