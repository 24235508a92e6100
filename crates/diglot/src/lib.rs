//! The Diglot broker as a library: load a [`Config`], [`Broker::start`] it, shut it down.
//!
//! The `diglot` binary is a thin CLI over this; tests and programs that embed a broker use it
//! directly (every listener on port 0 with [`Config::ephemeral`]).

pub mod config;

use std::net::SocketAddr;

pub use config::{Config, ConfigError};
pub use diglot_net::{Bound, StartError};

/// Puts a reloaded `log.level` (a tracing filter) in force, or says why not, in the log; the
/// process's logging belongs to the program that embeds the broker (the `diglot` binary).
pub type LogLevelSetter = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

/// A running broker.
pub struct Broker {
    server: diglot_net::Server,
}

impl Broker {
    /// Binds every configured listener and starts serving. Must run inside a tokio runtime.
    pub async fn start(config: &Config) -> Result<Broker, StartError> {
        let mut spec = config.spec();
        if let Some(settings) = config.cluster.settings() {
            let cluster = diglot_cluster::Cluster::new(settings).map_err(|e| StartError::Cluster(e.to_string()))?;
            spec.cluster = Some(std::sync::Arc::new(cluster));
        }
        let server = diglot_net::Server::start(spec).await?;
        Ok(Broker { server })
    }

    /// Makes SIGHUP and `POST /api/v1/reload` read `path` again and apply what can change
    /// without a restart (users, ACLs, limits, TLS certificates, and through `log_level` the
    /// log filter `log.level`); a file with errors is refused, logged, and the running
    /// configuration stays.
    pub fn reload_from(&self, path: std::path::PathBuf, log_level: Option<LogLevelSetter>) {
        let handle = self.server.reload_handle();
        self.server.set_reloader(std::sync::Arc::new(move || {
            let config = Config::load(&path).map_err(|e| e.to_string())?;
            handle.apply(&config.spec())?;
            if let Some(set) = &log_level {
                set(&config.log.level);
            }
            Ok(())
        }));
    }

    /// The bound listeners with their real addresses.
    pub fn bound(&self) -> &[Bound] {
        self.server.bound()
    }

    /// The WebSocket listener's address.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.server.addr("ws")
    }

    /// The MQTT-over-TCP listener's address.
    pub fn mqtt_addr(&self) -> Option<SocketAddr> {
        self.server.addr("mqtt")
    }

    /// The STOMP-over-TCP listener's address.
    pub fn stomp_addr(&self) -> Option<SocketAddr> {
        self.server.addr("stomp")
    }

    /// The address of the first listener of `kind`: `ws`, `wss`, `mqtt`, `mqtts`, `stomp`,
    /// `stomps`.
    pub fn addr(&self, kind: &str) -> Option<SocketAddr> {
        self.server.addr(kind)
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.server.connections()
    }

    /// Stops accepting, closes every connection with its protocol's goodbye, and waits up to the
    /// shutdown grace. Returns `false` if connections were still open when the grace ran out.
    pub async fn shutdown(self) -> bool {
        self.server.shutdown().await
    }

    /// [`Broker::shutdown`], saying also whether the store had failed.
    pub async fn stop(self) -> diglot_net::Stopped {
        self.server.stop().await
    }
}
