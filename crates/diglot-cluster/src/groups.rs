//! Share groups and named queues across nodes: which node has how many members (or
//! consumers) of each, and, for a message about to be published, which node serves each group
//! it matches.
//!
//! A group's key is `$share/<group>/<filter>` (an MQTT shared subscription; `<group>` holds no
//! `/`) or `$queue/<name>` (a named queue, matched by its topic exactly). The publishing node
//! picks one node per matched group, weighted by members: a per-group turn counter walks the
//! nodes' members in node-id order, so each member gets about the same share wherever it is.
//! It is rebuilt whenever a node's groups change (far less often than messages flow); keys
//! read from Redis that do not parse are ignored.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use diglot_core::cluster::{Assigned, Assignment};
use diglot_core::{Filter, Topic, Trie};

/// One group over the whole cluster.
struct Group {
    key: String,
    /// (node id, members), by node id; this node is `None`.
    members: Vec<(Option<String>, usize)>,
    total: usize,
    turn: Arc<AtomicU64>,
}

/// Every node's groups.
#[derive(Default)]
pub(crate) struct Groups {
    /// This node's groups: key → members.
    local: BTreeMap<String, usize>,
    /// The other nodes' groups: node → key → members.
    nodes: HashMap<String, BTreeMap<String, usize>>,
    /// Share groups by their filter.
    shares: Trie<Arc<Group>>,
    /// Named queues by their topic.
    queues: HashMap<String, Arc<Group>>,
    /// Turn counters by key, kept across rebuilds.
    turns: HashMap<String, Arc<AtomicU64>>,
}

/// The filter of a share group's key, or `None` for a queue key (or garbage).
fn share_filter(key: &str) -> Option<Filter> {
    let rest = key.strip_prefix("$share/")?;
    let (_, filter) = rest.split_once('/')?;
    Filter::new(filter).ok()
}

fn valid(key: &str) -> bool {
    share_filter(key).is_some() || key.strip_prefix("$queue/").is_some_and(|n| !n.is_empty())
}

impl Groups {
    /// Sets this node's member count of `key` (0: none). Returns whether it changed.
    pub(crate) fn set_local(&mut self, key: &str, members: usize) -> bool {
        let changed = match members {
            0 => self.local.remove(key).is_some(),
            n => self.local.insert(key.to_string(), n) != Some(n),
        };
        if changed {
            self.rebuild();
        }
        changed
    }

    /// Replaces `node`'s groups. Returns whether they changed.
    pub(crate) fn set(&mut self, node: &str, groups: impl IntoIterator<Item = (String, usize)>) -> bool {
        let groups: BTreeMap<String, usize> = groups.into_iter().filter(|(k, n)| *n > 0 && valid(k)).collect();
        if self.nodes.get(node).map_or(groups.is_empty(), |g| *g == groups) {
            return false;
        }
        self.nodes.insert(node.to_string(), groups);
        self.rebuild();
        true
    }

    /// Forgets `node` (it left or timed out).
    pub(crate) fn remove(&mut self, node: &str) {
        if self.nodes.remove(node).is_some() {
            self.rebuild();
        }
    }

    /// `node`'s groups (`None`: this node's).
    pub(crate) fn of(&self, node: Option<&str>) -> BTreeMap<String, usize> {
        match node {
            None => self.local.clone(),
            Some(n) => self.nodes.get(n).cloned().unwrap_or_default(),
        }
    }

    /// Picks a node for each group that `topic` matches; `me` is this node's id. With
    /// `local_only` (the link is down) only this node's members count. `None` when no group
    /// matches.
    pub(crate) fn assign(&self, topic: &Topic, me: &str, local_only: bool) -> Option<Assignment> {
        if self.shares.is_empty() && self.queues.is_empty() {
            return None;
        }
        let mut groups = Vec::new();
        let mut pick = |g: &Group| {
            let count = |node: &Option<String>, n: usize| if local_only && node.is_some() { 0 } else { n };
            let total = if local_only { g.members.iter().map(|(node, n)| count(node, *n)).sum() } else { g.total };
            if total == 0 {
                return;
            }
            let mut k = (g.turn.fetch_add(1, Ordering::Relaxed) % total as u64) as usize;
            for (node, n) in &g.members {
                let n = count(node, *n);
                if k < n {
                    let node_id = node.clone().unwrap_or_else(|| me.to_string());
                    groups.push(Assigned { key: g.key.clone(), node: node_id, here: node.is_none() });
                    return;
                }
                k -= n;
            }
        };
        if topic.as_str().starts_with("$queue/") {
            if let Some(g) = self.queues.get(topic.as_str()) {
                pick(g);
            }
        } else {
            self.shares.for_each_match(topic, |g| pick(g));
        }
        if groups.is_empty() {
            return None;
        }
        groups.sort_by(|a, b| a.key.cmp(&b.key));
        Some(Assignment { groups })
    }

    fn rebuild(&mut self) {
        let mut all: BTreeMap<&str, Vec<(Option<String>, usize)>> = BTreeMap::new();
        for (key, n) in &self.local {
            all.entry(key).or_default().push((None, *n));
        }
        let mut nodes: Vec<(&String, &BTreeMap<String, usize>)> = self.nodes.iter().collect();
        nodes.sort_by(|a, b| a.0.cmp(b.0));
        for (node, groups) in nodes {
            for (key, n) in groups {
                all.entry(key).or_default().push((Some(node.clone()), *n));
            }
        }
        let turns = std::mem::take(&mut self.turns);
        let (mut shares, mut queues) = (Trie::new(), HashMap::new());
        for (key, members) in all {
            let turn = turns.get(key).cloned().unwrap_or_default();
            self.turns.insert(key.to_string(), turn.clone());
            let total = members.iter().map(|(_, n)| n).sum();
            let group = Arc::new(Group { key: key.to_string(), members, total, turn });
            match share_filter(key) {
                Some(filter) => shares.insert(&filter, group),
                None => {
                    queues.insert(key.to_string(), group);
                }
            }
        }
        self.shares = shares;
        self.queues = queues;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Topic {
        Topic::new(s).unwrap()
    }

    fn nodes_of(g: &Groups, topic: &str, n: usize) -> Vec<String> {
        (0..n).map(|_| g.assign(&t(topic), "a", false).unwrap().groups[0].node.clone()).collect()
    }

    #[test]
    fn each_message_goes_to_one_node_weighted_by_members() {
        let mut g = Groups::default();
        assert!(g.assign(&t("jobs/x"), "a", false).is_none());
        assert!(g.set_local("$share/w/jobs/+", 1));
        assert!(!g.set_local("$share/w/jobs/+", 1));
        assert!(g.set("b", [("$share/w/jobs/+".to_string(), 2), ("$share/w/bad/#/x".to_string(), 1)]));
        let picks = nodes_of(&g, "jobs/x", 30);
        assert_eq!(picks.iter().filter(|n| *n == "a").count(), 10);
        assert_eq!(picks.iter().filter(|n| *n == "b").count(), 20);
        let a = g.assign(&t("jobs/x"), "a", true).unwrap();
        assert_eq!(a.groups, vec![Assigned { key: "$share/w/jobs/+".into(), node: "a".into(), here: true }]);
        assert!(g.assign(&t("other"), "a", false).is_none());
        g.remove("b");
        assert!(nodes_of(&g, "jobs/x", 5).iter().all(|n| n == "a"));
    }

    #[test]
    fn queues_match_their_topic_and_stay_put_without_consumers() {
        let mut g = Groups::default();
        g.set("b", [("$queue/q".to_string(), 1)]);
        g.set("c", [("$queue/q".to_string(), 1), ("$share/s/#".to_string(), 1)]);
        let a = g.assign(&t("$queue/q"), "a", false).unwrap();
        assert_eq!(a.groups.len(), 1, "a queue topic matches no share filter: {a:?}");
        assert!(a.any_elsewhere() && !a.serves_here("$queue/q"));
        assert!(g.assign(&t("$queue/q"), "a", true).is_none(), "link down: no member here");
        assert!(g.assign(&t("$queue/other"), "a", false).is_none());
        let picks = nodes_of(&g, "$queue/q", 4);
        assert_ne!(picks[0], picks[1], "turns: {picks:?}");
        assert_eq!(picks.iter().filter(|n| *n == "b").count(), 2, "{picks:?}");
        let x = g.assign(&t("x/y"), "a", false).unwrap();
        assert_eq!((x.groups[0].key.as_str(), x.groups[0].node.as_str()), ("$share/s/#", "c"));
        assert!(x.serves_here("$share/other/#") && !x.assigned_here("$share/other/#"));
    }
}
