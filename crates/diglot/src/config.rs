//! `broker.toml`: every setting, its default, and how it becomes the network [`Spec`].
//!
//! Unknown keys are errors, so a typo never silently falls back to a default. Errors are one
//! line that names the file, the line and column, and the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use diglot_core::Limits;
use diglot_net::origin::Origins;
use diglot_net::tls::TlsSettings;
use diglot_net::{Compression, ListenerKind, ListenerSpec, Proto, Spec, WsRoutes};
use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Logging.
    pub log: LogConfig,
    /// Network timeouts and the shutdown grace.
    pub server: ServerConfig,
    /// The listeners.
    pub listeners: Listeners,
    /// Per-connection limits.
    pub limits: LimitsConfig,
    /// MQTT settings.
    pub mqtt: MqttConfig,
    /// STOMP settings.
    pub stomp: StompConfig,
    /// The durable store: where, which engine, the durability policy, queue limits.
    pub store: diglot_store::StoreConfig,
    /// Users, JWT validation, topic ACLs and the failed-login limit.
    pub auth: diglot_auth::AuthConfig,
    /// The HTTP API, `/metrics`, `/readyz` and the dashboard.
    pub http: HttpConfig,
    /// Nodes that act as one broker through Redis Pub/Sub.
    pub cluster: ClusterConfig,
}

/// `[cluster]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host:port[/db]` or `rediss://…` (TLS); empty: a lone broker.
    pub redis_url: String,
    /// This node's name in the cluster; empty: the hostname and the first listener's port.
    pub node_id: String,
    /// Prefix of every Redis key and channel (`<prefix>:msg`, `<prefix>:nodes`, …), so that
    /// several clusters can share one Redis.
    pub channel_prefix: String,
    /// How often this node heartbeats into Redis (and checks its link), in milliseconds.
    pub heartbeat_ms: u64,
    /// A peer whose last heartbeat is older than this is taken as gone (a `kill -9`ed node),
    /// in milliseconds; greater than `heartbeat_ms`.
    pub node_timeout_ms: u64,
    /// How long a QoS ≥ 1 publish's acknowledgement waits for the nodes its named queue or
    /// share groups were handed to, in milliseconds, before this node serves them itself.
    pub handoff_timeout_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis_url: String::new(),
            node_id: String::new(),
            channel_prefix: "diglot".into(),
            heartbeat_ms: 1000,
            node_timeout_ms: 5000,
            handoff_timeout_ms: 2000,
        }
    }
}

impl ClusterConfig {
    /// The bridge's settings, or `None` when the cluster is off.
    pub fn settings(&self) -> Option<diglot_cluster::Settings> {
        (!self.redis_url.is_empty()).then(|| diglot_cluster::Settings {
            redis_url: self.redis_url.clone(),
            node_id: (!self.node_id.is_empty()).then(|| self.node_id.clone()),
            channel_prefix: self.channel_prefix.clone(),
            heartbeat: std::time::Duration::from_millis(self.heartbeat_ms),
            node_timeout: std::time::Duration::from_millis(self.node_timeout_ms),
            handoff_timeout: std::time::Duration::from_millis(self.handoff_timeout_ms),
        })
    }
}

/// `[http]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// The role (from `[auth]` users or a JWT's roles claim) that may use the admin endpoints.
    pub admin_role: String,
    /// Largest request body the API accepts, in bytes.
    pub max_body_bytes: usize,
    /// A directory whose files are served on other paths of the WebSocket and HTTP listeners
    /// (relative to the working directory; empty: off). `--serve-examples` sets it.
    pub static_dir: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        let d = diglot_net::HttpSettings::default();
        HttpConfig { admin_role: d.admin_role, max_body_bytes: d.max_body_bytes, static_dir: String::new() }
    }
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter such as `info` or `diglot_net=debug,info`. `RUST_LOG` overrides it, and
    /// `--log-level` overrides both.
    pub level: String,
    /// `text` (human-readable lines) or `json` (one JSON object per line).
    pub format: LogFormat,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info,fjall=warn,lsm_tree=warn,sled=warn".into(), format: LogFormat::Text }
    }
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Seconds a client has to finish the WebSocket handshake.
    pub handshake_timeout_secs: u64,
    /// Seconds one write to a client may stall before it counts as a slow consumer.
    pub write_timeout_secs: u64,
    /// Seconds shutdown waits for connections to close.
    pub shutdown_grace_secs: u64,
    /// Worker threads (0: one per CPU core).
    pub worker_threads: usize,
    /// Seconds between `$SYS/broker/...` statistics updates (0: none).
    pub sys_interval_secs: u64,
    /// Who may connect without credentials: `"loopback"` (only on listeners bound to a loopback
    /// address), `true` (everywhere; must be written explicitly), or `false` (nobody).
    pub allow_anonymous: AllowAnonymous,
}

/// `server.allow_anonymous`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AllowAnonymous {
    /// `true` or `false`.
    Flag(bool),
    /// `"loopback"`.
    Keyword(LoopbackOnly),
}

/// The word `"loopback"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoopbackOnly {
    /// Anonymous clients only on loopback listeners.
    Loopback,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            handshake_timeout_secs: 10,
            write_timeout_secs: 30,
            shutdown_grace_secs: 4,
            worker_threads: 0,
            sys_interval_secs: 10,
            allow_anonymous: AllowAnonymous::Keyword(LoopbackOnly::Loopback),
        }
    }
}

/// `[listeners]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Listeners {
    /// `[listeners.ws]`: MQTT and STOMP over WebSocket, plus `/healthz`.
    pub ws: WsListener,
    /// `[listeners.mqtt]`: MQTT over raw TCP.
    pub mqtt: MqttListener,
    /// `[listeners.stomp]`: STOMP over raw TCP.
    pub stomp: StompListener,
    /// `[listeners.wss]`: MQTT and STOMP over WebSocket over TLS (the `[listeners.ws]` paths,
    /// origins, compression and pings apply).
    pub wss: WssListener,
    /// `[listeners.mqtts]`: MQTT over TLS.
    pub mqtts: MqttsListener,
    /// `[listeners.stomps]`: STOMP over TLS.
    pub stomps: StompsListener,
    /// `[listeners.http]`: only the HTTP endpoints (`/metrics`, `/readyz`, `/healthz`,
    /// `/dashboard`, `/api/v1`), no WebSockets; off by default (the WebSocket listeners serve
    /// them too).
    pub http: HttpListener,
}

macro_rules! tls_listener {
    ($name:ident, $section:literal, $addr:literal) => {
        #[doc = concat!("`[listeners.", $section, "]`: off by default.")]
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            /// Whether to listen at all.
            pub enabled: bool,
            /// Address and port.
            pub addr: SocketAddr,
            /// PEM certificate chain, leaf first.
            pub cert_file: String,
            /// PEM private key.
            pub key_file: String,
            /// PEM CA certificates for client certificates (empty: no client certificates).
            pub client_ca_file: String,
            /// Refuse clients without a valid certificate (needs `client_ca_file`).
            pub require_client_cert: bool,
            /// A verified client certificate's subject CN is the username: the client is
            /// authenticated as that user without a password (needs `client_ca_file`).
            pub cert_cn_as_username: bool,
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    enabled: false,
                    addr: addr($addr),
                    cert_file: String::new(),
                    key_file: String::new(),
                    client_ca_file: String::new(),
                    require_client_cert: false,
                    cert_cn_as_username: false,
                }
            }
        }

        impl $name {
            fn settings(&self) -> Option<TlsSettings> {
                self.enabled.then(|| TlsSettings {
                    name: concat!("listeners.", $section).into(),
                    cert_file: self.cert_file.clone().into(),
                    key_file: self.key_file.clone().into(),
                    client_ca_file: Some(self.client_ca_file.clone()).filter(|f| !f.is_empty()).map(Into::into),
                    require_client_cert: self.require_client_cert,
                    cert_cn_as_username: self.cert_cn_as_username,
                })
            }

            fn check(&self) -> Result<(), String> {
                if self.enabled && (self.cert_file.is_empty() || self.key_file.is_empty()) {
                    return Err(
                        concat!("listeners.", $section, " is enabled but cert_file or key_file is empty").into()
                    );
                }
                Ok(())
            }
        }
    };
}

tls_listener!(WssListener, "wss", "127.0.0.1:8443");
tls_listener!(MqttsListener, "mqtts", "127.0.0.1:8883");
tls_listener!(StompsListener, "stomps", "127.0.0.1:61614");

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("built-in default address is valid")
}

/// The protocol a WebSocket path assumes for clients that offer no subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathDefault {
    /// The client must offer a subprotocol.
    None,
    /// MQTT.
    Mqtt,
    /// STOMP.
    Stomp,
}

/// `[listeners.ws]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WsListener {
    /// Whether to listen at all.
    pub enabled: bool,
    /// Address and port.
    pub addr: SocketAddr,
    /// WebSocket paths and the protocol each assumes when the client offers none.
    pub paths: BTreeMap<String, PathDefault>,
    /// A path that echoes every WebSocket message back, for conformance suites such as
    /// Autobahn; empty (the default) turns it off.
    pub echo_path: String,
    /// permessage-deflate (RFC 7692) when the client offers it (browsers do).
    pub compression: bool,
    /// zlib level 0–9 for outgoing compressed messages.
    pub compression_level: u8,
    /// Messages smaller than this many bytes are sent uncompressed.
    pub compression_threshold_bytes: usize,
    /// Keep the deflate window between messages: a better ratio, but about 200 KiB more memory
    /// per idle connection. Off: both sides reset after each message.
    pub compression_context_takeover: bool,
    /// Browser origins that may open a WebSocket: `scheme://host[:port]`, `scheme://host:*`
    /// (any port), or `"*"` (any origin; only when written explicitly). Others get HTTP 403.
    pub allowed_origins: Vec<String>,
    /// Whether a request without an `Origin` header (a non-browser client) is accepted.
    pub allow_missing_origin: bool,
    /// Seconds of silence after which the server pings a WebSocket client, and then waits as
    /// long for any answer before it closes the connection (0: no server pings).
    pub ping_interval_secs: u64,
}

impl Default for WsListener {
    fn default() -> Self {
        let paths = [("/ws", PathDefault::None), ("/mqtt", PathDefault::Mqtt), ("/stomp", PathDefault::Stomp)]
            .into_iter()
            .map(|(p, d)| (p.to_string(), d))
            .collect();
        WsListener {
            enabled: true,
            addr: addr("127.0.0.1:8080"),
            paths,
            echo_path: String::new(),
            compression: true,
            compression_level: 1,
            compression_threshold_bytes: 128,
            compression_context_takeover: false,
            allowed_origins: [
                "http://localhost:*",
                "http://127.0.0.1:*",
                "http://[::1]:*",
                "https://localhost:*",
                "https://127.0.0.1:*",
                "https://[::1]:*",
            ]
            .map(String::from)
            .to_vec(),
            allow_missing_origin: true,
            ping_interval_secs: 30,
        }
    }
}

macro_rules! tcp_listener {
    ($name:ident, $section:literal, $addr:literal) => {
        #[doc = concat!("`[listeners.", $section, "]`")]
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            /// Whether to listen at all.
            pub enabled: bool,
            /// Address and port.
            pub addr: SocketAddr,
        }

        impl Default for $name {
            fn default() -> Self {
                $name { enabled: true, addr: addr($addr) }
            }
        }
    };
}

tcp_listener!(MqttListener, "mqtt", "127.0.0.1:1883");

/// `[listeners.http]`: off by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpListener {
    /// Whether to listen at all.
    pub enabled: bool,
    /// Address and port.
    pub addr: SocketAddr,
}

impl Default for HttpListener {
    fn default() -> Self {
        HttpListener { enabled: false, addr: addr("127.0.0.1:9090") }
    }
}
tcp_listener!(StompListener, "stomp", "127.0.0.1:61613");

/// `[limits]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most connections open at once, over all listeners; more are refused (HTTP 503 on the
    /// WebSocket port).
    pub max_connections: usize,
    /// Most connections open at once from one IP address.
    pub max_connections_per_ip: usize,
    /// Largest HTTP request head (request line and headers) on the WebSocket and HTTP
    /// listeners, in bytes; over it: 431. At least 8192.
    pub max_http_header_bytes: usize,
    /// Largest WebSocket frame payload a client may send, in bytes; over it: close 1009.
    pub max_ws_frame_bytes: usize,
    /// Largest WebSocket message a client may send, in bytes, after reassembling fragments
    /// and after inflating permessage-deflate; over it: close 1009.
    pub max_ws_message_bytes: usize,
    /// Largest inbound MQTT packet or STOMP frame, in bytes.
    pub max_frame_bytes: usize,
    /// Most headers in one STOMP frame.
    pub max_headers: usize,
    /// Largest STOMP header line, in bytes.
    pub max_header_bytes: usize,
    /// Most subscriptions per connection.
    pub max_subscriptions: usize,
    /// Most deliveries waiting in one connection's outbox.
    pub outbox_max_messages: usize,
    /// Most bytes waiting in one connection's outbox.
    pub outbox_max_bytes: usize,
    /// Most unacknowledged QoS ≥ 1 deliveries in flight to one client.
    pub max_inflight: u16,
    /// Longest client id, in bytes.
    pub max_client_id_bytes: usize,
    /// Most publishes per second per connection (0: no limit); over it the broker stops
    /// reading from that connection until the rate is back.
    pub max_publish_rate: u32,
    /// Most bytes per second per connection (0: no limit), enforced the same way.
    pub max_bytes_rate: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let l = Limits::default();
        LimitsConfig {
            max_connections: 100_000,
            max_connections_per_ip: 1_000,
            max_http_header_bytes: 16 * 1024,
            max_ws_frame_bytes: 2 * 1024 * 1024,
            max_ws_message_bytes: 2 * 1024 * 1024,
            max_frame_bytes: l.max_frame_bytes,
            max_headers: l.max_headers,
            max_header_bytes: l.max_header_bytes,
            max_subscriptions: l.max_subscriptions,
            outbox_max_messages: l.outbox_max_messages,
            outbox_max_bytes: l.outbox_max_bytes,
            max_inflight: l.max_inflight,
            max_client_id_bytes: l.max_client_id_bytes,
            max_publish_rate: l.max_publish_rate,
            max_bytes_rate: l.max_bytes_rate,
        }
    }
}

/// `[mqtt]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// Seconds a client has to send CONNECT after the connection opens.
    pub connect_timeout_secs: u64,
    /// Highest keep-alive a client may ask for, in seconds (0: no cap). MQTT 5 clients are
    /// told the cap as Server Keep Alive.
    pub max_keep_alive_secs: u16,
    /// MQTT 5 Topic Alias Maximum: how many topic aliases a client may set up towards the
    /// broker, and at most how many the broker sets up towards a client (0: none).
    pub topic_alias_max: u16,
}

impl Default for MqttConfig {
    fn default() -> Self {
        let d = diglot_mqtt::Config::default();
        MqttConfig { connect_timeout_secs: 10, max_keep_alive_secs: 0, topic_alias_max: d.topic_alias_max }
    }
}

/// `[stomp]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StompConfig {
    /// Seconds a client has to send CONNECT after the connection opens.
    pub connect_timeout_secs: u64,
    /// The server's heart-beat offer: how often it can send (ms, 0 = never).
    pub heartbeat_send_ms: u64,
    /// The server's heart-beat offer: how often it wants to receive (ms, 0 = never).
    pub heartbeat_recv_ms: u64,
    /// How many receive intervals of silence are tolerated before a client is closed.
    pub heartbeat_grace: f64,
    /// How `/topic/` names separate their levels: `"/"` (the name is the MQTT topic) or `"."`
    /// (RabbitMQ-style, `*` and `#` as wildcards, escaped reversibly). Not changed by a reload.
    pub topic_separator: String,
}

impl Default for StompConfig {
    fn default() -> Self {
        let d = diglot_stomp::Config::default();
        StompConfig {
            connect_timeout_secs: d.connect_timeout.as_secs(),
            heartbeat_send_ms: d.heartbeat_send_ms,
            heartbeat_recv_ms: d.heartbeat_recv_ms,
            heartbeat_grace: d.heartbeat_grace,
            topic_separator: d.topic_separator.as_str().to_owned(),
        }
    }
}

/// A configuration error, as one human line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Config {
    /// Parses TOML text; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|span| {
                    let before = &text[..span.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
                    format!(":{line}:{col}")
                })
                .unwrap_or_default();
            ConfigError(format!("{origin}{at}: {}", e.message().trim().replace('\n', " ")))
        })?;
        config.validate().map_err(|e| ConfigError(format!("{origin}: {e}")))?;
        Ok(config)
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
        Config::parse(&text, &path.display().to_string())
    }

    /// The effective configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    /// What `--print-config` shows: the configuration with its secrets replaced by
    /// [`Config::REDACTED`] (the JWT HS256 secret, users' password hashes, the password in
    /// `cluster.redis_url`), so that the output can go into a ticket or a log. It does not load
    /// back where a secret was set.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        if let Some(secret) = c.auth.jwt.as_mut().and_then(|j| j.hs256_secret.as_mut()) {
            *secret = Self::REDACTED.into();
        }
        for user in &mut c.auth.users {
            user.password_hash = Self::REDACTED.into();
        }
        c.cluster.redis_url = redact_url_password(&c.cluster.redis_url);
        c
    }

    /// What [`Config::redacted`] puts in place of a secret.
    pub const REDACTED: &str = "REDACTED";

    fn validate(&self) -> Result<(), String> {
        let l = &self.limits;
        let positive = [
            ("limits.max_connections", l.max_connections),
            ("limits.max_connections_per_ip", l.max_connections_per_ip),
            ("limits.max_frame_bytes", l.max_frame_bytes),
            ("limits.max_headers", l.max_headers),
            ("limits.max_header_bytes", l.max_header_bytes),
            ("limits.max_subscriptions", l.max_subscriptions),
            ("limits.outbox_max_messages", l.outbox_max_messages),
            ("limits.outbox_max_bytes", l.outbox_max_bytes),
            ("limits.max_inflight", l.max_inflight as usize),
            ("limits.max_client_id_bytes", l.max_client_id_bytes),
            ("limits.max_ws_frame_bytes", l.max_ws_frame_bytes),
            ("limits.max_ws_message_bytes", l.max_ws_message_bytes),
            ("server.handshake_timeout_secs", self.server.handshake_timeout_secs as usize),
            ("server.write_timeout_secs", self.server.write_timeout_secs as usize),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(format!("{key} must be greater than 0"));
            }
        }
        if l.max_http_header_bytes < 8192 {
            // hyper reads a request head 8 KiB at a time.
            return Err("limits.max_http_header_bytes must be at least 8192".into());
        }
        check_log_level(&self.log.level).map_err(|e| format!("log.level: {e}"))?;
        if l.max_frame_bytes > 268_435_455 {
            return Err("limits.max_frame_bytes must be at most 268435455 (MQTT's largest packet)".into());
        }
        if self.http.max_body_bytes == 0 {
            return Err("http.max_body_bytes must be greater than 0".into());
        }
        if !self.http.static_dir.is_empty() && !Path::new(&self.http.static_dir).is_dir() {
            return Err(format!("http.static_dir {:?} is not a directory", self.http.static_dir));
        }
        if self.store.path.as_os_str().is_empty() {
            return Err("store.path must name a directory".into());
        }
        if self.store.group_commit_ms > 1000 {
            return Err("store.group_commit_ms must be at most 1000".into());
        }
        if self.store.queue_defaults.max_messages == 0 || self.store.queue_defaults.max_bytes == 0 {
            return Err("store.queue_defaults.max_messages and max_bytes must be greater than 0".into());
        }
        // `[auth]` is compiled here so that a bad hash, key file or ACL pattern is a start-up
        // error that names it.
        diglot_auth::Authenticator::new(&self.auth).map_err(|e| e.to_string())?;
        diglot_auth::Acl::from_config(&self.auth).map_err(|e| e.to_string())?;
        // Secure by default: without an authentication method every client is anonymous, so a
        // listener reachable from other machines needs an explicit `allow_anonymous = true`
        // (Mosquitto 2.0 made the same choice). With one, anonymous clients are simply refused
        // on non-loopback listeners.
        let methods = self.auth.has_methods();
        let ls = &self.listeners;
        let public = [
            (ls.ws.enabled, ls.ws.addr, "listeners.ws"),
            (ls.mqtt.enabled, ls.mqtt.addr, "listeners.mqtt"),
            (ls.stomp.enabled, ls.stomp.addr, "listeners.stomp"),
            (ls.wss.enabled, ls.wss.addr, "listeners.wss"),
            (ls.mqtts.enabled, ls.mqtts.addr, "listeners.mqtts"),
            (ls.stomps.enabled, ls.stomps.addr, "listeners.stomps"),
            (ls.http.enabled, ls.http.addr, "listeners.http"),
        ]
        .into_iter()
        .find(|(on, addr, _)| *on && !addr.ip().is_loopback());
        match (self.server.allow_anonymous, public) {
            (AllowAnonymous::Flag(false), _) if !methods => {
                return Err("server.allow_anonymous = false, but no authentication method ([auth] users or [auth.jwt]) is configured, so no client could connect".into())
            }
            (AllowAnonymous::Keyword(_), Some((_, addr, key))) if !methods => {
                return Err(format!(
                    "{key}.addr = {addr} is not a loopback address and no authentication is configured; \
                     configure [auth] users or [auth.jwt], or set server.allow_anonymous = true to accept anonymous clients there"
                ))
            }
            _ => {}
        }
        for (cn, ca, key) in [
            (ls.wss.cert_cn_as_username, &ls.wss.client_ca_file, "listeners.wss"),
            (ls.mqtts.cert_cn_as_username, &ls.mqtts.client_ca_file, "listeners.mqtts"),
            (ls.stomps.cert_cn_as_username, &ls.stomps.client_ca_file, "listeners.stomps"),
        ] {
            if cn && ca.is_empty() {
                return Err(format!("{key}.cert_cn_as_username needs {key}.client_ca_file"));
            }
        }
        self.listeners.wss.check()?;
        self.listeners.mqtts.check()?;
        self.listeners.stomps.check()?;
        if self.listeners.ws.compression_level > 9 {
            return Err("listeners.ws.compression_level must be between 0 and 9".into());
        }
        if !(self.stomp.heartbeat_grace >= 1.0 && self.stomp.heartbeat_grace <= 100.0) {
            return Err("stomp.heartbeat_grace must be between 1.0 and 100.0".into());
        }
        if diglot_stomp::Separator::parse(&self.stomp.topic_separator).is_none() {
            return Err(format!(
                "stomp.topic_separator must be \"/\" (the default: /topic/a/b is MQTT a/b) or \".\" (RabbitMQ-style: /topic/a.b is MQTT a/b), not {:?}",
                self.stomp.topic_separator
            ));
        }
        for path in self.listeners.ws.paths.keys() {
            if !path.starts_with('/') {
                return Err(format!("listeners.ws.paths: path {path:?} must start with '/'"));
            }
            if path == "/healthz" {
                return Err("listeners.ws.paths: /healthz is reserved for the health check".into());
            }
        }
        let echo = &self.listeners.ws.echo_path;
        if !echo.is_empty()
            && (!echo.starts_with('/') || self.listeners.ws.paths.contains_key(echo) || echo == "/healthz")
        {
            return Err(format!("listeners.ws.echo_path {echo:?} must start with '/' and differ from the other paths"));
        }
        if self.listeners.ws.enabled && self.listeners.ws.paths.is_empty() {
            return Err("listeners.ws.paths must name at least one path".into());
        }
        if !self.cluster.redis_url.is_empty() {
            diglot_cluster::Cluster::check_url(&self.cluster.redis_url).map_err(|e| e.to_string())?;
            if self.cluster.channel_prefix.is_empty() {
                return Err("cluster.channel_prefix must not be empty".into());
            }
            if self.cluster.heartbeat_ms == 0 || self.cluster.node_timeout_ms <= self.cluster.heartbeat_ms {
                return Err(format!(
                    "cluster.node_timeout_ms ({}) must be greater than cluster.heartbeat_ms ({}), which must not be 0",
                    self.cluster.node_timeout_ms, self.cluster.heartbeat_ms
                ));
            }
            if !(1..=60_000).contains(&self.cluster.handoff_timeout_ms) {
                return Err(format!(
                    "cluster.handoff_timeout_ms ({}) must be between 1 and 60000",
                    self.cluster.handoff_timeout_ms
                ));
            }
        }
        Ok(())
    }

    /// The network side's start specification.
    pub fn spec(&self) -> Spec {
        let mut listeners = Vec::new();
        let ls = &self.listeners;
        let ws_routes = {
            let paths = ls
                .ws
                .paths
                .iter()
                .map(|(p, d)| {
                    let d = match d {
                        PathDefault::None => None,
                        PathDefault::Mqtt => Some(Proto::Mqtt),
                        PathDefault::Stomp => Some(Proto::Stomp),
                    };
                    (p.clone(), d)
                })
                .collect();
            let echo_path = Some(ls.ws.echo_path.clone()).filter(|p| !p.is_empty());
            WsRoutes {
                paths,
                echo_path,
                origins: Origins::new(ls.ws.allowed_origins.iter().cloned(), ls.ws.allow_missing_origin),
                ping_interval: (ls.ws.ping_interval_secs > 0).then(|| Duration::from_secs(ls.ws.ping_interval_secs)),
                compression: ls.ws.compression.then_some(Compression {
                    level: ls.ws.compression_level,
                    threshold: ls.ws.compression_threshold_bytes,
                    context_takeover: ls.ws.compression_context_takeover,
                }),
            }
        };
        let http_routes = WsRoutes {
            paths: Default::default(),
            echo_path: None,
            compression: None,
            origins: ws_routes.origins.clone(),
            ping_interval: None,
        };
        let plain = [
            (ls.ws.enabled, "listeners.ws", ls.ws.addr, ListenerKind::Ws(ws_routes.clone()), None),
            (ls.mqtt.enabled, "listeners.mqtt", ls.mqtt.addr, ListenerKind::Mqtt, None),
            (ls.stomp.enabled, "listeners.stomp", ls.stomp.addr, ListenerKind::Stomp, None),
            (ls.wss.enabled, "listeners.wss", ls.wss.addr, ListenerKind::Ws(ws_routes), ls.wss.settings()),
            (ls.mqtts.enabled, "listeners.mqtts", ls.mqtts.addr, ListenerKind::Mqtt, ls.mqtts.settings()),
            (ls.stomps.enabled, "listeners.stomps", ls.stomps.addr, ListenerKind::Stomp, ls.stomps.settings()),
            (ls.http.enabled, "listeners.http", ls.http.addr, ListenerKind::Ws(http_routes), None),
        ];
        for (enabled, name, addr, kind, tls) in plain {
            if enabled {
                let allow_anonymous = match self.server.allow_anonymous {
                    AllowAnonymous::Flag(allow) => allow,
                    AllowAnonymous::Keyword(LoopbackOnly::Loopback) => addr.ip().is_loopback(),
                };
                listeners.push(ListenerSpec { name: name.into(), addr, kind, tls, allow_anonymous });
            }
        }
        let l = &self.limits;
        Spec {
            listeners,
            limits: Limits {
                max_frame_bytes: l.max_frame_bytes,
                max_headers: l.max_headers,
                max_header_bytes: l.max_header_bytes,
                max_subscriptions: l.max_subscriptions,
                outbox_max_messages: l.outbox_max_messages,
                outbox_max_bytes: l.outbox_max_bytes,
                max_inflight: l.max_inflight,
                max_client_id_bytes: l.max_client_id_bytes,
                max_publish_rate: l.max_publish_rate,
                max_bytes_rate: l.max_bytes_rate,
                breaches: Default::default(),
            },
            max_connections: l.max_connections,
            max_connections_per_ip: l.max_connections_per_ip,
            // hyper needs room for at least one read of 8 KiB.
            max_http_header_bytes: l.max_http_header_bytes.max(8192),
            max_ws_frame_bytes: l.max_ws_frame_bytes.max(1),
            max_ws_message_bytes: l.max_ws_message_bytes.max(1),
            handshake_timeout: Duration::from_secs(self.server.handshake_timeout_secs.max(1)),
            write_timeout: Duration::from_secs(self.server.write_timeout_secs.max(1)),
            shutdown_grace: Duration::from_secs(self.server.shutdown_grace_secs),
            mqtt: diglot_mqtt::Config {
                connect_timeout: Duration::from_secs(self.mqtt.connect_timeout_secs.max(1)),
                max_keep_alive_secs: self.mqtt.max_keep_alive_secs,
                topic_alias_max: self.mqtt.topic_alias_max,
            },
            store: self.store.clone(),
            auth: self.auth.clone(),
            http: diglot_net::HttpSettings {
                admin_role: self.http.admin_role.clone(),
                max_body_bytes: self.http.max_body_bytes,
                static_dir: (!self.http.static_dir.is_empty()).then(|| self.http.static_dir.clone().into()),
            },
            sys_interval: Duration::from_secs(self.server.sys_interval_secs),
            stomp: diglot_stomp::Config {
                connect_timeout: Duration::from_secs(self.stomp.connect_timeout_secs.max(1)),
                heartbeat_send_ms: self.stomp.heartbeat_send_ms,
                heartbeat_recv_ms: self.stomp.heartbeat_recv_ms,
                heartbeat_grace: self.stomp.heartbeat_grace,
                // Checked by `validate`.
                topic_separator: diglot_stomp::Separator::parse(&self.stomp.topic_separator).unwrap_or_default(),
                ..diglot_stomp::Config::default()
            },
            // Set by `Broker::start`: the bridge holds connections and tasks.
            cluster: None,
        }
    }

    /// A configuration for tests and embedding: every listener on 127.0.0.1 port 0, and the
    /// store in a new directory under the system temp directory (the caller removes it).
    pub fn ephemeral() -> Config {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let mut c = Config::default();
        c.store.path = std::env::temp_dir().join(format!("diglot-{}-{n}-{nanos}", std::process::id()));
        c.listeners.ws.addr = addr("127.0.0.1:0");
        c.listeners.mqtt.addr = addr("127.0.0.1:0");
        c.listeners.stomp.addr = addr("127.0.0.1:0");
        c.listeners.wss.addr = addr("127.0.0.1:0");
        c.listeners.mqtts.addr = addr("127.0.0.1:0");
        c.listeners.stomps.addr = addr("127.0.0.1:0");
        c.listeners.http.addr = addr("127.0.0.1:0");
        c
    }
}

/// Refuses a log filter that is a single word but no level (`warning`, `inof`): tracing would
/// take it for a target name and log nothing at all. Directive lists (`info,diglot_net=debug`)
/// are left to the filter's own parser.
pub fn check_log_level(filter: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let word = filter.trim();
    if word.contains(['=', ',', '[', ':']) || LEVELS.iter().any(|l| l.eq_ignore_ascii_case(word)) {
        return Ok(());
    }
    Err(format!("{word:?} is not a level: use off, error, warn, info, debug, trace, or directives such as \"info,diglot_net=debug\""))
}

/// `url` with the password of its user info (`scheme://user:password@host…`) replaced by
/// [`Config::REDACTED`]; as it is without one.
fn redact_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else { return url.to_string() };
    let authority_end = url[scheme_end..].find(['/', '?', '#']).map_or(url.len(), |i| scheme_end + i);
    let authority = &url[scheme_end..authority_end];
    let Some(at) = authority.rfind('@') else { return url.to_string() };
    let Some(colon) = authority[..at].find(':') else { return url.to_string() };
    let password_start = scheme_end + colon + 1;
    format!("{}{}{}", &url[..password_start], Config::REDACTED, &url[scheme_end + at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_passwords_are_redacted() {
        for (url, shown) in [
            ("redis://:s3cret@10.0.0.5:6379/0", "redis://:REDACTED@10.0.0.5:6379/0"),
            ("rediss://user:p@ss:w@host:6380", "rediss://user:REDACTED@host:6380"),
            ("redis://user@host/1?x=a:b@c", "redis://user@host/1?x=a:b@c"),
            ("redis://host:6379", "redis://host:6379"),
            ("", ""),
        ] {
            assert_eq!(redact_url_password(url), shown, "{url}");
        }
    }

    #[test]
    fn defaults_round_trip_through_toml() {
        let c = Config::default();
        assert_eq!(Config::parse(&c.to_toml(), "x").unwrap(), c);
    }

    /// Every key of the configuration, as `section.key` (tables of arbitrary names, such as
    /// `listeners.ws.paths`, and the fields of array entries, as `auth.acl.publish`), taken from
    /// a configuration with every optional key set.
    fn every_key() -> std::collections::BTreeSet<String> {
        fn walk(prefix: &str, v: &toml::Value, out: &mut std::collections::BTreeSet<String>) {
            match v {
                toml::Value::Table(t) if prefix != "listeners.ws.paths" => {
                    for (k, v) in t {
                        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                        walk(&key, v, out);
                    }
                }
                toml::Value::Array(a) if a.first().is_some_and(|e| e.is_table()) => {
                    out.insert(prefix.to_string());
                    for e in a {
                        walk(prefix, e, out);
                    }
                }
                _ => {
                    out.insert(prefix.to_string());
                }
            }
        }
        let mut c = Config::default();
        let s = |v: &str| Some(v.to_string());
        c.store.queue_defaults.ttl_ms = Some(1);
        c.auth.default_acl = Some(diglot_auth::DefaultAcl::Deny);
        c.auth.jwt = Some(diglot_auth::JwtConfig {
            hs256_secret: s("x"),
            rs256_public_key_file: Some("x".into()),
            issuer: s("x"),
            audience: s("x"),
            cookie_name: s("x"),
            ..diglot_auth::JwtConfig::default()
        });
        c.auth.users = vec![diglot_auth::UserConfig { username: "u".into(), password_hash: "h".into(), roles: vec![] }];
        c.auth.acl = vec![diglot_auth::AclRuleConfig {
            user: s("u"),
            role: s("r"),
            everyone: false,
            publish: vec![],
            subscribe: vec![],
        }];
        let value: toml::Value = toml::from_str(&c.to_toml()).expect("the rendered config parses");
        let mut out = std::collections::BTreeSet::new();
        walk("", &value, &mut out);
        out
    }

    /// docs/configuration.md has a row for every key, and no row for a key that does not exist
    /// (the fields of `auth.users` and `auth.acl` entries are described in their own rows).
    #[test]
    fn docs_list_every_key() {
        let doc = include_str!("../../../docs/configuration.md");
        let table = doc.split("## Every key").nth(1).expect("docs/configuration.md has an \"Every key\" section");
        let documented: std::collections::BTreeSet<String> =
            table.lines().filter_map(|l| l.strip_prefix("| `")?.split('`').next().map(str::to_string)).collect();
        let keys = every_key();
        let entry_fields = |k: &String| k.starts_with("auth.users.") || k.starts_with("auth.acl.");
        let missing: Vec<_> = keys.iter().filter(|k| !entry_fields(k) && !documented.contains(*k)).collect();
        assert!(missing.is_empty(), "keys missing from docs/configuration.md: {missing:?}");
        let unknown: Vec<_> = documented.iter().filter(|k| !keys.contains(*k)).collect();
        assert!(unknown.is_empty(), "docs/configuration.md documents keys that do not exist: {unknown:?}");
    }

    #[test]
    fn the_shipped_broker_toml_is_the_default() {
        let text = include_str!("../../../broker.toml");
        assert_eq!(Config::parse(text, "broker.toml").unwrap(), Config::default());
    }

    #[test]
    fn the_cluster_node_timeout_must_exceed_the_heartbeat() {
        let cluster = |extra: &str| format!("[cluster]\nredis_url = \"redis://127.0.0.1:6379/\"\n{extra}");
        let ok = Config::parse(&cluster("heartbeat_ms = 200\nnode_timeout_ms = 1500\n"), "b.toml").unwrap();
        let settings = ok.cluster.settings().unwrap();
        assert_eq!((settings.heartbeat.as_millis(), settings.node_timeout.as_millis()), (200, 1500));
        for bad in ["heartbeat_ms = 1000\nnode_timeout_ms = 1000\n", "heartbeat_ms = 0\n"] {
            let e = Config::parse(&cluster(bad), "b.toml").unwrap_err().to_string();
            assert!(e.contains("cluster.node_timeout_ms") && e.contains("cluster.heartbeat_ms"), "{e}");
        }
        assert_eq!(settings.handoff_timeout.as_millis(), 2000);
        let short = Config::parse(&cluster("handoff_timeout_ms = 300\n"), "b.toml").unwrap();
        assert_eq!(short.cluster.settings().unwrap().handoff_timeout.as_millis(), 300);
        for bad in ["handoff_timeout_ms = 0\n", "handoff_timeout_ms = 60001\n"] {
            let e = Config::parse(&cluster(bad), "b.toml").unwrap_err().to_string();
            assert!(e.contains("cluster.handoff_timeout_ms"), "{e}");
        }
    }

    #[test]
    fn the_topic_separator_is_slash_or_dot() {
        let spec = |text: &str| Config::parse(text, "b.toml").map(|c| c.spec().stomp.topic_separator);
        assert_eq!(spec("").unwrap(), diglot_stomp::Separator::Slash);
        assert_eq!(spec("[stomp]\ntopic_separator = \"/\"\n").unwrap(), diglot_stomp::Separator::Slash);
        assert_eq!(spec("[stomp]\ntopic_separator = \".\"\n").unwrap(), diglot_stomp::Separator::Dot);
        for bad in ["", "//", ":", " .", "dot"] {
            let e = spec(&format!("[stomp]\ntopic_separator = {bad:?}\n")).unwrap_err().to_string();
            assert!(e.contains("stomp.topic_separator") && e.contains(&format!("{bad:?}")), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn errors_are_one_line_and_name_the_key() {
        let e = Config::parse("[limits]\nmax_frame_byte = 3\n", "b.toml").unwrap_err().to_string();
        assert!(e.starts_with("b.toml:2:1:"), "{e}");
        assert!(e.contains("max_frame_byte"), "{e}");
        assert!(!e.contains('\n'));
        let e = Config::parse("[listeners.mqtt]\naddr = \"nope\"\n", "b.toml").unwrap_err().to_string();
        assert!(e.contains("b.toml:2:"), "{e}");
        let e = Config::parse("[limits]\nmax_inflight = 0\n", "b.toml").unwrap_err().to_string();
        assert!(e.contains("limits.max_inflight"), "{e}");
    }

    /// Values the broker cannot use are errors, not silently raised or taken for something
    /// else: an HTTP head limit under hyper's 8 KiB read, a zero timeout or WebSocket limit,
    /// and a log level that is no level (tracing would take `warning` for a target and log
    /// nothing).
    #[test]
    fn impossible_limits_and_unknown_log_levels_are_refused() {
        let refused = |text: &str, key: &str| {
            let e = Config::parse(text, "b.toml").unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        };
        refused("[limits]\nmax_http_header_bytes = 100\n", "limits.max_http_header_bytes");
        refused("[limits]\nmax_ws_frame_bytes = 0\n", "limits.max_ws_frame_bytes");
        refused("[server]\nhandshake_timeout_secs = 0\n", "server.handshake_timeout_secs");
        refused("[log]\nlevel = \"warning\"\n", "log.level");
        refused("[log]\nlevel = \"inof\"\n", "log.level");
        for ok in ["info", "WARN", " debug ", "off", "info,fjall=warn", "diglot_net=debug"] {
            assert!(Config::parse(&format!("[log]\nlevel = {ok:?}\n"), "b.toml").is_ok(), "{ok}");
        }
        assert!(Config::parse("[limits]\nmax_http_header_bytes = 8192\n", "b.toml").is_ok());
    }
}
