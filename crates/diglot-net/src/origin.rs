//! The `Origin` allow-list of a WebSocket listener (RFC 6455 §10.2, RFC 6454).
//!
//! Browsers send the origin of the page that opens a WebSocket; other clients usually send
//! none. An entry is an origin (`https://app.example.com`), an origin with any port
//! (`http://localhost:*`), or `*` (any origin, only when written explicitly). Matching ignores
//! ASCII case and a trailing `/`. A request without `Origin` is allowed or refused by
//! `allow_missing`. `null` (a sandboxed page or `file://`) only matches an explicit `null`.

/// Which origins may open a WebSocket on a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origins {
    allowed: Vec<String>,
    allow_missing: bool,
}

impl Default for Origins {
    /// Every origin and requests without one: for tests and embedding. `broker.toml`'s default
    /// is narrower (loopback pages only).
    fn default() -> Self {
        Origins { allowed: vec!["*".into()], allow_missing: true }
    }
}

impl Origins {
    /// An allow-list; `allow_missing` decides for requests without `Origin`.
    pub fn new(allowed: impl IntoIterator<Item = String>, allow_missing: bool) -> Origins {
        let allowed = allowed.into_iter().map(|o| normalize(&o)).collect();
        Origins { allowed, allow_missing }
    }

    /// Whether a request with this `Origin` header (or none) may open a WebSocket.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        let Some(origin) = origin else { return self.allow_missing };
        let origin = normalize(origin);
        self.allowed.iter().any(|a| a == "*" || *a == origin || port_wildcard_matches(a, &origin))
    }
}

fn normalize(o: &str) -> String {
    o.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// `scheme://host:*` matches `scheme://host` with any port, or none.
fn port_wildcard_matches(pattern: &str, origin: &str) -> bool {
    let Some(base) = pattern.strip_suffix(":*") else { return false };
    match origin.strip_prefix(base) {
        Some("") => true,
        Some(rest) => {
            rest.strip_prefix(':').is_some_and(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list() {
        let o = Origins::new(["https://app.example.com".into(), "http://localhost:*".into()], false);
        assert!(o.allows(Some("https://app.example.com")));
        assert!(o.allows(Some("HTTPS://App.Example.com/")));
        assert!(o.allows(Some("http://localhost:3000")));
        assert!(o.allows(Some("http://localhost")));
        assert!(!o.allows(Some("http://localhost.evil.com")));
        assert!(!o.allows(Some("http://localhost:3000.evil.com")));
        assert!(!o.allows(Some("https://localhost:3000")));
        assert!(!o.allows(Some("https://app.example.com.evil.com")));
        assert!(!o.allows(Some("null")));
        assert!(!o.allows(None));
        assert!(Origins::new([], true).allows(None));
        assert!(!Origins::new([], true).allows(Some("https://x")));
        assert!(Origins::new(["*".into()], false).allows(Some("https://anything")));
        assert!(Origins::new(["null".into()], false).allows(Some("null")));
    }
}
