//! Broker-wide client ids: who holds which id, so that a new connection can take a session
//! over and the old one is closed [MQTT-3.1.4-2].

use std::sync::Arc;

use dashmap::DashMap;
use diglot_core::ConnId;
use tokio::sync::Notify;

/// A handle that wakes a connection's driver to close it.
pub type Kick = Arc<Notify>;

/// Which connection holds each client id.
#[derive(Default)]
pub struct Registry {
    holders: DashMap<String, (ConnId, Kick)>,
}

impl Registry {
    /// Records `conn` as the holder of `client_id` and kicks the previous holder, if any.
    pub fn claim(&self, client_id: &str, conn: ConnId, kick: &Kick) {
        if let Some((old, old_kick)) = self.holders.insert(client_id.to_string(), (conn, kick.clone())) {
            if old != conn {
                old_kick.notify_one();
            }
        }
    }

    /// Forgets `client_id` if `conn` still holds it.
    pub fn release(&self, client_id: &str, conn: ConnId) {
        self.holders.remove_if(client_id, |_, (holder, _)| *holder == conn);
    }
}
