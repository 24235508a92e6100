//! `stomp.topic_separator = "."`: RabbitMQ-style `/topic/` names in every frame that carries
//! one (SEND, SUBSCRIBE, `reply-to` both ways, MESSAGE's `destination`), and their errors.

use super::*;
use crate::destination::Separator;

impl H {
    /// A harness whose session reads and writes `/topic/` names with `.` between levels.
    fn dotted() -> H {
        let mut h = H::new();
        let config = Config { topic_separator: Separator::Dot, ..h.s.config.clone() };
        h.s = Session::new(info(None), Limits::default(), config, h.t0);
        h
    }
}

fn subscribed_filter(a: Action) -> (Filter, SubId) {
    match a {
        Action::Subscribe { filter, sub, .. } => (filter, sub),
        other => panic!("expected Subscribe, got {other:?}"),
    }
}

#[test]
fn subscribe_maps_dots_and_rabbitmq_wildcards() {
    let mut h = H::dotted();
    h.connect("1.2");
    for (id, dest, filter) in [
        ("1", "/topic/sensors.*.temp", "sensors/+/temp"),
        ("2", "/topic/sensors.#", "sensors/#"),
        ("3", "/topic/fw.v1%2E2", "fw/v1.2"),
        ("4", "/topic/%2A.#", "*/#"),
    ] {
        h.feed(format!("SUBSCRIBE\nid:{id}\ndestination:{dest}\n\n\0").as_bytes());
        let (f, _) = subscribed_filter(h.actions().pop().unwrap());
        assert_eq!(f.as_str(), filter, "{dest}");
    }
    // A durable subscription binds its queue to the canonical filter too.
    let mut h = H::dotted();
    h.feed(b"CONNECT\naccept-version:1.2\nhost:/\nclient-id:c\n\n\0");
    h.one();
    h.feed(b"SUBSCRIBE\nid:d\ndestination:/topic/a.*\ndurable:true\n\n\0");
    match h.actions().as_slice() {
        [Action::ClaimClientId(_), Action::Bind { queue, filter, .. }, Action::Consume { .. }] => {
            assert_eq!((queue.as_str(), filter.as_str()), ("$durable/c/d", "a/+"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn send_and_reply_to_are_read_into_canonical_topics() {
    let mut h = H::dotted();
    h.connect("1.2");
    h.feed(b"SEND\ndestination:/topic/home.a%2Eb%2Ac d.\xc3\xbc\nreply-to:/topic/resp.v1%2E2\n\nx\0");
    let (msg, _) = publish(h.actions().remove(0));
    assert_eq!(msg.topic.as_str(), "home/a.b*c d/ü");
    assert_eq!(msg.props.unwrap().response_topic.as_deref(), Some("resp/v1.2"));
    // Queues are not split: /queue/a.b is $queue/a.b, as with "/".
    h.feed(b"SEND\ndestination:/queue/jobs.eu\nreply-to:/queue/done.eu\n\n\0");
    let (msg, token) = publish(h.actions().remove(0));
    h.done(token);
    assert_eq!(msg.topic.as_str(), "$queue/jobs.eu");
    assert_eq!(msg.props.unwrap().response_topic.as_deref(), Some("$queue/done.eu"));
    // `/topic/$queue.<name>` is the queue.
    h.feed(b"SEND\ndestination:/topic/$queue.jobs%2Eeu\n\n\0");
    let (msg, token) = publish(h.actions().remove(0));
    h.done(token);
    assert_eq!(msg.topic.as_str(), "$queue/jobs.eu");
    // With "/", the same destination is a one-level topic with a literal "%2E" in it.
    let mut h = H::new();
    h.connect("1.2");
    h.feed(b"SEND\ndestination:/topic/fw.v1%2E2\n\n\0");
    assert_eq!(publish(h.actions().remove(0)).0.topic.as_str(), "fw.v1%2E2");
}

/// MESSAGE's `destination` and `reply-to` are written dotted, on the shared tail (a message
/// with several subscribers, encoded once) and on a subscriber's own (a redelivery).
#[test]
fn messages_carry_dotted_destinations_and_reply_to() {
    let mut h = H::dotted();
    h.connect("1.2");
    let sub = h.subscribe("s", "/topic/#", "client-individual");
    let mut m = message(1, "fw/v1.2/50%", b"p");
    m.props = Some(Box::new(Props { response_topic: Some("resp/a.b".into()), ..Props::default() }));
    let m = Arc::new(m);
    for _ in 0..2 {
        // `m` is held here too, so the delivery shares the message's encoded tail.
        let f = h.deliver_with(Delivery::new(m.clone(), sub, Qos::AtMostOnce));
        assert_eq!(f.header("destination"), Some("/topic/fw.v1%2E2.50%25"));
        assert_eq!(f.header("reply-to"), Some("/topic/resp.a%2Eb"));
    }
    assert!(m.encoded.get(WireSlot::Stomp12).is_some(), "the tail was shared");
    let mut d = Delivery::new(Arc::new(message(2, "/x.y", b"p")), sub, Qos::AtLeastOnce);
    d.durable = Some(durable_ref(1));
    d.redeliveries = 1;
    let f = h.deliver_with(d);
    assert_eq!((f.header("destination"), f.header("redelivered")), (Some("/topic/.x%2Ey"), Some("true")));
    // A queue message keeps its name.
    assert_eq!(h.deliver(sub, message(3, "$queue/jobs.eu", b"")).header("destination"), Some("/queue/jobs.eu"));
}

/// The separator is the delivering session's, also when sessions with different ones take
/// turns on one thread.
#[test]
fn each_session_writes_with_its_own_separator() {
    let (mut dot, mut slash) = (H::dotted(), H::new());
    dot.connect("1.2");
    slash.connect("1.2");
    let (d, s) = (dot.subscribe("d", "/topic/#", "auto"), slash.subscribe("s", "/topic/#", "auto"));
    for i in 0..3 {
        let f = dot.deliver(d, message(i, "a/b.c", b""));
        assert_eq!(f.header("destination"), Some("/topic/a.b%2Ec"));
        let f = slash.deliver(s, message(i, "a/b.c", b""));
        assert_eq!(f.header("destination"), Some("/topic/a/b.c"));
    }
}

#[test]
fn temporary_queues_reply_through_dotted_topics() {
    let mut h = H::dotted();
    h.connect("1.2");
    let token = h.s.temp_token().to_owned();
    h.feed(b"SEND\ndestination:/topic/rpc\nreply-to:/temp-queue/r.1\n\n\0");
    let mut actions = h.actions();
    let (filter, sub) = subscribed_filter(actions.remove(0));
    assert_eq!(filter.as_str(), format!("$temp/{token}/r.1"));
    let (msg, _) = publish(actions.remove(0));
    let private = msg.props.unwrap().response_topic.unwrap();
    assert_eq!(private, format!("$temp/{token}/r.1"));
    // Another STOMP client sees the reply topic dotted and escaped, and can SEND to it.
    let mut other = H::dotted();
    other.connect("1.2");
    let o = other.subscribe("o", "/topic/rpc", "auto");
    let mut request = message(1, "rpc", b"");
    request.props = Some(Box::new(Props { response_topic: Some(private.clone()), ..Props::default() }));
    let shown = other.deliver(o, request).header("reply-to").unwrap().to_owned();
    assert_eq!(shown, format!("/topic/$temp.{token}.r%2E1"));
    other.feed(format!("SEND\ndestination:{shown}\n\nanswer\0").as_bytes());
    assert_eq!(publish(other.actions().remove(0)).0.topic.as_str(), private);
    // The owner receives it on its temporary queue, by name.
    assert_eq!(h.deliver(sub, message(2, &private, b"answer")).header("destination"), Some("/temp-queue/r.1"));
    // Nobody may subscribe to it as a topic.
    other.feed(format!("SUBSCRIBE\nid:x\ndestination:{shown}\n\n\0").as_bytes());
    other.expect_error("private destination");
}

#[test]
fn names_that_cannot_be_read_are_errors() {
    let cases = [
        ("SEND\ndestination:/topic/a/b\n\n\0", "invalid destination", "'/'"),
        ("SEND\ndestination:/topic/50%\nreceipt:q\n\n\0", "invalid destination", "%25"),
        ("SEND\ndestination:/topic/a.%2B\n\n\0", "invalid destination", "literal"),
        ("SEND\ndestination:/topic/a.*\n\n\0", "invalid destination", "wildcard"),
        ("SUBSCRIBE\nid:1\ndestination:/topic/a.+\n\n\0", "invalid destination", "'*'"),
        ("SUBSCRIBE\nid:1\ndestination:/topic/a.%23\n\n\0", "invalid destination", "literal"),
        ("SUBSCRIBE\nid:1\ndestination:/topic/a*\n\n\0", "invalid destination", "misplaced wildcard"),
        ("SEND\ndestination:/topic/t\nreply-to:/topic/a%zz\n\n\0", "invalid reply-to", "byte 1"),
        ("SEND\ndestination:/topic/t\nreply-to:/topic/a/b\n\n\0", "invalid reply-to", "'/'"),
    ];
    for (frame, message, detail) in cases {
        let mut h = H::dotted();
        h.connect("1.2");
        h.feed(frame.as_bytes());
        let (f, close) = h.expect_error(message);
        assert!(matches!(close, CloseReason::ProtocolError(_)), "{close:?}");
        let body = String::from_utf8_lossy(&f.body);
        assert!(body.contains(detail), "{frame:?}: {body}");
        if frame.contains("receipt:q") {
            assert_eq!(f.header("receipt-id"), Some("q"));
        }
    }
    // With "/", the same reply-to values are kept verbatim, as before.
    let mut h = H::new();
    h.connect("1.2");
    h.feed(b"SEND\ndestination:/topic/t\nreply-to:/topic/a%zz\n\n\0");
    assert_eq!(publish(h.actions().remove(0)).0.props.unwrap().response_topic.as_deref(), Some("a%zz"));
}
