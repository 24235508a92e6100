//! The subscription trie: topic filters in, the entries of every matching filter out.
//!
//! Each node keeps its literal children in a map and its wildcard children in their own
//! fields (`plus` for `+`, `hash` for the entries of a trailing `#`), so a match walks at most
//! three ways per level and never parses a filter. Topics that start with `$` are not matched
//! by a wildcard in the first level [MQTT-4.7.2-1].
//!
//! The trie is generic over its entries so it can be tested on its own; the router stores
//! subscribers in it. It holds no lock: the router wraps it in one.

use std::collections::HashMap;

use crate::topic::{Filter, Topic};

struct Node<V> {
    children: HashMap<Box<str>, Node<V>>,
    plus: Option<Box<Node<V>>>,
    /// Entries of filters ending in `#` at this node: they match this level and every level
    /// below it (`a/#` matches `a`, `a/b`, `a/b/c`).
    hash: Vec<V>,
    /// Entries of filters that end exactly at this node.
    exact: Vec<V>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Node { children: HashMap::new(), plus: None, hash: Vec::new(), exact: Vec::new() }
    }
}

impl<V> Node<V> {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.plus.is_none() && self.hash.is_empty() && self.exact.is_empty()
    }
}

/// A topic-filter trie holding entries of type `V`.
pub struct Trie<V> {
    root: Node<V>,
    len: usize,
}

impl<V> Default for Trie<V> {
    fn default() -> Self {
        Trie { root: Node::default(), len: 0 }
    }
}

impl<V> Trie<V> {
    /// An empty trie.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many entries the trie holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the trie holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds an entry under `filter`.
    pub fn insert(&mut self, filter: &Filter, value: V) {
        let mut node = &mut self.root;
        for level in filter.levels() {
            match level {
                "#" => {
                    node.hash.push(value);
                    self.len += 1;
                    return;
                }
                "+" => node = node.plus.get_or_insert_with(Box::default),
                l => node = node.children.entry(Box::from(l)).or_default(),
            }
        }
        node.exact.push(value);
        self.len += 1;
    }

    /// Removes the entries under exactly `filter` for which `pred` holds, and prunes empty
    /// nodes. Returns how many were removed.
    pub fn remove(&mut self, filter: &Filter, mut pred: impl FnMut(&V) -> bool) -> usize {
        let levels: Vec<&str> = filter.levels().collect();
        let removed = Self::remove_at(&mut self.root, &levels, &mut pred);
        self.len -= removed;
        removed
    }

    fn remove_at(node: &mut Node<V>, levels: &[&str], pred: &mut impl FnMut(&V) -> bool) -> usize {
        let Some((&first, rest)) = levels.split_first() else {
            let before = node.exact.len();
            node.exact.retain(|v| !pred(v));
            return before - node.exact.len();
        };
        match first {
            "#" => {
                let before = node.hash.len();
                node.hash.retain(|v| !pred(v));
                before - node.hash.len()
            }
            "+" => {
                let Some(child) = node.plus.as_mut() else { return 0 };
                let n = Self::remove_at(child, rest, pred);
                if child.is_empty() {
                    node.plus = None;
                }
                n
            }
            l => {
                let Some(child) = node.children.get_mut(l) else { return 0 };
                let n = Self::remove_at(child, rest, pred);
                if child.is_empty() {
                    node.children.remove(l);
                }
                n
            }
        }
    }

    /// Calls `visit` for every entry whose filter matches `topic`.
    pub fn for_each_match<'t>(&'t self, topic: &Topic, mut visit: impl FnMut(&'t V)) {
        let levels: smallvec_levels::Levels<'_> = smallvec_levels::Levels::new(topic.as_str());
        Self::match_at(&self.root, levels.as_slice(), topic.is_dollar(), &mut visit);
    }

    fn match_at<'t>(node: &'t Node<V>, levels: &[&str], dollar: bool, visit: &mut impl FnMut(&'t V)) {
        // `dollar` is true only at the root of a `$` topic: no wildcard may match there.
        if !dollar {
            node.hash.iter().for_each(&mut *visit);
        }
        let Some((&first, rest)) = levels.split_first() else {
            node.exact.iter().for_each(visit);
            return;
        };
        if let Some(child) = node.children.get(first) {
            Self::match_at(child, rest, false, visit);
        }
        if !dollar {
            if let Some(child) = node.plus.as_deref() {
                Self::match_at(child, rest, false, visit);
            }
        }
    }
}

/// Splits a topic into levels on the stack for the common case of a few levels, so that a
/// match allocates nothing.
mod smallvec_levels {
    const INLINE: usize = 16;

    // The inline variant is deliberately large: it lives on the stack for one match.
    #[allow(clippy::large_enum_variant)]
    pub enum Levels<'a> {
        Inline([&'a str; INLINE], usize),
        Heap(Vec<&'a str>),
    }

    impl<'a> Levels<'a> {
        pub fn new(topic: &'a str) -> Self {
            let mut arr = [""; INLINE];
            let mut n = 0;
            for l in topic.split('/') {
                if n == INLINE {
                    return Levels::Heap(topic.split('/').collect());
                }
                arr[n] = l;
                n += 1;
            }
            Levels::Inline(arr, n)
        }

        pub fn as_slice(&self) -> &[&'a str] {
            match self {
                Levels::Inline(a, n) => &a[..*n],
                Levels::Heap(v) => v,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(trie: &Trie<&'static str>, topic: &str) -> Vec<&'static str> {
        let mut v = Vec::new();
        trie.for_each_match(&Topic::new(topic).unwrap(), |e| v.push(*e));
        v.sort();
        v
    }

    const FILTERS: &[&str] = &[
        "sport/tennis/player1/#",
        "sport/#",
        "#",
        "sport/tennis/+",
        "sport/+",
        "+/+",
        "/+",
        "+",
        "$SYS/#",
        "$SYS/monitor/+",
        "+/monitor/Clients",
        "a//b",
        "a/+/b",
        "sport/tennis",
    ];

    fn trie() -> Trie<&'static str> {
        let mut t = Trie::new();
        for f in FILTERS {
            t.insert(&Filter::new(f).unwrap(), *f);
        }
        t
    }

    /// The trie agrees with the reference matcher on a table that includes the examples of
    /// MQTT 3.1.1 §4.7 and their near-misses.
    #[test]
    fn agrees_with_reference() {
        let t = trie();
        let topics = [
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "sport/tennis/player1/score/wimbledon",
            "sport",
            "sport/",
            "sport/tennis",
            "sport/tennis/",
            "Sport/tennis",
            "/finance",
            "finance",
            "$SYS/monitor/Clients",
            "$SYS",
            "a//b",
            "a/b",
            "a/x/b",
            "/",
        ];
        for topic in topics {
            let want: Vec<&str> = {
                let tp = Topic::new(topic).unwrap();
                let mut v: Vec<&str> =
                    FILTERS.iter().copied().filter(|f| Filter::new(f).unwrap().matches(&tp)).collect();
                v.sort();
                v
            };
            assert_eq!(matches(&t, topic), want, "topic {topic}");
        }
    }

    #[test]
    fn spec_examples() {
        let t = trie();
        assert!(matches(&t, "sport").contains(&"sport/#"));
        assert!(!matches(&t, "sport").contains(&"sport/+"));
        assert!(matches(&t, "sport/").contains(&"sport/+"));
        assert!(!matches(&t, "sport/tennis/player1/ranking").contains(&"sport/tennis/+"));
        assert!(matches(&t, "/finance").contains(&"/+"));
        assert!(!matches(&t, "/finance").contains(&"+"));
        assert_eq!(matches(&t, "$SYS/monitor/Clients"), vec!["$SYS/#", "$SYS/monitor/+"]);
    }

    #[test]
    fn remove_prunes() {
        let mut t = trie();
        let n = t.len();
        assert_eq!(t.remove(&Filter::new("sport/+").unwrap(), |_| true), 1);
        assert_eq!(t.remove(&Filter::new("sport/+").unwrap(), |_| true), 0);
        assert_eq!(t.remove(&Filter::new("no/such").unwrap(), |_| true), 0);
        assert_eq!(t.len(), n - 1);
        assert!(!matches(&t, "sport/x").contains(&"sport/+"));
        for f in FILTERS {
            t.remove(&Filter::new(f).unwrap(), |_| true);
        }
        assert!(t.is_empty());
        assert!(t.root.is_empty());
    }

    #[test]
    fn deep_topics() {
        let mut t = Trie::new();
        let deep = vec!["x"; 40].join("/");
        t.insert(&Filter::new(&deep).unwrap(), "deep");
        t.insert(&Filter::new("x/#").unwrap(), "hash");
        assert_eq!(matches(&t, &deep), vec!["deep", "hash"]);
    }
}
