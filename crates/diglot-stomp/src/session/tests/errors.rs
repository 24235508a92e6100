//! Malformed input, DISCONNECT, server-side closes, and the framing of the output.

use super::*;

#[test]
fn garbage_is_answered_with_error_and_close() {
    let mut h = H::new();
    h.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let (f, close) = h.expect_error("malformed frame");
    assert!(!f.body.is_empty());
    assert!(matches!(close, CloseReason::ProtocolError(_)));
    // Nothing more is read once closing.
    h.feed(b"CONNECT\n\n\0");
    assert!(h.frames().is_empty());
    assert!(h.actions().is_empty());
}

#[test]
fn bad_escape_after_connect_is_an_error() {
    let mut h = H::new();
    h.connect("1.2");
    h.feed(b"SEND\ndestination:/topic/a\nx:\\t\n\n\0");
    let (f, _) = h.expect_error("malformed frame");
    // The offending bytes are shown once escaped, not twice.
    assert_eq!(&f.body[..], br#"undefined escape sequence "\t" in a header"#);

    let mut h = H::new();
    h.connect("1.2");
    h.feed(b"\0\x01SEND\n\n\0");
    let (f, _) = h.expect_error("malformed frame");
    assert_eq!(&f.body[..], br#"unknown command "\u{1}SEND""#);
}

#[test]
fn server_frames_and_bodies_on_bodiless_frames_are_refused() {
    let mut h = H::new();
    h.connect("1.2");
    h.feed(b"MESSAGE\ndestination:/topic/a\n\n\0");
    h.expect_error("unexpected frame");

    let mut h = H::new();
    h.connect("1.2");
    h.feed(b"SUBSCRIBE\nid:1\ndestination:/topic/a\nreceipt:r9\n\nbody\0");
    let (f, _) = h.expect_error("unexpected body");
    assert_eq!(f.header("receipt-id"), Some("r9"));
}

/// A body of line ends only on a frame that may not have a body is the client's spacing
/// (`CONNECT\n...\n\n\n\0`, as RabbitMQ's STOMP test suite connects): it is ignored, not
/// refused.
#[test]
fn line_ends_after_a_bodiless_frame_are_not_a_body() {
    let mut h = H::new();
    h.feed(b"CONNECT\nlogin:guest\npasscode:guest\n\n\n\0");
    assert_eq!(h.one().command, Command::Connected);
    h.feed(b"SUBSCRIBE\nid:1\ndestination:/topic/a\nreceipt:r1\n\n\r\n\n\0");
    assert!(h.actions().iter().any(|a| matches!(a, Action::Subscribe { .. })));
    assert_eq!(h.one().header("receipt-id"), Some("r1"));
    h.feed(b"DISCONNECT\nreceipt:bye\n\n\n\0");
    assert_eq!(h.one().header("receipt-id"), Some("bye"));
    assert!(matches!(h.actions().as_slice(), [Action::Close(CloseReason::ClientDisconnect)]));

    // Anything else is still a body, and refused.
    let mut h = H::new();
    h.connect("1.2");
    h.feed(b"UNSUBSCRIBE\nid:1\n\n\n \n\0");
    h.expect_error("unexpected body");
}

/// A 1.2 ACK or NACK names its message by `id`; one that names it by nothing is told so.
#[test]
fn ack_without_id_in_1_2_asks_for_id() {
    let mut h = H::new();
    h.connect("1.2");
    h.feed(b"ACK\nreceipt:a\n\n\0");
    let (f, _) = h.expect_error("missing header");
    assert_eq!(&f.body[..], b"ACK requires the \"id\" header.");
    assert_eq!(f.header("receipt-id"), Some("a"));

    let mut h = H::new();
    h.connect("1.1");
    h.feed(b"NACK\nsubscription:1\n\n\0");
    let (f, _) = h.expect_error("missing header");
    assert_eq!(&f.body[..], b"NACK requires the \"message-id\" header.");
}

/// STOMP 1.2 "ERROR": the ERROR for a frame that failed to decode names its `receipt` (a
/// client waiting on that receipt learns why), whether the receipt header came before the
/// fault or after it among the frame's header lines; the next frame's is not this one's.
#[test]
fn errors_while_decoding_a_frame_name_its_receipt() {
    let limits = Limits { max_frame_bytes: 256, ..Limits::default() };
    // The frame's bytes as fed, the ERROR's `message`, its `receipt-id`.
    type Case<'a> = (&'a [&'a [u8]], &'a str, Option<&'a str>);
    let cases: [Case; 5] = [
        (&[b"SEND\ndestination:/topic/a\nreceipt:big\n\n", &[b'x'; 300]], "frame too large", Some("big")),
        (&[b"SEND\ndestination:/topic/a\nreceipt:a\\cb\ncontent-length:1\n\nxy\0"], "malformed frame", Some("a:b")),
        (&[b"SEND\ndestination:/topic/a\nreceipt:r\nx:\\t\n\n\0"], "malformed frame", Some("r")),
        (&[b"SEND\ndestination:/topic/a\nx:\\t\nreceipt:r\n\n\0"], "malformed frame", Some("r")),
        (&[b"SEND\ndestination:/topic/a\nx:\\t\n\n\0SEND\nreceipt:next\n\n\0"], "malformed frame", None),
    ];
    for (chunks, error, receipt) in cases {
        let mut h = H::with(None, limits.clone());
        h.connect("1.2");
        for chunk in chunks {
            h.feed(chunk);
        }
        let (f, _) = h.expect_error(error);
        assert_eq!(f.header("receipt-id"), receipt, "{error}: {:?}", String::from_utf8_lossy(chunks[0]));
    }
    let mut h = H::new();
    h.connect("1.2");
    h.feed(b"BEGIN\ntransaction:t\nreceipt:ok\n\n\0FOO\n\n\0");
    let (f, _) = h.expect_error("malformed frame");
    assert_eq!(f.header("receipt-id"), None);
}

#[test]
fn random_input_never_panics() {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let pieces: [&[u8]; 15] = [
        b"CONNECT\naccept-version:1.0,1.1,1.2\nheart-beat:1,1\nclient-id:c\n\n\0",
        b"SUBSCRIBE\nid:1\ndestination:/topic/#\nack:client\n\n\0",
        b"SUBSCRIBE\nid:2\ndestination:/queue/q\nack:client-individual\nprefetch-count:2\n\n\0",
        b"SUBSCRIBE\nid:0\ndestination:/topic/d\nack:client\ndurable:true\n\n\0",
        b"NACK\nid:2\nrequeue:false\ntransaction:t\n\n\0",
        b"SEND\ndestination:/topic/a\nreceipt:1\ntransaction:t\n\nx\0",
        b"ACK\nid:1\n\n\0",
        b"NACK\nmessage-id:1\nsubscription:1\n\n\0",
        b"BEGIN\ntransaction:t\n\n\0",
        b"COMMIT\ntransaction:t\nreceipt:c\n\n\0",
        b"\n",
        b"\\",
        b":",
        b"\0",
        b"UNSUBSCRIBE\nid:1\n\n\0",
    ];
    for _ in 0..500 {
        let mut h = H::new();
        for _ in 0..(next() % 12) {
            let mut piece = pieces[(next() % 15) as usize].to_vec();
            if next() % 3 == 0 && !piece.is_empty() {
                let at = (next() as usize) % piece.len();
                piece[at] = next() as u8;
            }
            h.feed(&piece);
            let mut d =
                Delivery::new(Arc::new(message(next() % 4, "a", b"p")), (next() % 3) as SubId, Qos::AtLeastOnce);
            if next() % 2 == 0 {
                d.durable = Some(DurableRef { queue: 1, seq: next() % 8 });
                d.redeliveries = (next() % 3) as u32;
            }
            let now = h.t0;
            h.s.on_delivery(d, now, &mut h.out);
            h.s.on_publish_done(next() % 4, Ok(()), &mut h.out, &mut h.actions);
            h.s.on_timer(h.t0 + Duration::from_millis(next() % 100_000), &mut h.out, &mut h.actions);
        }
        h.out.take_all();
    }
}

#[test]
fn disconnect_without_receipt_just_closes() {
    let mut h = H::new();
    h.connect("1.2");
    h.feed(b"DISCONNECT\n\n\0SEND\ndestination:/topic/x\n\n\0");
    assert!(h.frames().is_empty());
    assert!(matches!(h.actions().as_slice(), [Action::Close(CloseReason::ClientDisconnect)]));
}

#[test]
fn server_close_goodbyes() {
    for (reason, message) in [
        (CloseReason::ServerShutdown, Some("server shutting down")),
        (CloseReason::SessionTakenOver, Some("session taken over")),
        (CloseReason::SlowConsumer, Some("slow consumer")),
        (CloseReason::KeepAliveTimeout, Some("keep-alive timeout")),
        (CloseReason::ClientDisconnect, None),
        (CloseReason::PeerClosed, None),
    ] {
        let mut h = H::new();
        h.connect("1.2");
        h.s.on_server_close(&reason, &mut h.out);
        let frames = h.frames();
        assert_eq!(frames.first().and_then(|f| f.header("message")), message, "{reason:?}");
        // Said once only.
        h.s.on_server_close(&reason, &mut h.out);
        assert!(h.frames().is_empty());
        h.s.on_closed(&reason, &mut h.actions);
        assert!(h.actions().is_empty());
    }
}

#[test]
fn one_output_frame_per_stomp_frame() {
    let mut h = H::new();
    h.feed(
        b"CONNECT\naccept-version:1.2\n\n\0\nSUBSCRIBE\nid:1\ndestination:/topic/a\nreceipt:1\n\n\0\
BEGIN\ntransaction:t\nreceipt:2\n\n\0ABORT\ntransaction:t\nreceipt:3\n\n\0",
    );
    let chunks = h.chunks();
    assert_eq!(chunks.len(), 4);
    assert!(chunks[0].starts_with(b"CONNECTED\n"));
    assert_eq!(&chunks[3][..], b"RECEIPT\nreceipt-id:3\n\n\0");
}

#[test]
fn receipt_ids_are_escaped() {
    let mut h = H::new();
    h.connect("1.2");
    h.feed(b"BEGIN\ntransaction:t\nreceipt:a\\cb\n\n\0");
    let chunk = h.chunks().pop().unwrap();
    assert_eq!(&chunk[..], b"RECEIPT\nreceipt-id:a\\cb\n\n\0");
}
