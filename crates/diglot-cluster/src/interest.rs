//! What the other nodes want: each node's subscribed filters, and one trie over all of them
//! that answers "does any other node want this topic?" on the publish path; and every node's
//! share groups and named queues ([`Groups`]), which decide who serves a group's message.
//!
//! It is rebuilt whenever a node's set changes (subscriptions change far less often than
//! messages flow). Filters read from Redis that do not parse are ignored.

use std::collections::{BTreeSet, HashMap};

use diglot_core::{Filter, Topic, Trie};

use crate::groups::Groups;

/// The other nodes' filters.
#[derive(Default)]
pub(crate) struct Remote {
    nodes: HashMap<String, BTreeSet<String>>,
    trie: Trie<()>,
    /// Every node's groups, this one's included.
    pub(crate) groups: Groups,
}

impl Remote {
    /// Replaces `node`'s filters. Returns whether they changed.
    pub(crate) fn set(&mut self, node: &str, filters: impl IntoIterator<Item = String>) -> bool {
        let filters: BTreeSet<String> = filters.into_iter().filter(|f| Filter::new(f).is_ok()).collect();
        if self.nodes.get(node) == Some(&filters) {
            return false;
        }
        self.nodes.insert(node.to_string(), filters);
        self.rebuild();
        true
    }

    /// Forgets `node` (it left or timed out).
    pub(crate) fn remove(&mut self, node: &str) {
        if self.nodes.remove(node).is_some() {
            self.rebuild();
        }
        self.groups.remove(node);
    }

    /// The nodes with a known set.
    pub(crate) fn nodes(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// `node`'s filters.
    pub(crate) fn filters_of(&self, node: &str) -> Vec<String> {
        self.nodes.get(node).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }

    /// Whether some other node has a subscription that matches `topic`.
    pub(crate) fn wants(&self, topic: &Topic) -> bool {
        let mut any = false;
        self.trie.for_each_match(topic, |_| any = true);
        any
    }

    fn rebuild(&mut self) {
        let mut trie = Trie::new();
        for f in self.nodes.values().flatten() {
            if let Ok(f) = Filter::new(f) {
                trie.insert(&f, ());
            }
        }
        self.trie = trie;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wants_what_some_node_subscribed() {
        let mut r = Remote::default();
        let t = |s: &str| Topic::new(s).unwrap();
        assert!(!r.wants(&t("a/b")));
        assert!(r.set("b", ["a/+".to_string(), "bad/#/x".to_string()]));
        assert!(!r.set("b", ["a/+".to_string()]), "the bad filter was ignored");
        assert!(r.wants(&t("a/b")));
        assert!(!r.wants(&t("a/b/c")));
        r.set("c", ["#".to_string()]);
        assert!(r.wants(&t("x")));
        assert!(!r.wants(&t("$SYS/x")));
        r.remove("c");
        assert!(!r.wants(&t("x")));
        assert_eq!(r.filters_of("b"), vec!["a/+".to_string()]);
    }
}
