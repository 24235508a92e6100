//! RECEIPTs that wait for publishes: a SEND with `receipt`, or a COMMIT with `receipt` that
//! replays several SENDs, is answered only once the driver reports every one of its publishes
//! routed (and, for persistent messages, stored) through `Adapter::on_publish_done`. A QoS ≥ 1
//! publish without a receipt gets a bare token, so that its failure is still reported.
//!
//! The driver goes on reading while publishes wait for the store, and reports them in the
//! order they were handed over, so receipts leave in frame order. Every other reply must not
//! overtake them: the session counts the publishes not reported yet ([`Receipts::unreported`])
//! and holds back any frame that could reply before they are (see `Session::must_wait`).

use std::collections::HashMap;

/// What one finished publish means for its receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Done {
    /// Other publishes of the same receipt are still pending (or the token is unknown).
    Pending,
    /// All publishes are done: send this `receipt-id`.
    Receipt(String),
}

#[derive(Debug)]
struct Group {
    receipt: String,
    remaining: usize,
}

/// Pending receipts, keyed by publish token.
#[derive(Debug, Default)]
pub(crate) struct Receipts {
    next_token: u64,
    next_group: u64,
    tokens: HashMap<u64, u64>,
    groups: HashMap<u64, Group>,
    /// Tokens handed out (receipt or bare) whose publish the driver has not reported yet.
    unreported: usize,
}

impl Receipts {
    /// Opens a receipt that waits for `count` (≥ 1) publishes, and returns their tokens.
    pub(crate) fn open(&mut self, receipt: &str, count: usize) -> Vec<u64> {
        let group = self.next_group;
        self.next_group += 1;
        self.groups.insert(group, Group { receipt: receipt.to_owned(), remaining: count });
        self.unreported += count;
        (0..count)
            .map(|_| {
                let token = self.next_token;
                self.next_token += 1;
                self.tokens.insert(token, group);
                token
            })
            .collect()
    }

    /// A token that belongs to no receipt: the driver reports the publish, but its success
    /// owes the client nothing ([`Receipts::succeeded`] says `Pending`, [`Receipts::failed`]
    /// `None`).
    pub(crate) fn bare(&mut self) -> u64 {
        self.unreported += 1;
        let token = self.next_token;
        self.next_token += 1;
        token
    }

    /// The driver reported one publish (`Adapter::on_publish_done`), whatever its outcome.
    pub(crate) fn reported(&mut self) {
        self.unreported = self.unreported.saturating_sub(1);
    }

    /// How many publishes with a token the driver has not reported yet: while any has not,
    /// a reply written now could overtake the receipt it owes.
    pub(crate) fn unreported(&self) -> usize {
        self.unreported
    }

    /// The publish with `token` succeeded.
    pub(crate) fn succeeded(&mut self, token: u64) -> Done {
        let Some(group) = self.tokens.remove(&token) else { return Done::Pending };
        let Some(g) = self.groups.get_mut(&group) else { return Done::Pending };
        g.remaining -= 1;
        if g.remaining > 0 {
            return Done::Pending;
        }
        match self.groups.remove(&group) {
            Some(g) => Done::Receipt(g.receipt),
            None => Done::Pending,
        }
    }

    /// The publish with `token` failed: forget its receipt and return its id, if known.
    pub(crate) fn failed(&mut self, token: u64) -> Option<String> {
        let group = self.tokens.remove(&token)?;
        self.tokens.retain(|_, g| *g != group);
        self.groups.remove(&group).map(|g| g.receipt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_every_publish() {
        let mut r = Receipts::default();
        let t = r.open("c1", 2);
        assert_eq!(r.succeeded(t[1]), Done::Pending);
        assert_eq!(r.succeeded(t[0]), Done::Receipt("c1".into()));
        assert_eq!(r.succeeded(t[0]), Done::Pending);
        let t = r.open("c2", 3);
        assert_eq!(r.failed(t[0]), Some("c2".into()));
        assert_eq!(r.succeeded(t[1]), Done::Pending);
        assert_eq!(r.failed(t[2]), None);
        let b = r.bare();
        assert!(!t.contains(&b));
        assert_eq!(r.succeeded(b), Done::Pending);
        let b = r.bare();
        assert_eq!(r.failed(b), None);
    }
}
