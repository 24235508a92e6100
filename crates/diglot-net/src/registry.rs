//! Broker-wide client ids: who holds which id, so that a new connection can take a session
//! over and the old one is closed [MQTT-3.1.4-2].

use std::sync::Arc;

use dashmap::DashMap;
use diglot_core::ConnId;
use tokio::sync::{watch, Notify};

/// A handle that wakes a connection's driver to close it.
pub type Kick = Arc<Notify>;

/// Becomes `true` once a connection has released everything it held.
pub type Finished = watch::Receiver<bool>;

/// Which connection holds each client id.
#[derive(Default)]
pub struct Registry {
    holders: DashMap<String, (ConnId, Kick, Finished)>,
}

impl Registry {
    /// Records `conn` as the holder of `client_id` and kicks the previous holder, if any.
    /// Returns the previous holder's [`Finished`] signal, so that the new holder can wait for
    /// the old one to hand its session back (unacknowledged messages return to the queue)
    /// before it takes the session over, and redelivery keeps its order.
    pub fn claim(&self, client_id: &str, conn: ConnId, kick: &Kick, finished: &Finished) -> Option<Finished> {
        let old = self.holders.insert(client_id.to_string(), (conn, kick.clone(), finished.clone()))?;
        if old.0 == conn {
            return None;
        }
        old.1.notify_one();
        Some(old.2)
    }

    /// Forgets `client_id` if `conn` still holds it.
    pub fn release(&self, client_id: &str, conn: ConnId) {
        self.holders.remove_if(client_id, |_, (holder, _, _)| *holder == conn);
    }
}
