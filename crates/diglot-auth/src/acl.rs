//! Topic ACLs: who may publish to which topics and subscribe to which filters.
//!
//! # Rules
//! Each `[[auth.acl]]` rule governs a user (`user = "alice"`), the holders of a role
//! (`role = "ops"`) or every client, anonymous ones included (`everyone = true`), and lists
//! filter patterns for `publish` and for `subscribe`. Rules only ever allow:
//!
//! - A client that at least one rule governs may do exactly what the union of those rules
//!   allows, and nothing else (a rule with no `publish` list still governs: its client may not
//!   publish unless another rule says so).
//! - A client that no rule governs gets `default_acl`: unset, that is "deny" as soon as any rule
//!   is configured and "allow" when there are none (so an empty `[auth]` keeps an open broker
//!   open, and writing one rule closes everything it does not name). `default_acl = "allow"`
//!   with rules restricts only the clients the rules name.
//!
//! # Publish
//! A topic is allowed when some pattern *matches* it, by the MQTT §4.7 rules of
//! [`Filter::matches`]: `a/#` allows `a` and `a/b/c`; `+/x` does not allow `$SYS/x`.
//!
//! # Subscribe
//! A filter is allowed when some pattern *covers* it: every topic the filter can match is one
//! the pattern matches. Level by level:
//! - pattern `#` covers whatever remains, including nothing (`a/#` covers `a`, `a/+/b`, `a/#`);
//! - pattern `+` covers one level that is a literal or `+`, never `#` (`a/+` does not cover
//!   `a/#`, which also matches `a` and `a/b/c`);
//! - a literal covers only the same literal (`a/b` does not cover `a/+`);
//! - pattern and filter must end together unless the pattern ends in `#` (`a/+` does not cover
//!   `a`, `a` does not cover `a/#`);
//! - a pattern whose first level is a wildcard does not cover a filter that starts with a `$`
//!   literal (`#` does not cover `$SYS/#`), as it would not match its topics [MQTT-4.7.2-1].
//!
//! The check is per level and so conservative: it never allows too much, but `+/#` (which
//! matches exactly what `#` matches) is not taken to cover `#`; write `#`. A filter broader
//! than every pattern is refused whole; nothing is filtered per message. MQTT
//! 5 shared subscriptions (`$share/group/filter`) are checked on the inner `filter`.
//!
//! # Substitution
//! A pattern level that is exactly `%u` stands for the username, and `%c` for the client id.
//! `%u`/`%c` inside a longer level (`x%u`) is a configuration error. A value is substituted
//! only if it is non-empty, does not start with `$`, and contains no `/`, `+`, `#` or NUL;
//! otherwise that pattern grants nothing to that client (it is skipped, not widened). So a
//! client id `+` or `#` or `a/b` or `$SYS` cannot turn `clients/%c/#` into access to other
//! clients' topics or to `$`-topics, and an anonymous client never matches a `%u` pattern.
//!
//! This module knows nothing of protocols: the adapters map refusals to SUBACK 0x80/0x87,
//! PUBACK 0x87 or a STOMP ERROR.

use diglot_core::{Filter, Topic};

use crate::config::{AclRuleConfig, AuthConfig, DefaultAcl};
use crate::{AuthError, Identity};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(Box<str>),
    Plus,
    Hash,
    User,
    Client,
}

/// A level after substitution.
#[derive(Clone, Copy)]
enum Resolved<'a> {
    Literal(&'a str),
    Plus,
    Hash,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern(Vec<Level>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Subject {
    User(String),
    Role(String),
    Everyone,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    subject: Subject,
    publish: Vec<Pattern>,
    subscribe: Vec<Pattern>,
}

/// The compiled ACL. Cheap to query; share it behind an `Arc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    rules: Vec<Rule>,
    default: DefaultAcl,
}

/// The client being checked: its identity (`None` when anonymous) and client id.
struct Client<'a> {
    who: Option<&'a Identity>,
    client_id: &'a str,
}

impl Acl {
    /// Compiles the `acl` rules and `default_acl` of `cfg`.
    pub fn from_config(cfg: &AuthConfig) -> Result<Acl, AuthError> {
        Acl::new(&cfg.acl, cfg.effective_default_acl())
    }

    /// Compiles `rules`; `default` applies to clients no rule governs.
    pub fn new(rules: &[AclRuleConfig], default: DefaultAcl) -> Result<Acl, AuthError> {
        let rules = rules.iter().enumerate().map(|(i, r)| compile_rule(r).map_err(|e| config(i, e)));
        Ok(Acl { rules: rules.collect::<Result<_, _>>()?, default })
    }

    /// An ACL with no rules that allows everything.
    pub fn allow_all() -> Acl {
        Acl { rules: Vec::new(), default: DefaultAcl::Allow }
    }

    /// Whether `who` (None: anonymous) with `client_id` may publish to `topic`.
    pub fn allows_publish(&self, who: Option<&Identity>, client_id: &str, topic: &Topic) -> bool {
        self.decide(Client { who, client_id }, |rule, c| rule.publish.iter().any(|p| p.matches(c, topic)))
    }

    /// Whether `who` (None: anonymous) with `client_id` may subscribe to `filter` (the inner
    /// filter of a shared subscription).
    pub fn allows_subscribe(&self, who: Option<&Identity>, client_id: &str, filter: &Filter) -> bool {
        self.decide(Client { who, client_id }, |rule, c| rule.subscribe.iter().any(|p| p.covers(c, filter)))
    }

    fn decide(&self, c: Client<'_>, allowed_by: impl Fn(&Rule, &Client<'_>) -> bool) -> bool {
        let mut governed = false;
        for rule in self.rules.iter().filter(|r| r.subject.governs(c.who)) {
            governed = true;
            if allowed_by(rule, &c) {
                return true;
            }
        }
        !governed && self.default == DefaultAcl::Allow
    }
}

fn config(i: usize, e: String) -> AuthError {
    AuthError::Config(format!("acl[{i}]: {e}"))
}

fn compile_rule(r: &AclRuleConfig) -> Result<Rule, String> {
    let subject = match (&r.user, &r.role, r.everyone) {
        (Some(u), None, false) if !u.is_empty() => Subject::User(u.clone()),
        (None, Some(role), false) if !role.is_empty() => Subject::Role(role.clone()),
        (None, None, true) => Subject::Everyone,
        _ => return Err("set exactly one of a non-empty `user`, a non-empty `role`, or `everyone = true`".into()),
    };
    let compile = |list: &[String], what: &str| {
        list.iter()
            .map(|p| Pattern::compile(p).map_err(|e| format!("{what} pattern {p:?}: {e}")))
            .collect::<Result<Vec<_>, String>>()
    };
    Ok(Rule { subject, publish: compile(&r.publish, "publish")?, subscribe: compile(&r.subscribe, "subscribe")? })
}

impl Subject {
    fn governs(&self, who: Option<&Identity>) -> bool {
        match (self, who) {
            (Subject::Everyone, _) => true,
            (Subject::User(u), Some(id)) => *u == id.username,
            (Subject::Role(r), Some(id)) => id.has_role(r),
            (_, None) => false,
        }
    }
}

/// Whether `v` may stand in for `%u` or `%c` without widening the pattern.
fn substitutable(v: &str) -> bool {
    !v.is_empty() && !v.starts_with('$') && !v.contains(['/', '+', '#', '\0'])
}

impl Pattern {
    fn compile(s: &str) -> Result<Pattern, String> {
        // Check the filter syntax with placeholders standing in for the substitutions.
        let probe: Vec<&str> = s.split('/').map(|l| if l == "%u" || l == "%c" { "x" } else { l }).collect();
        Filter::new(&probe.join("/")).map_err(|e| e.to_string())?;
        let levels = s
            .split('/')
            .map(|l| match l {
                "#" => Ok(Level::Hash),
                "+" => Ok(Level::Plus),
                "%u" => Ok(Level::User),
                "%c" => Ok(Level::Client),
                l if l.contains("%u") || l.contains("%c") => {
                    Err(format!("level {l:?}: %u and %c must fill a whole level"))
                }
                l => Ok(Level::Literal(l.into())),
            })
            .collect::<Result<_, _>>()?;
        Ok(Pattern(levels))
    }

    /// The levels after substitution, or `None` if a value may not be substituted.
    fn resolve<'a>(&'a self, c: &Client<'a>) -> Option<Vec<Resolved<'a>>> {
        self.0
            .iter()
            .map(|l| match l {
                Level::Literal(s) => Some(Resolved::Literal(s)),
                Level::Plus => Some(Resolved::Plus),
                Level::Hash => Some(Resolved::Hash),
                Level::User => c.who.map(|id| id.username.as_str()).filter(|u| substitutable(u)).map(Resolved::Literal),
                Level::Client => Some(c.client_id).filter(|id| substitutable(id)).map(Resolved::Literal),
            })
            .collect()
    }

    fn matches(&self, c: &Client<'_>, topic: &Topic) -> bool {
        let Some(levels) = self.resolve(c) else { return false };
        let dollar = topic.is_dollar();
        let mut t = topic.levels();
        for (i, level) in levels.iter().enumerate() {
            let first_wild = i == 0 && dollar;
            match level {
                Resolved::Hash => return !first_wild,
                Resolved::Plus => {
                    if t.next().is_none() || first_wild {
                        return false;
                    }
                }
                Resolved::Literal(s) => {
                    if t.next() != Some(*s) {
                        return false;
                    }
                }
            }
        }
        t.next().is_none()
    }

    fn covers(&self, c: &Client<'_>, filter: &Filter) -> bool {
        let Some(levels) = self.resolve(c) else { return false };
        // Only a filter whose first level is a `$…` literal can match `$`-topics.
        let dollar = filter.as_str().starts_with('$');
        let mut f = filter.levels();
        for (i, level) in levels.iter().enumerate() {
            let first_wild = i == 0 && dollar;
            match level {
                Resolved::Hash => return !first_wild,
                Resolved::Plus => match f.next() {
                    None | Some("#") => return false,
                    Some(_) if first_wild => return false,
                    Some(_) => {}
                },
                Resolved::Literal(s) => {
                    if f.next() != Some(*s) {
                        return false;
                    }
                }
            }
        }
        f.next().is_none()
    }
}

#[cfg(test)]
mod tests;
