//! The destination mapping's tests: tables of the rules with both separators, generated topics
//! and names for the round trips, and every error.

use super::*;
use crate::test_rng::Rng;

/// The default separator, as every test before the RabbitMQ-style option used.
const SLASH: Separator = Separator::Slash;

#[test]
fn topics_map_losslessly() {
    let cases = [
        ("/topic/a", "a"),
        ("/topic/a/b", "a/b"),
        ("/topic/a.b.c", "a.b.c"),
        ("/topic//x", "/x"),
        ("/topic/a b/ü/€", "a b/ü/€"),
        ("/topic/a*b", "a*b"),
        ("/topic/a//b/", "a//b/"),
        ("/topic/$SYS/x", "$SYS/x"),
        ("/topic//", "/"),
    ];
    for (dest, topic) in cases {
        assert_eq!(send_topic(dest, "S", SLASH).unwrap().as_str(), topic, "{dest}");
        assert_eq!(to_stomp(topic, SLASH), dest);
        assert_eq!(subscribe_filter(dest, "S", SLASH).unwrap().as_str(), topic);
    }
}

#[test]
fn send_refuses_wildcards_and_empty_names() {
    for dest in ["/topic/a/+", "/topic/#", "/topic/a+b"] {
        assert!(
            matches!(
                send_topic(dest, "S", SLASH),
                Err(DestinationError::Topic { err: TopicError::WildcardInName, .. })
            ),
            "{dest}"
        );
    }
    assert_eq!(send_topic("/topic/", "S", SLASH), Err(DestinationError::Empty("/topic/".into())));
    assert!(matches!(send_topic("/topic/a\0b", "S", SLASH), Err(DestinationError::Topic { err: TopicError::Nul, .. })));
}

#[test]
fn subscribe_takes_mqtt_wildcards() {
    for dest in ["/topic/a/+/c", "/topic/#", "/topic/a/#", "/topic/+", "/topic//+"] {
        assert!(subscribe_filter(dest, "S", SLASH).is_ok(), "{dest}");
    }
    for dest in ["/topic/a#", "/topic/a/#/b", "/topic/a+", "/topic/+a/b"] {
        assert!(
            matches!(
                subscribe_filter(dest, "S", SLASH),
                Err(DestinationError::Topic { err: TopicError::BadWildcard, .. })
            ),
            "{dest}"
        );
    }
}

#[test]
fn queues_map_to_their_canonical_topic() {
    assert_eq!(QUEUE_TOPIC_PREFIX, queue_topic(""));
    assert_eq!(Destination::parse("/queue/jobs", SLASH), Ok(Destination::Queue("jobs".into())));
    assert_eq!(Destination::parse("/topic/$queue/jobs", SLASH), Ok(Destination::Queue("jobs".into())));
    assert_eq!(Destination::parse("/topic/$queue", SLASH), Ok(Destination::Topic("$queue".into())));
    for (dest, name) in [("/queue/jobs", "jobs"), ("/queue/a/b", "a/b"), ("/queue/dlq.x y", "dlq.x y")] {
        let topic = send_topic(dest, "S", SLASH).unwrap();
        assert_eq!(topic.as_str(), queue_topic(name));
        assert_eq!(queue_name(topic.as_str()), Some(name));
        assert_eq!(to_stomp(topic.as_str(), SLASH), dest);
        match subscribe_target(dest, "S", SLASH).unwrap() {
            SubscribeTo::Queue { name: n, filter } => {
                assert_eq!(n, name);
                assert_eq!(filter.as_str(), queue_topic(name));
            }
            other => panic!("{other:?}"),
        }
    }
    // `/topic/$queue/<name>` is the same queue, in both directions.
    assert_eq!(send_topic("/topic/$queue/jobs", "S", SLASH).unwrap().as_str(), "$queue/jobs");
    assert_eq!(
        subscribe_target("/topic/$queue/jobs", "S", SLASH).unwrap(),
        SubscribeTo::Queue { name: "jobs".into(), filter: Filter::new("$queue/jobs").unwrap() }
    );
    // The only topic with the prefix that is not a queue: the empty name.
    assert_eq!(queue_name("$queue/"), None);
    assert_eq!(queue_name("queue/x"), None);
    assert_eq!(to_stomp("$queue", SLASH), "/topic/$queue");
}

#[test]
fn queue_names_are_checked() {
    for dest in ["/queue/", "/topic/$queue/"] {
        assert_eq!(send_topic(dest, "S", SLASH), Err(DestinationError::Empty(dest.into())));
        assert_eq!(subscribe_target(dest, "S", SLASH), Err(DestinationError::Empty(dest.into())));
    }
    for dest in ["/queue/a/+", "/queue/#", "/topic/$queue/+", "/topic/$queue/#", "/queue/a+b"] {
        assert!(
            matches!(
                send_topic(dest, "S", SLASH),
                Err(DestinationError::Topic { err: TopicError::WildcardInName, .. })
            ),
            "{dest}"
        );
        assert!(
            matches!(
                subscribe_target(dest, "S", SLASH),
                Err(DestinationError::Topic { err: TopicError::WildcardInName, .. })
            ),
            "{dest}"
        );
    }
    assert!(matches!(send_topic("/queue/a\0b", "S", SLASH), Err(DestinationError::Topic { err: TopicError::Nul, .. })));
    assert!(matches!(
        subscribe_target("/queue/\0", "S", SLASH),
        Err(DestinationError::Topic { err: TopicError::Nul, .. })
    ));
}

#[test]
fn temp_queues_are_private_to_their_session() {
    assert_eq!(Destination::parse("/temp-queue/r1", SLASH), Ok(Destination::TempQueue("r1")));
    assert_eq!(temp_topic("S", "r1"), "$temp/S/r1");
    assert_eq!(send_topic("/temp-queue/r1", "S", SLASH).unwrap().as_str(), "$temp/S/r1");
    assert_eq!(send_topic("/temp-queue/a/b", "S", SLASH).unwrap().as_str(), "$temp/S/a/b");
    assert_eq!(
        subscribe_target("/temp-queue/r1", "S", SLASH).unwrap(),
        SubscribeTo::Temp { name: "r1", filter: Filter::new("$temp/S/r1").unwrap() }
    );
    // Repliers SEND to someone's temp topic; nobody may subscribe to it as a topic.
    assert_eq!(send_topic("/topic/$temp/T/r1", "S", SLASH).unwrap().as_str(), "$temp/T/r1");
    for dest in ["/topic/$temp/T/r1", "/topic/$temp/#", "/topic/$temp/+/r1"] {
        assert_eq!(subscribe_target(dest, "S", SLASH), Err(DestinationError::PrivateTemp(dest.into())), "{dest}");
    }
    assert!(subscribe_target("/topic/$temp", "S", SLASH).is_ok(), "an ordinary topic");
    for dest in ["/temp-queue/a/+", "/temp-queue/#", "/temp-queue/a\0"] {
        assert!(send_topic(dest, "S", SLASH).is_err() && subscribe_target(dest, "S", SLASH).is_err(), "{dest}");
    }
    assert_eq!(send_topic("/temp-queue/", "S", SLASH), Err(DestinationError::Empty("/temp-queue/".into())));
    // reply-to is rewritten to the private topic and shown to repliers as a topic.
    assert_eq!(reply_to_canonical("/temp-queue/r1", "S", SLASH).unwrap(), "$temp/S/r1");
    assert_eq!(reply_to_stomp("$temp/S/r1", SLASH), "/topic/$temp/S/r1");
    assert_eq!(reply_to_canonical("/topic/$temp/S/r1", "X", SLASH).unwrap(), "$temp/S/r1");
}

#[test]
fn unknown_prefixes() {
    for dest in ["/exchange/x", "/amq/queue/x", "topic/a", "/topic", "/a", "", "/TOPIC/a"] {
        assert_eq!(Destination::parse(dest, SLASH), Err(DestinationError::Unknown(dest.into())), "{dest}");
    }
}

#[test]
fn reply_to_round_trips() {
    for (stomp, canonical) in [("/topic/a/b", "a/b"), ("/topic/$temp/S/r", "$temp/S/r"), ("/queue/q", "$queue/q")] {
        assert_eq!(reply_to_canonical(stomp, "S", SLASH).unwrap(), canonical);
        assert_eq!(reply_to_stomp(canonical, SLASH), stomp);
    }
    // Unknown STOMP names are kept verbatim on the way in.
    assert_eq!(reply_to_canonical("/exchange/x", "S", SLASH).unwrap(), "/exchange/x");
    // An MQTT response topic gains /topic/.
    assert_eq!(reply_to_stomp("resp/1", SLASH), "/topic/resp/1");
    // An MQTT response topic that looks like a STOMP queue is a topic like any other.
    assert_eq!(reply_to_stomp("/queue/q", SLASH), "/topic//queue/q");
    assert_eq!(reply_to_canonical("/topic//queue/q", "S", SLASH).unwrap(), "/queue/q");
    assert_eq!(reply_to_canonical("/topic/$queue/q", "S", SLASH).unwrap(), "$queue/q");
}

/// The RabbitMQ-style separator.
const DOT: Separator = Separator::Dot;

#[test]
fn separator_values() {
    assert_eq!(Separator::default(), Separator::Slash);
    for sep in [Separator::Slash, Separator::Dot] {
        assert_eq!(Separator::parse(sep.as_str()), Some(sep));
        assert_eq!(sep.to_string(), sep.as_str());
    }
    for bad in ["", "//", ":", " .", "\\", "dot", "-"] {
        assert_eq!(Separator::parse(bad), None, "{bad:?}");
    }
}

/// With "/", a `/topic/` name is the canonical text itself: borrowed, not scanned.
#[test]
fn the_slash_separator_borrows_the_name() {
    assert!(matches!(topic_name("a.b*c/%", SLASH), Cow::Borrowed("a.b*c/%")));
    assert!(matches!(Destination::parse("/topic/a.b", SLASH), Ok(Destination::Topic(Cow::Borrowed("a.b")))));
    assert!(matches!(Destination::parse("/topic/$queue/q", SLASH), Ok(Destination::Queue(Cow::Borrowed("q")))));
    assert!(matches!(Destination::parse("/queue/a.b", DOT), Ok(Destination::Queue(Cow::Borrowed("a.b")))));
}

/// Every rule of the module doc's RabbitMQ section, both ways.
#[test]
fn dotted_names_map_levels_and_escape_the_rest() {
    let cases = [
        ("/topic/a", "a"),
        ("/topic/a.b.c", "a/b/c"),
        ("/topic/fw.v1%2E2", "fw/v1.2"),
        ("/topic/a%2Ab.50%25", "a*b/50%"),
        ("/topic/%25%2E%2A", "%.*"),
        ("/topic/.x", "/x"),
        ("/topic/a..b.", "a//b/"),
        ("/topic/.", "/"),
        ("/topic/..", "//"),
        ("/topic/$SYS.broker.uptime", "$SYS/broker/uptime"),
        ("/topic/a b.ü.€.😀", "a b/ü/€/😀"),
        ("/topic/x:y\\z", "x:y\\z"),
        ("/topic/$queue", "$queue"),
    ];
    for (dest, topic) in cases {
        assert_eq!(send_topic(dest, "S", DOT).unwrap().as_str(), topic, "{dest}");
        assert_eq!(subscribe_filter(dest, "S", DOT).unwrap().as_str(), topic, "{dest}");
        assert_eq!(to_stomp(topic, DOT), dest, "{topic}");
        assert_eq!(topic_name(topic, DOT), &dest[TOPIC_PREFIX.len()..]);
        assert_eq!(reply_to_canonical(dest, "S", DOT).unwrap(), topic, "{dest}");
        assert_eq!(reply_to_stomp(topic, DOT), dest, "{topic}");
    }
    // Escapes may be written in lower case; they are written back in upper case.
    assert_eq!(send_topic("/topic/v1%2e2.%2a%25", "S", DOT).unwrap().as_str(), "v1.2/*%");
    assert_eq!(to_stomp("v1.2/*%", DOT), "/topic/v1%2E2.%2A%25");
    // The same topics with "/" are written unchanged.
    assert_eq!(to_stomp("fw/v1.2", SLASH), "/topic/fw/v1.2");
    assert_eq!(send_topic("/topic/fw.v1%2E2", "S", SLASH).unwrap().as_str(), "fw.v1%2E2");
}

/// Every valid MQTT topic, odd characters and all, survives MQTT → STOMP → MQTT with
/// either separator, and a dotted name has exactly as many levels as its topic.
#[test]
fn generated_topics_round_trip() {
    let pieces =
        ["a", "b", "/", "/", ".", "..", "*", "%", "%2E", "%25", " ", "ü", "€", "😀", "$", "SYS", ":", "\\", "\u{7f}"];
    let mut rng = Rng(0x0005_EED0_FD07);
    let mut checked = 0;
    for _ in 0..5000 {
        let text = rng.text(&pieces, 10);
        let Ok(topic) = Topic::new(&text) else { continue };
        checked += 1;
        for sep in [SLASH, DOT] {
            let dest = to_stomp(topic.as_str(), sep);
            assert_eq!(send_topic(&dest, "S", sep).unwrap(), topic, "{dest:?} ({sep})");
            assert_eq!(reply_to_canonical(&dest, "S", sep).unwrap(), topic.as_str(), "{dest:?}");
            assert_eq!(reply_to_stomp(topic.as_str(), sep), dest);
            if queue_name(topic.as_str()).is_none() && !is_temp(topic.as_str()) {
                assert_eq!(subscribe_filter(&dest, "S", sep).unwrap().as_str(), topic.as_str(), "{dest:?}");
            }
        }
        let dotted = to_stomp(topic.as_str(), DOT);
        let name = &dotted[TOPIC_PREFIX.len()..];
        assert_eq!(name.split('.').count(), topic.as_str().split('/').count(), "{dotted:?}");
        assert!(!name.contains(['/', '+', '#']), "{dotted:?}");
        assert!(name.split('.').all(|level| level == "*" || !level.contains('*')), "{dotted:?}");
    }
    assert!(checked > 3000, "only {checked} valid topics were generated");
}

/// STOMP → MQTT → STOMP: a dotted name that can be read is written back as it was (escapes
/// in upper case); one that cannot is refused, never a panic.
#[test]
fn generated_dotted_names_read_back_or_are_refused() {
    // Half of the pieces can be read anywhere, the other half only in some places or never.
    let pieces = [
        "a", "ü", " ", ".", "..", "%2E", "%2e", "%25", "%2A", "$", "b", "€", "😀", "c", "*", "#", "%", "%2B", "%23",
        "%41", "%2F", "%2", "%ü", "/", "+", "\0",
    ];
    let mut rng = Rng(0xD07_5EED);
    let (mut read, mut refused) = (0, 0);
    for _ in 0..5000 {
        let dest = format!("{TOPIC_PREFIX}{}", rng.text(&pieces, 5));
        let _ = subscribe_target(&dest, "S", DOT);
        let _ = reply_to_canonical(&dest, "S", DOT);
        match send_topic(&dest, "S", DOT) {
            Ok(topic) => {
                read += 1;
                // Escapes come back in upper case.
                let mut upper = dest.clone();
                for (at, _) in dest.match_indices('%') {
                    upper[at..at + 3].make_ascii_uppercase();
                }
                assert_eq!(to_stomp(topic.as_str(), DOT), upper, "{dest:?} → {topic}");
            }
            Err(_) => refused += 1,
        }
    }
    assert!(read > 500 && refused > 500, "{read} read, {refused} refused");
}

#[test]
fn dotted_wildcards_are_star_and_hash() {
    for (dest, filter) in [
        ("/topic/a.*.c", "a/+/c"),
        ("/topic/*", "+"),
        ("/topic/.*", "/+"),
        ("/topic/*.*", "+/+"),
        ("/topic/#", "#"),
        ("/topic/a.#", "a/#"),
        ("/topic/*.#", "+/#"),
        ("/topic/$SYS.#", "$SYS/#"),
        ("/topic/%2A.a%2Ab", "*/a*b"),
    ] {
        assert_eq!(subscribe_filter(dest, "S", DOT).unwrap().as_str(), filter, "{dest}");
    }
    for dest in ["/topic/a*", "/topic/*a.b", "/topic/a.#.b", "/topic/a#", "/topic/#.*"] {
        assert!(
            matches!(
                subscribe_filter(dest, "S", DOT),
                Err(DestinationError::Topic { err: TopicError::BadWildcard, .. })
            ),
            "{dest}"
        );
    }
    for dest in ["/topic/a.*", "/topic/#", "/topic/a*b", "/topic/a.#"] {
        assert!(
            matches!(send_topic(dest, "S", DOT), Err(DestinationError::Topic { err: TopicError::WildcardInName, .. })),
            "{dest}"
        );
    }
    // A star inside a level is a literal only when escaped.
    assert_eq!(send_topic("/topic/a%2Ab", "S", DOT).unwrap().as_str(), "a*b");
}

#[test]
fn dotted_names_that_cannot_be_read() {
    let dotted = |dest: &str, err| DestinationError::Dotted { dest: dest.into(), err };
    let cases = [
        ("/topic/50%", DottedError::BadEscape(2)),
        ("/topic/a%4", DottedError::BadEscape(1)),
        ("/topic/a%41", DottedError::BadEscape(1)),
        ("/topic/%2F", DottedError::BadEscape(0)),
        ("/topic/%zz", DottedError::BadEscape(0)),
        ("/topic/%ü", DottedError::BadEscape(0)),
        ("/topic/a.b%", DottedError::BadEscape(3)),
        ("/topic/a/b", DottedError::Slash(1)),
        ("/topic/a.b/", DottedError::Slash(3)),
        ("/topic/a.+", DottedError::Plus(2)),
        ("/topic/a+b", DottedError::Plus(1)),
        ("/topic/a.%2B", DottedError::LiteralWildcard(2)),
        ("/topic/%23", DottedError::LiteralWildcard(0)),
        ("/topic/%2b", DottedError::LiteralWildcard(0)),
    ];
    for (dest, err) in cases {
        assert_eq!(send_topic(dest, "S", DOT), Err(dotted(dest, err)), "{dest}");
        assert_eq!(subscribe_target(dest, "S", DOT), Err(dotted(dest, err)), "{dest}");
        if !matches!(err, DottedError::LiteralWildcard(_)) {
            assert_eq!(reply_to_canonical(dest, "S", DOT), Err(dotted(dest, err)), "{dest}");
        }
    }
    // The messages say where and what to write instead.
    let text = send_topic("/topic/50%", "S", DOT).unwrap_err().to_string();
    assert!(text.contains("\"/topic/50%\"") && text.contains("byte 2") && text.contains("%25"), "{text}");
    let text = send_topic("/topic/a/b", "S", DOT).unwrap_err().to_string();
    assert!(text.contains("'/'") && text.contains("'.'"), "{text}");
    let text = subscribe_target("/topic/a.+", "S", DOT).unwrap_err().to_string();
    assert!(text.contains("'*'"), "{text}");
    // What the separator does not change is refused as before.
    assert_eq!(send_topic("/topic/", "S", DOT), Err(DestinationError::Empty("/topic/".into())));
    assert_eq!(send_topic("/topic/$queue.", "S", DOT), Err(DestinationError::Empty("/topic/$queue.".into())));
    assert!(matches!(send_topic("/topic/a.\0", "S", DOT), Err(DestinationError::Topic { err: TopicError::Nul, .. })));
    assert!(matches!(
        send_topic(&format!("/topic/{}", "%2E".repeat(70_000)), "S", DOT),
        Err(DestinationError::Topic { err: TopicError::TooLong, .. })
    ));
    assert_eq!(Destination::parse("/exchange/a.b", DOT), Err(DestinationError::Unknown("/exchange/a.b".into())));
}

/// Queue names are never split; `$queue` and `$temp` are recognised in the canonical text.
#[test]
fn dotted_queues_and_temporary_queues() {
    for (dest, name) in [("/queue/a.b", "a.b"), ("/queue/a/b", "a/b"), ("/queue/dlq.jobs", "dlq.jobs")] {
        let topic = send_topic(dest, "S", DOT).unwrap();
        assert_eq!(topic.as_str(), queue_topic(name));
        assert_eq!(to_stomp(topic.as_str(), DOT), dest);
    }
    for (dest, name) in [("/topic/$queue.jobs", "jobs"), ("/topic/$queue.a%2Eb", "a.b"), ("/topic/$queue.a.b", "a/b")] {
        assert_eq!(Destination::parse(dest, DOT), Ok(Destination::Queue(name.into())), "{dest}");
        assert_eq!(send_topic(dest, "S", DOT).unwrap().as_str(), queue_topic(name));
        match subscribe_target(dest, "S", DOT).unwrap() {
            SubscribeTo::Queue { name: n, filter } => assert_eq!((&*n, filter.as_str()), (name, &*queue_topic(name))),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(Destination::parse("/topic/$queue", DOT), Ok(Destination::Topic("$queue".into())));
    for dest in ["/topic/$queue.*", "/topic/$queue.#"] {
        assert!(
            matches!(send_topic(dest, "S", DOT), Err(DestinationError::Topic { err: TopicError::WildcardInName, .. })),
            "{dest}"
        );
    }
    // A temporary queue's name is not split either; its reply topic is shown dotted.
    assert_eq!(send_topic("/temp-queue/a.b", "S", DOT).unwrap().as_str(), "$temp/S/a.b");
    assert_eq!(reply_to_canonical("/temp-queue/a.b", "S", DOT).unwrap(), "$temp/S/a.b");
    assert_eq!(reply_to_stomp("$temp/S/a.b", DOT), "/topic/$temp.S.a%2Eb");
    assert_eq!(send_topic("/topic/$temp.S.a%2Eb", "X", DOT).unwrap().as_str(), "$temp/S/a.b");
    for dest in ["/topic/$temp.S.a%2Eb", "/topic/$temp.#"] {
        assert_eq!(subscribe_target(dest, "S", DOT), Err(DestinationError::PrivateTemp(dest.into())), "{dest}");
    }
    assert_eq!(temp_queue_name("/temp-queue/a.b"), Some("a.b"));
    assert_eq!(temp_queue_name("/temp-queue/"), None);
    assert_eq!(temp_queue_name("/topic/$temp.S.r"), None);
}

#[test]
fn dotted_reply_to_round_trips() {
    for (stomp, canonical) in [
        ("/topic/resp.1", "resp/1"),
        ("/topic/resp.v1%2E2", "resp/v1.2"),
        ("/queue/q.1", "$queue/q.1"),
        ("/topic/$temp.S.r", "$temp/S/r"),
        // A response topic that is no topic name (a filter, kept verbatim from elsewhere)
        // is escaped too, and read back in a reply-to only.
        ("/topic/a.%2B.%23", "a/+/#"),
    ] {
        assert_eq!(reply_to_canonical(stomp, "S", DOT).unwrap(), canonical, "{stomp}");
        assert_eq!(reply_to_stomp(canonical, DOT), stomp, "{canonical}");
    }
    // A reply-to this broker does not know is kept verbatim and shown as a topic.
    assert_eq!(reply_to_canonical("/exchange/x", "S", DOT).unwrap(), "/exchange/x");
    assert_eq!(reply_to_stomp("/exchange/x", DOT), "/topic/.exchange.x");
    assert_eq!(reply_to_canonical("/topic/.exchange.x", "S", DOT).unwrap(), "/exchange/x");
    assert_eq!(reply_to_canonical("/topic/", "S", DOT).unwrap(), "/topic/");
}
