//! Broker-wide client ids: who holds which id, so that a new connection can take a session
//! over and the old one is closed [MQTT-3.1.4-2].

use std::sync::Arc;

use dashmap::DashMap;
use diglot_core::outbox::signal::TAKEOVER;
use diglot_core::{ConnId, Outbox};
use tokio_util::sync::CancellationToken;

/// A handle that wakes a connection's driver to close it: its outbox, signalled with
/// [`TAKEOVER`].
pub type Kick = Arc<Outbox>;

/// Cancelled once a connection has released everything it held. (A token, not a `watch`
/// channel: every connection has one, and a watch channel costs about 300 bytes more.)
pub type Finished = CancellationToken;

/// Which connection holds each client id.
#[derive(Default)]
pub struct Registry {
    holders: DashMap<String, (ConnId, Kick, Finished)>,
    /// Delayed work of client ids that left (a delayed will, a session expiry), cancelled
    /// when the client id is claimed again.
    returns: DashMap<String, CancellationToken>,
}

impl Registry {
    /// Records `conn` as the holder of `client_id` and kicks the previous holder, if any.
    /// Returns the previous holder's [`Finished`] signal, so that the new holder can wait for
    /// the old one to hand its session back (unacknowledged messages return to the queue)
    /// before it takes the session over, and redelivery keeps its order.
    pub fn claim(&self, client_id: &str, conn: ConnId, kick: &Kick, finished: &Finished) -> Option<(ConnId, Finished)> {
        if let Some((_, back)) = self.returns.remove(client_id) {
            back.cancel();
        }
        let old = self.holders.insert(client_id.to_string(), (conn, kick.clone(), finished.clone()))?;
        if old.0 == conn {
            return None;
        }
        old.1.signal(TAKEOVER);
        Some((old.0, old.2))
    }

    /// A token cancelled when `client_id` is claimed again.
    pub fn on_return(&self, client_id: &str) -> CancellationToken {
        self.returns.entry(client_id.to_string()).or_default().clone()
    }

    /// Whether a connection other than `conn` holds `client_id` now.
    pub fn held_by_other(&self, client_id: &str, conn: ConnId) -> bool {
        self.holders.get(client_id).is_some_and(|h| h.0 != conn)
    }

    /// Closes the connection that holds `client_id`, if any (another node took it over).
    pub fn kick(&self, client_id: &str) {
        if let Some(h) = self.holders.get(client_id) {
            h.1.signal(TAKEOVER);
        }
    }

    /// Whether some connection holds `client_id`.
    pub fn is_held(&self, client_id: &str) -> bool {
        self.holders.contains_key(client_id)
    }

    /// Every client id held now.
    pub fn held(&self) -> Vec<String> {
        self.holders.iter().map(|e| e.key().clone()).collect()
    }

    /// Forgets `client_id` if `conn` still holds it.
    pub fn release(&self, client_id: &str, conn: ConnId) {
        self.holders.remove_if(client_id, |_, (holder, _, _)| *holder == conn);
    }
}
