//! The `[store]` section of `broker.toml`: where the store lives, which engine it uses, the
//! durability policy and the default queue limits.
//!
//! Keys are snake_case like the rest of `broker.toml`; enum values are kebab-case (`"fjall"`,
//! `"drop-oldest"`). Every struct here derives serde with `deny_unknown_fields`, so a misspelt key is an error at
//! startup rather than a silently ignored setting. This module only describes; it does not
//! validate paths or open anything.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Which storage engine holds the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    /// fjall 3 (the default): fsync-backed durability, space comes back after deletes.
    #[default]
    Fjall,
    /// sled 0.34: syncs with `sync_file_range`, not `fsync`; see `docs/durability.md`.
    Sled,
}

impl EngineKind {
    /// The name used in `broker.toml` and in the store's metadata.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Fjall => "fjall",
            EngineKind::Sled => "sled",
        }
    }

    /// The engine called `name`, if any.
    pub fn from_name(name: &str) -> Option<EngineKind> {
        match name {
            "fjall" => Some(EngineKind::Fjall),
            "sled" => Some(EngineKind::Sled),
            _ => None,
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// When a write counts as done (when `append`, `ack` and the other async writes resolve).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// The default: writes arriving within `group_commit_ms` share one engine sync, and
    /// each resolves after that sync.
    #[default]
    Group,
    /// One engine sync per write before it resolves.
    Every,
    /// No sync: writes resolve once they are in the OS page cache (fjall) or sled's buffers.
    /// An acknowledgement then says nothing about disks; for throughput tests only.
    None,
}

/// What a full queue does with a new message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overflow {
    /// The default: refuse the new message (the publisher gets the protocol's error).
    #[default]
    Reject,
    /// Delete the oldest entries until the new one fits; every drop is counted.
    DropOldest,
}

/// Limits of one durable queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueLimits {
    /// Most entries the queue holds.
    pub max_messages: u64,
    /// Most bytes (encoded message size, counted per queue) the queue holds.
    pub max_bytes: u64,
    /// How long an entry may wait in the queue, in milliseconds; `None` for no limit. A
    /// message's own expiry applies too, whichever is earlier.
    pub ttl_ms: Option<u64>,
    /// What a full queue does.
    pub overflow: Overflow,
}

impl QueueLimits {
    /// Whether an expired entry of the queue `name` that went out before stays until it is
    /// acknowledged: in an MQTT session's queue (`$session/…`) its onward delivery has begun,
    /// and MQTT sends an unacknowledged PUBLISH again whatever its Message Expiry
    /// [MQTT-3.3.2-5] [MQTT-4.4.0-1]. Not under a queue TTL, which the entry's expiry may be
    /// (an entry keeps the earlier of the two).
    pub fn keeps_started_entries(&self, name: &str) -> bool {
        self.ttl_ms.is_none() && name.starts_with(diglot_core::SESSION_QUEUE_PREFIX)
    }
}

impl Default for QueueLimits {
    fn default() -> QueueLimits {
        QueueLimits { max_messages: 100_000, max_bytes: 256 * 1024 * 1024, ttl_ms: None, overflow: Overflow::Reject }
    }
}

/// The `[store]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// The data directory. It holds one engine's files and nothing else.
    pub path: PathBuf,
    /// The engine.
    pub engine: EngineKind,
    /// The durability policy.
    pub durability: Durability,
    /// How long the group-commit writer collects writes before one sync, in milliseconds.
    pub group_commit_ms: u64,
    /// Limits of every queue.
    pub queue_defaults: QueueLimits,
    /// Deliveries after which a message goes to the dead-letter queue.
    pub max_redeliveries: u32,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            path: PathBuf::from("data"),
            engine: EngineKind::Fjall,
            durability: Durability::Group,
            group_commit_ms: 2,
            queue_defaults: QueueLimits::default(),
            max_redeliveries: 5,
        }
    }
}

impl StoreConfig {
    /// The default configuration with the data directory at `path`.
    pub fn at(path: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig { path: path.into(), ..StoreConfig::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_key() {
        let text = r#"
            path = "/var/lib/diglot"
            engine = "sled"
            durability = "every"
            group_commit_ms = 5
            max_redeliveries = 3
            [queue_defaults]
            max_messages = 10
            max_bytes = 2048
            ttl_ms = 60000
            overflow = "drop-oldest"
        "#;
        let c: StoreConfig = toml::from_str(text).expect("valid config");
        assert_eq!(c.engine, EngineKind::Sled);
        assert_eq!(c.durability, Durability::Every);
        assert_eq!(c.group_commit_ms, 5);
        assert_eq!(c.max_redeliveries, 3);
        assert_eq!(c.queue_defaults.overflow, Overflow::DropOldest);
        assert_eq!(c.queue_defaults.ttl_ms, Some(60_000));
        let none: StoreConfig = toml::from_str("durability = \"none\"").expect("valid");
        assert_eq!(none.durability, Durability::None);
        assert_eq!(none.engine, EngineKind::Fjall);
        assert_eq!(none.queue_defaults, QueueLimits::default());
    }

    #[test]
    fn refuses_unknown_keys_and_values() {
        assert!(toml::from_str::<StoreConfig>("engin = \"sled\"").is_err());
        assert!(toml::from_str::<StoreConfig>("engine = \"rocks\"").is_err());
        assert!(toml::from_str::<StoreConfig>("[queue_defaults]\nmax = 1").is_err());
    }
}
