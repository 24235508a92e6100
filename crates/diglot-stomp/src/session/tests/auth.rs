//! Login at CONNECT and the ACL checks of SEND and SUBSCRIBE.

use diglot_core::{Credentials, LoginRefusal, Permissions};

use super::*;

/// Test permissions: a rule ending in `/` allows every topic or filter under it, any other
/// rule exactly that topic or filter; the same rules for publish and subscribe.
#[derive(Debug)]
struct Rules(&'static [&'static str]);

impl Rules {
    fn allows(&self, s: &str) -> bool {
        self.0.iter().any(|r| if r.ends_with('/') { s.starts_with(r) } else { s == *r })
    }
}

impl Permissions for Rules {
    fn may_publish(&self, topic: &Topic) -> bool {
        self.allows(topic.as_str())
    }

    fn may_subscribe(&self, filter: &Filter) -> bool {
        self.allows(filter.as_str())
    }
}

/// Topics and filters under `ok/`, the queue `ok` and its dead-letter queue.
const OK: Rules = Rules(&["ok/", "$queue/ok", "$queue/dlq.ok"]);

fn granted(rules: Rules) -> LoginOutcome {
    LoginOutcome::Granted(Grant { username: Some("alice".into()), permissions: Arc::new(rules) })
}

/// A session connected (STOMP 1.2, `client-id:c1`) under `rules`.
fn connected_with(rules: Rules) -> H {
    let mut h = H::answering(Some(granted(rules)));
    h.feed(b"CONNECT\naccept-version:1.2\nclient-id:c1\nlogin:alice\npasscode:pw\n\n\0");
    assert_eq!(h.one().command, Command::Connected);
    assert!(matches!(h.actions().as_slice(), [Action::ClaimClientId(id)] if id == "c1"));
    h
}

/// Checks that the last frame was refused: one ERROR `not authorized` whose body names
/// `dest`, and no action but the close.
fn expect_denied(h: &mut H, dest: &str) -> Frame {
    let mut frames = h.frames();
    assert_eq!(frames.len(), 1, "{frames:?}");
    let f = frames.remove(0);
    assert_eq!(f.command, Command::Error, "{f:?}");
    assert_eq!(f.header("message"), Some("not authorized"), "{f:?}");
    assert_eq!(f.header("content-type"), Some("text/plain"));
    assert!(String::from_utf8_lossy(&f.body).contains(dest), "{f:?}");
    match h.actions().as_slice() {
        [Action::Close(CloseReason::NotAuthorized(why))] => assert!(why.contains(dest), "{why}"),
        other => panic!("expected only Close(NotAuthorized), got {other:?}"),
    }
    assert!(!h.s.can_deliver());
    f
}

#[test]
fn connect_asks_for_the_login_and_waits() {
    let mut h = H::answering(None);
    h.feed(b"CONNECT\naccept-version:1.2\nheart-beat:5000,20000\nclient-id:c1\nlogin:alice\npasscode:s3:cr\\et\n\n\0");
    let req = match h.actions().as_slice() {
        [Action::Login(req)] => req.clone(),
        other => panic!("expected Login, got {other:?}"),
    };
    assert_eq!(
        req,
        LoginRequest {
            client_id: "c1".into(),
            credentials: Credentials {
                username: Some("alice".into()),
                // CONNECT headers are not escaped (STOMP 1.2 "Value Encoding").
                password: Some(Bytes::from_static(b"s3:cr\\et")),
                token: None,
            },
            reauth: false,
        }
    );
    // Nothing is answered, claimed or delivered before the login is granted.
    assert!(h.frames().is_empty());
    assert!(!h.s.can_deliver());
    assert_eq!(h.s.client_id(), None);
    assert_eq!(h.s.next_timer(), Some(h.at(10_000)), "the CONNECT deadline keeps running");

    h.s.on_login(granted(Rules(&[])), &mut h.out, &mut h.actions);
    let f = h.one();
    assert_eq!(f.command, Command::Connected);
    assert_eq!(f.header("version"), Some("1.2"));
    assert_eq!(f.header("heart-beat"), Some("20000,10000"));
    assert!(matches!(h.actions().as_slice(), [Action::ClaimClientId(id)] if id == "c1"));
    assert_eq!(h.s.client_id(), Some("c1"));
    assert!(h.s.can_deliver());
    // The heart-beat timers run from CONNECT.
    assert_eq!(h.s.next_timer(), Some(h.at(15_000)));

    // A second answer is ignored.
    h.s.on_login(LoginOutcome::Refused(LoginRefusal::BadCredentials), &mut h.out, &mut h.actions);
    assert!(h.frames().is_empty());
    assert!(h.actions().is_empty());
    assert!(h.s.can_deliver());
}

#[test]
fn empty_or_missing_login_and_passcode_are_absent() {
    for (headers, username, password) in [
        ("", None, None),
        ("login:\npasscode:\n", None, None),
        ("login:bob\n", Some("bob"), None),
        ("passcode:pw\n", None, Some(&b"pw"[..])),
        ("login:\npasscode:pw\n", None, Some(&b"pw"[..])),
    ] {
        let mut h = H::new();
        h.feed(format!("STOMP\naccept-version:1.1\n{headers}\n\0").as_bytes());
        assert_eq!(h.one().command, Command::Connected, "{headers:?}");
        assert_eq!(h.logins.len(), 1);
        let req = h.logins.remove(0);
        assert_eq!(req.client_id, "", "no client-id is the empty one");
        assert!(!req.reauth);
        assert_eq!(req.credentials.username.as_deref(), username, "{headers:?}");
        assert_eq!(req.credentials.password.as_deref(), password, "{headers:?}");
        assert_eq!(req.credentials.token, None);
        assert!(h.actions().is_empty(), "no client id to claim");
    }
}

#[test]
fn refused_logins_are_errors_that_close() {
    for (refusal, message) in [
        (LoginRefusal::BadCredentials, "bad credentials"),
        (LoginRefusal::NotAuthorized, "not authorized"),
        (LoginRefusal::Unavailable, "authentication unavailable"),
    ] {
        let mut h = H::answering(Some(LoginOutcome::Refused(refusal)));
        h.feed(b"CONNECT\naccept-version:1.2\nclient-id:c1\nlogin:alice\npasscode:nope\nreceipt:r1\n\n\0");
        let frames = h.frames();
        assert_eq!(frames.len(), 1, "no CONNECTED: {frames:?}");
        let f = &frames[0];
        assert_eq!(f.command, Command::Error, "{refusal:?}");
        assert_eq!(f.header("message"), Some(message), "{refusal:?}");
        assert_eq!(f.header("receipt-id"), Some("r1"));
        let body = String::from_utf8_lossy(&f.body).into_owned();
        assert!(!body.is_empty());
        assert!(!body.contains("alice") && !body.contains("nope"), "{body}");
        match h.actions().as_slice() {
            [Action::Close(CloseReason::ConnectRefused(why))] => assert!(why.starts_with(message), "{why}"),
            other => panic!("{refusal:?}: expected only Close(ConnectRefused), got {other:?}"),
        }
        assert_eq!(h.s.client_id(), None);
        assert!(!h.s.can_deliver());
        assert_eq!(h.s.next_timer(), None);
    }
    // Without a receipt, no receipt-id.
    let mut h = H::answering(Some(LoginOutcome::Refused(LoginRefusal::BadCredentials)));
    h.feed(b"CONNECT\naccept-version:1.0\n\n\0");
    let (f, _) = h.expect_error("bad credentials");
    assert_eq!(f.header("receipt-id"), None);
}

#[test]
fn frames_after_connect_wait_for_the_login() {
    let mut h = H::answering(None);
    h.feed(b"CONNECT\naccept-version:1.2\n\n\0SUBSCRIBE\nid:1\ndestination:/topic/ok/a\nreceipt:s\n\n\0");
    assert!(matches!(h.actions().as_slice(), [Action::Login(_)]));
    assert!(h.frames().is_empty());
    assert!(!h.input.is_empty(), "the SUBSCRIBE is left unread");
    // Input that arrives meanwhile is not read either.
    h.feed(b"SEND\ndestination:/topic/ok/b\n\nx\0");
    assert!(h.actions().is_empty());
    assert!(h.frames().is_empty());

    h.s.on_login(granted(OK), &mut h.out, &mut h.actions);
    assert_eq!(h.one().command, Command::Connected);
    h.feed(b"");
    let actions = h.actions();
    assert!(matches!(actions.as_slice(), [Action::Subscribe { .. }, Action::Publish { .. }]), "{actions:?}");
    assert_eq!(h.one().header("receipt-id"), Some("s"));
}

#[test]
fn connect_timeout_runs_during_the_login() {
    let mut h = H::answering(None);
    h.feed(b"CONNECT\naccept-version:1.2\n\n\0");
    h.actions();
    let late = h.at(10_000);
    h.s.on_timer(late, &mut h.out, &mut h.actions);
    let (_, close) = h.expect_error("CONNECT timeout");
    assert_eq!(close, CloseReason::HandshakeTimeout);
    // A late grant changes nothing.
    h.s.on_login(LoginOutcome::Granted(Grant::allow_all()), &mut h.out, &mut h.actions);
    assert!(h.frames().is_empty());
    assert!(h.actions().is_empty());
    assert!(!h.s.can_deliver());
}

#[test]
fn nothing_is_allowed_before_a_grant() {
    let h = H::answering(None);
    assert!(!h.s.may_publish(&Topic::new("a").unwrap()));
    assert!(!h.s.may_subscribe(&Filter::new("#").unwrap()));
}

#[test]
fn allowed_sends_publish() {
    let mut h = connected_with(OK);
    for (dest, topic) in [
        ("/topic/ok/a", "ok/a"),
        ("/queue/ok", "$queue/ok"),
        ("/topic/$queue/ok", "$queue/ok"),
        ("/queue/dlq.ok", "$queue/dlq.ok"),
    ] {
        h.feed(format!("SEND\ndestination:{dest}\nreceipt:r\n\nx\0").as_bytes());
        match h.actions().as_slice() {
            [Action::Publish { msg, token: Some(_) }] => assert_eq!(msg.topic.as_str(), topic),
            other => panic!("{dest}: expected Publish, got {other:?}"),
        }
        assert!(h.frames().is_empty(), "the receipt waits for the publish");
    }
}

#[test]
fn denied_sends_are_errors_that_close() {
    for dest in ["/topic/no", "/topic/ok", "/queue/no", "/topic/$queue/no", "/queue/dlq.no", "/topic/$temp/1-x/r"] {
        let mut h = connected_with(OK);
        h.feed(format!("SEND\ndestination:{dest}\n\nx\0").as_bytes());
        let f = expect_denied(&mut h, dest);
        assert_eq!(f.header("receipt-id"), None);
    }
}

#[test]
fn denied_send_with_receipt_names_it() {
    let mut h = connected_with(OK);
    h.feed(b"SEND\ndestination:/topic/no/x\nreceipt:r7\n\nx\0");
    let f = expect_denied(&mut h, "/topic/no/x");
    assert_eq!(f.header("receipt-id"), Some("r7"));
}

#[test]
fn denied_send_in_a_transaction_fails_at_send() {
    let mut h = connected_with(OK);
    h.feed(b"BEGIN\ntransaction:t\n\n\0SEND\ndestination:/topic/ok/x\ntransaction:t\n\ny\0");
    assert!(h.actions().is_empty());
    h.feed(b"SEND\ndestination:/topic/no/x\ntransaction:t\nreceipt:r\n\nx\0");
    let f = expect_denied(&mut h, "/topic/no/x");
    assert_eq!(f.header("receipt-id"), Some("r"));
    // Closed: the COMMIT is not read, and the allowed SEND is never published.
    h.feed(b"COMMIT\ntransaction:t\n\n\0");
    assert!(h.actions().is_empty());
    assert!(h.frames().is_empty());
}

#[test]
fn denied_send_with_a_temp_reply_to_subscribes_nothing() {
    let mut h = connected_with(OK);
    h.feed(b"SEND\ndestination:/topic/no/x\nreply-to:/temp-queue/r\n\nx\0");
    expect_denied(&mut h, "/topic/no/x");

    // Allowed: the automatic subscription to the session's own temporary queue, then the
    // publish.
    let mut h = connected_with(OK);
    h.feed(b"SEND\ndestination:/topic/ok/x\nreply-to:/temp-queue/r\n\nx\0");
    let actions = h.actions();
    assert!(matches!(actions.as_slice(), [Action::Subscribe { .. }, Action::Publish { .. }]), "{actions:?}");
}

#[test]
fn replies_to_other_sessions_temp_queues_are_checked_like_topics() {
    let mut h = connected_with(Rules(&["$temp/1-x/"]));
    h.feed(b"SEND\ndestination:/topic/$temp/1-x/r\n\nx\0");
    match h.actions().as_slice() {
        [Action::Publish { msg, .. }] => assert_eq!(msg.topic.as_str(), "$temp/1-x/r"),
        other => panic!("expected Publish, got {other:?}"),
    }
    h.feed(b"SEND\ndestination:/topic/$temp/2-y/r\n\nx\0");
    expect_denied(&mut h, "/topic/$temp/2-y/r");
}

#[test]
fn send_to_the_own_temp_queue_is_checked_on_its_topic() {
    let mut h = connected_with(Rules(&[]));
    h.feed(b"SEND\ndestination:/temp-queue/r\n\nx\0");
    expect_denied(&mut h, "/temp-queue/r");
}

#[test]
fn allowed_subscriptions_work() {
    let mut h = connected_with(OK);
    let sub = h.subscribe("t", "/topic/ok/+", "auto");
    assert_eq!(h.deliver(sub, message(1, "ok/a", b"")).header("subscription"), Some("t"));
    for (frame, queue, filter) in [
        ("SUBSCRIBE\nid:q\ndestination:/queue/ok\n\n\0", "queue/ok", "$queue/ok"),
        ("SUBSCRIBE\nid:d\ndestination:/queue/dlq.ok\n\n\0", "$dlq/queue/ok", "$queue/dlq.ok"),
        ("SUBSCRIBE\nid:u\ndestination:/topic/ok/#\ndurable:true\n\n\0", "$durable/c1/u", "ok/#"),
    ] {
        h.feed(frame.as_bytes());
        match h.actions().as_slice() {
            [Action::Bind { queue: q, filter: f, .. }, Action::Consume { queue: q2, .. }] => {
                assert_eq!((q.as_str(), f.as_str(), q2.as_str()), (queue, filter, queue), "{frame}");
            }
            other => panic!("{frame}: expected Bind + Consume, got {other:?}"),
        }
    }
}

#[test]
fn denied_subscriptions_are_errors_that_close() {
    for (dest, durable) in [
        ("/topic/no", false),
        ("/topic/#", false),
        ("/topic/ok", false),
        ("/queue/no", false),
        ("/topic/$queue/no", false),
        ("/queue/dlq.no", false),
        ("/topic/no/#", true),
    ] {
        let mut h = connected_with(OK);
        let extra = if durable { "durable:true\n" } else { "" };
        h.feed(format!("SUBSCRIBE\nid:s\ndestination:{dest}\n{extra}receipt:r\n\n\0").as_bytes());
        let f = expect_denied(&mut h, dest);
        assert_eq!(f.header("receipt-id"), Some("r"));
        assert!(h.s.subs.by_id("s").is_none(), "{dest}: no subscription was made");
    }
}

#[test]
fn own_temp_queue_subscriptions_are_always_allowed() {
    let mut h = connected_with(Rules(&[]));
    h.feed(b"SUBSCRIBE\nid:t\ndestination:/temp-queue/r\nreceipt:r\n\n\0");
    match h.actions().as_slice() {
        [Action::Subscribe { filter, .. }] => {
            assert_eq!(filter.as_str(), format!("$temp/{}/r", h.s.temp_token()));
        }
        other => panic!("expected Subscribe, got {other:?}"),
    }
    assert_eq!(h.one().header("receipt-id"), Some("r"));
    // Another session's temporary queue stays private, whatever the permissions.
    let mut h = connected_with(Rules(&["$temp/"]));
    h.feed(b"SUBSCRIBE\nid:t\ndestination:/topic/$temp/1-x/r\n\n\0");
    h.expect_error("private destination");
}

#[test]
fn auth_server_closes_are_told() {
    for (reason, message, body) in [
        (CloseReason::AuthExpired, "credentials expired", "expired"),
        (CloseReason::NotAuthorized("re-authentication failed".into()), "not authorized", "re-authentication failed"),
    ] {
        let mut h = H::new();
        h.connect("1.2");
        h.s.on_server_close(&reason, &mut h.out);
        let f = h.one();
        assert_eq!(f.command, Command::Error);
        assert_eq!(f.header("message"), Some(message), "{reason:?}");
        assert!(String::from_utf8_lossy(&f.body).contains(body), "{f:?}");
        assert!(!h.s.can_deliver());
        h.s.on_server_close(&reason, &mut h.out);
        assert!(h.frames().is_empty(), "said once only");
    }
}

#[test]
fn random_input_with_logins_never_panics() {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let pieces: [&[u8]; 10] = [
        b"CONNECT\naccept-version:1.0,1.1,1.2\nheart-beat:1,1\nclient-id:c\nlogin:a\npasscode:b\nreceipt:c\n\n\0",
        b"STOMP\naccept-version:1.2\n\n\0",
        b"SUBSCRIBE\nid:1\ndestination:/topic/ok/#\nack:client\nreceipt:s\n\n\0",
        b"SUBSCRIBE\nid:2\ndestination:/queue/no\n\n\0",
        b"SUBSCRIBE\nid:3\ndestination:/temp-queue/r\n\n\0",
        b"SUBSCRIBE\nid:0\ndestination:/topic/ok/d\ndurable:true\n\n\0",
        b"SEND\ndestination:/topic/ok/a\nreply-to:/temp-queue/r\ntransaction:t\n\nx\0",
        b"SEND\ndestination:/queue/no\nreceipt:1\n\nx\0",
        b"BEGIN\ntransaction:t\n\n\0",
        b"\n",
    ];
    let answers = [
        LoginOutcome::Granted(Grant::allow_all()),
        granted(OK),
        granted(Rules(&[])),
        LoginOutcome::Refused(LoginRefusal::BadCredentials),
    ];
    for _ in 0..500 {
        // Answered by the harness, or left to random `on_login` calls.
        let auto = match next() % 5 {
            4 => None,
            i => Some(answers[i as usize].clone()),
        };
        let mut h = H::answering(auto);
        for _ in 0..(next() % 10) {
            let mut piece = pieces[(next() % 10) as usize].to_vec();
            if next() % 4 == 0 {
                let at = (next() as usize) % piece.len();
                piece[at] = next() as u8;
            }
            h.feed(&piece);
            match next() % 4 {
                0 => h.s.on_login(answers[(next() % 4) as usize].clone(), &mut h.out, &mut h.actions),
                1 => h.s.on_timer(h.t0 + Duration::from_millis(next() % 20_000), &mut h.out, &mut h.actions),
                2 => h.s.on_server_close(&CloseReason::AuthExpired, &mut h.out),
                _ => {}
            }
        }
        h.out.take_all();
    }
}
