use super::*;

fn id(name: &str, roles: &[&str]) -> Identity {
    Identity { username: name.into(), roles: roles.iter().map(|r| r.to_string()).collect(), expires_at: None }
}

fn rule(subject: &str, publish: &[&str], subscribe: &[&str]) -> AclRuleConfig {
    let mut r = AclRuleConfig {
        publish: publish.iter().map(|s| s.to_string()).collect(),
        subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
        ..AclRuleConfig::default()
    };
    match subject.split_once('=') {
        Some(("user", u)) => r.user = Some(u.into()),
        Some(("role", x)) => r.role = Some(x.into()),
        _ => r.everyone = true,
    }
    r
}

fn covers(pattern: &str, filter: &str) -> bool {
    let p = Pattern::compile(pattern).unwrap();
    p.covers(&Client { who: None, client_id: "c" }, &Filter::new(filter).unwrap())
}

fn matches(pattern: &str, topic: &str) -> bool {
    let p = Pattern::compile(pattern).unwrap();
    p.matches(&Client { who: None, client_id: "c" }, &Topic::new(topic).unwrap())
}

#[test]
fn covering_table() {
    let yes = [
        ("#", "#"),
        ("#", "a"),
        ("#", "a/b/c"),
        ("#", "+"),
        ("#", "+/#"),
        ("#", "/"),
        ("a/#", "a"),
        ("a/#", "a/#"),
        ("a/#", "a/+"),
        ("a/#", "a/+/b"),
        ("a/#", "a/b/c/d"),
        ("a/#", "a/+/#"),
        ("a/#", "a/"),
        ("a/+", "a/b"),
        ("a/+", "a/+"),
        ("a/+", "a/"),
        ("+", "+"),
        ("+", "a"),
        ("+/+", "+/b"),
        ("+/b", "+/b"),
        ("+/#", "a/b"),
        ("a/+/#", "a/+"),
        ("a/+/#", "a/b/#"),
        ("a/+/c", "a/+/c"),
        ("a/b", "a/b"),
        ("$SYS/#", "$SYS/#"),
        ("$SYS/#", "$SYS/broker/+"),
        ("$SYS/+", "$SYS/x"),
        ("/#", "/+"),
        ("a//#", "a//b"),
    ];
    for (p, f) in yes {
        assert!(covers(p, f), "{p} should cover {f}");
    }
    let no = [
        ("a/+", "a/#"),
        ("a/+", "a"),
        ("a/+", "a/b/c"),
        ("a/+", "+/b"),
        ("a/b", "a/+"),
        ("a/b", "a/#"),
        ("a/b", "a"),
        ("a/b", "a/b/c"),
        ("a", "a/#"),
        ("a", "a/"),
        ("a/#", "#"),
        ("a/#", "+"),
        ("a/#", "b"),
        ("a/#", "ab"),
        ("a/#", "+/b"),
        ("a/+/#", "a"),
        ("a/+/#", "a/#"),
        ("a/+/c", "a/+/+"),
        ("a/+/c", "a/#"),
        ("+", "#"),
        ("+", "a/b"),
        ("+", "/"),
        ("+/b", "+/#"),
        ("+/+", "#"),
        // Conservative by design: `+/#` matches what `#` matches, but a per-level check does
        // not see it. A false "no" only refuses a subscription; write `#` instead.
        ("+/#", "#"),
        ("A/#", "a/b"),
        // `$`-topics are out of reach of first-level wildcards [MQTT-4.7.2-1].
        ("#", "$SYS/#"),
        ("#", "$SYS"),
        ("+", "$SYS"),
        ("+/#", "$SYS/x"),
        ("+/+", "$SYS/x"),
        ("$SYS/#", "#"),
        ("$SYS/#", "+/x"),
        ("$SYS/+", "$SYS/#"),
    ];
    for (p, f) in no {
        assert!(!covers(p, f), "{p} must not cover {f}");
    }
}

#[test]
fn covering_agrees_with_matching() {
    // For every pattern P and filter F in the table: if P covers F, every sample topic F
    // matches, P matches too.
    let patterns = ["#", "a/#", "a/+", "+", "+/b", "a/+/#", "a/b", "$SYS/#", "+/#", "/#"];
    let filters = ["#", "a", "a/#", "a/+", "a/b", "+/b", "a/+/b", "+", "$SYS/#", "/+", "a/"];
    let topics = ["a", "b", "a/b", "a/c", "a/b/c", "x/b", "a/", "/", "/x", "$SYS", "$SYS/x", "a/x/b", "c/b/a"];
    for p in patterns {
        for f in filters {
            if !covers(p, f) {
                continue;
            }
            let filter = Filter::new(f).unwrap();
            for t in topics {
                let topic = Topic::new(t).unwrap();
                if filter.matches(&topic) {
                    assert!(matches(p, t), "{p} covers {f}, which matches {t}, but {p} does not match it");
                }
            }
        }
    }
}

#[test]
fn publish_matching_table() {
    for (p, t) in [("#", "a/b"), ("a/#", "a"), ("a/#", "a/b/c"), ("a/+", "a/"), ("+/b", "x/b"), ("$SYS/#", "$SYS/x")] {
        assert!(matches(p, t), "{p} should match {t}");
    }
    for (p, t) in [
        ("a/+", "a"),
        ("a/+", "a/b/c"),
        ("a/b", "a/b/c"),
        ("a", "a/"),
        ("#", "$SYS/x"),
        ("+/x", "$SYS/x"),
        ("a/#", "ab"),
    ] {
        assert!(!matches(p, t), "{p} must not match {t}");
    }
    // The reference: core's Filter::matches, on patterns without substitutions.
    for p in ["#", "a/#", "+/+", "a/+/c", "/+"] {
        for t in ["a", "a/b", "a/b/c", "a//c", "/x", "$SYS/a", "x/y"] {
            let reference = Filter::new(p).unwrap().matches(&Topic::new(t).unwrap());
            assert_eq!(matches(p, t), reference, "{p} vs {t}");
        }
    }
}

#[test]
fn substitution() {
    let acl =
        Acl::new(&[rule("all", &["users/%u/#", "clients/%c"], &["users/%u/+", "clients/%c/#"])], DefaultAcl::Deny)
            .unwrap();
    let alice = id("alice", &[]);
    let t = |s: &str| Topic::new(s).unwrap();
    let f = |s: &str| Filter::new(s).unwrap();
    assert!(acl.allows_publish(Some(&alice), "c1", &t("users/alice/x/y")));
    assert!(acl.allows_publish(Some(&alice), "c1", &t("users/alice")));
    assert!(!acl.allows_publish(Some(&alice), "c1", &t("users/bob/x")));
    assert!(!acl.allows_publish(Some(&alice), "c1", &t("users/alicex/x")));
    assert!(acl.allows_publish(Some(&alice), "c1", &t("clients/c1")));
    assert!(!acl.allows_publish(Some(&alice), "c1", &t("clients/c2")));
    assert!(acl.allows_subscribe(Some(&alice), "c1", &f("users/alice/+")));
    assert!(acl.allows_subscribe(Some(&alice), "c1", &f("users/alice/inbox")));
    assert!(!acl.allows_subscribe(Some(&alice), "c1", &f("users/alice/#")));
    assert!(!acl.allows_subscribe(Some(&alice), "c1", &f("users/+/inbox")));
    assert!(acl.allows_subscribe(Some(&alice), "c1", &f("clients/c1/#")));
    // Anonymous clients have no username: %u grants nothing, %c still works.
    assert!(!acl.allows_publish(None, "c1", &t("users/alice/x")));
    assert!(acl.allows_publish(None, "c1", &t("clients/c1")));
}

#[test]
fn substitution_refuses_wildcards_and_separators() {
    let acl =
        Acl::new(&[rule("all", &["u/%u/#", "c/%c/#", "%c"], &["u/%u/#", "c/%c/#", "%c/#"])], DefaultAcl::Deny).unwrap();
    let t = |s: &str| Topic::new(s).unwrap();
    let f = |s: &str| Filter::new(s).unwrap();
    for evil in ["+", "#", "a/b", "", "$SYS", "a+", "#a", "a\0b"] {
        let who = id(evil, &[]);
        // The literal text cannot be used either: the pattern is skipped for this client.
        assert!(!acl.allows_subscribe(Some(&who), "ok", &f("u/+/#")), "user {evil:?}");
        assert!(!acl.allows_subscribe(Some(&who), "ok", &f("u/#")), "user {evil:?}");
        assert!(!acl.allows_subscribe(Some(&who), evil, &f("c/+/#")), "client {evil:?}");
        assert!(!acl.allows_subscribe(Some(&who), evil, &f("#")), "client {evil:?}");
        assert!(!acl.allows_subscribe(Some(&who), evil, &f("$SYS/#")), "client {evil:?}");
        assert!(!acl.allows_publish(Some(&who), evil, &t("c/x/y")), "client {evil:?}");
        assert!(!acl.allows_publish(Some(&who), evil, &t("$SYS/x")), "client {evil:?}");
    }
    // Sane values still work.
    let who = id("bob", &[]);
    assert!(acl.allows_publish(Some(&who), "dev-1", &t("c/dev-1/x")));
    assert!(acl.allows_publish(Some(&who), "dev-1", &t("dev-1")));
    assert!(acl.allows_subscribe(Some(&who), "dev-1", &f("dev-1/+")));
}

#[test]
fn subjects_and_defaults() {
    let rules =
        [rule("user=alice", &["a/#"], &[]), rule("role=ops", &[], &["ops/#"]), rule("role=ops", &["ops/out"], &[])];
    let t = |s: &str| Topic::new(s).unwrap();
    let f = |s: &str| Filter::new(s).unwrap();
    let alice = id("alice", &[]);
    let olga = id("olga", &["ops"]);
    let zed = id("zed", &["other"]);
    for default in [DefaultAcl::Deny, DefaultAcl::Allow] {
        let acl = Acl::new(&rules, default).unwrap();
        assert!(acl.allows_publish(Some(&alice), "c", &t("a/b")));
        // Governed clients get only what their rules allow, whatever the default.
        assert!(!acl.allows_publish(Some(&alice), "c", &t("b")));
        assert!(!acl.allows_subscribe(Some(&alice), "c", &f("a/#")), "alice's rule has no subscribe list");
        assert!(acl.allows_subscribe(Some(&olga), "c", &f("ops/+")));
        assert!(acl.allows_publish(Some(&olga), "c", &t("ops/out")), "union of two rules for one role");
        assert!(!acl.allows_publish(Some(&olga), "c", &t("ops/in")));
        // Ungoverned clients, including anonymous ones, get the default.
        let open = default == DefaultAcl::Allow;
        assert_eq!(acl.allows_publish(Some(&zed), "c", &t("anything")), open);
        assert_eq!(acl.allows_subscribe(Some(&zed), "c", &f("#")), open);
        assert_eq!(acl.allows_publish(None, "c", &t("a/b")), open);
    }
    // `user` matches the username exactly, not a role of that name.
    let acl = Acl::new(&[rule("user=ops", &["x"], &[])], DefaultAcl::Deny).unwrap();
    assert!(!acl.allows_publish(Some(&olga), "c", &t("x")));
    assert!(acl.allows_publish(Some(&id("ops", &[])), "c", &t("x")));
}

#[test]
fn everyone_rule_governs_anonymous_clients() {
    let acl = Acl::new(&[rule("all", &["public/#"], &["public/#"])], DefaultAcl::Allow).unwrap();
    let t = |s: &str| Topic::new(s).unwrap();
    assert!(acl.allows_publish(None, "c", &t("public/x")));
    assert!(!acl.allows_publish(None, "c", &t("private/x")));
    assert!(!acl.allows_publish(Some(&id("bob", &[])), "c", &t("private/x")));
}

#[test]
fn default_from_config() {
    let t = Topic::new("x").unwrap();
    let open = Acl::from_config(&AuthConfig::default()).unwrap();
    assert_eq!(open, Acl::allow_all());
    assert!(open.allows_publish(None, "c", &t));
    let cfg = AuthConfig { acl: vec![rule("user=a", &["a"], &[])], ..AuthConfig::default() };
    let closed = Acl::from_config(&cfg).unwrap();
    assert!(!closed.allows_publish(None, "c", &t));
    assert!(!closed.allows_publish(Some(&id("b", &[])), "c", &t));
}

#[test]
fn bad_rules_are_refused() {
    let bad_patterns = ["a/#/b", "a#", "a+", "", "x%u", "%u%c", "a/%cx/b", "%U+"];
    for p in bad_patterns {
        assert!(Acl::new(&[rule("all", &[p], &[])], DefaultAcl::Deny).is_err(), "publish {p:?}");
        assert!(Acl::new(&[rule("all", &[], &[p])], DefaultAcl::Deny).is_err(), "subscribe {p:?}");
    }
    let mut both = rule("user=a", &[], &[]);
    both.role = Some("r".into());
    let mut user_and_everyone = rule("user=a", &[], &[]);
    user_and_everyone.everyone = true;
    let none = AclRuleConfig::default();
    for r in [both, user_and_everyone, none, rule("user=", &[], &[]), rule("role=", &[], &[])] {
        let e = Acl::new(std::slice::from_ref(&r), DefaultAcl::Deny).unwrap_err().to_string();
        assert!(e.contains("acl[0]"), "{r:?}: {e}");
    }
    // Fine: `%` elsewhere, and the substitutions as whole levels.
    for p in ["100%", "%u", "a/%c/#", "%/x", "%x"] {
        assert!(Acl::new(&[rule("all", &[p], &[p])], DefaultAcl::Deny).is_ok(), "{p:?}");
    }
}

/// All filters (or, without wildcards, topics) over a small alphabet, up to `depth` levels.
fn all_strings(depth: usize, wildcards: bool) -> Vec<String> {
    let alphabet: &[&str] = if wildcards { &["a", "b", "", "$s", "+", "#"] } else { &["a", "b", "", "$s"] };
    let mut out: Vec<Vec<&str>> = alphabet.iter().map(|l| vec![*l]).collect();
    let mut frontier = out.clone();
    for _ in 1..depth {
        let next: Vec<Vec<&str>> =
            frontier.iter().flat_map(|p| alphabet.iter().map(move |l| [p.clone(), vec![*l]].concat())).collect();
        out.extend(next.iter().cloned());
        frontier = next;
    }
    out.into_iter()
        .map(|l| l.join("/"))
        .filter(|s| Filter::new(s).is_ok() && (wildcards || Topic::new(s).is_ok()))
        .collect()
}

#[test]
fn covering_is_sound_exhaustively() {
    // covers(P, F) must imply: every topic F matches, P matches. Checked over every pattern and
    // filter of up to 3 levels and every topic of up to 4 levels from a small alphabet.
    let filters = all_strings(3, true);
    let topics: Vec<Topic> = all_strings(4, false).iter().map(|t| Topic::new(t).unwrap()).collect();
    let mut covered = 0;
    for p in &filters {
        let pattern = Filter::new(p).unwrap();
        for f in &filters {
            if !covers(p, f) {
                continue;
            }
            covered += 1;
            let filter = Filter::new(f).unwrap();
            for t in topics.iter().filter(|t| filter.matches(t)) {
                assert!(pattern.matches(t), "{p} covers {f}, which matches {t}, but {p} does not");
            }
        }
    }
    assert!(covered > 1000, "the check exercised only {covered} pairs");
}
