//! The outbound QoS 1 window: packet identifiers of PUBLISHes sent and not yet acknowledged.
//!
//! Identifiers are taken from 1..=65535 in turn, skipping those still in use
//! [MQTT-2.3.1-4]; the window is the smaller of `limits.max_inflight` and the client's MQTT 5
//! Receive Maximum [MQTT-3.3.4-9]. The messages themselves are not kept: redelivery after a
//! reconnect arrives with the durable store.
//!
//! This module does not encode packets.

use std::collections::HashSet;
use std::num::NonZeroU16;

/// Packet identifiers of unacknowledged outbound PUBLISHes.
#[derive(Debug)]
pub(crate) struct Inflight {
    ids: HashSet<u16>,
    next: u16,
    window: usize,
}

impl Inflight {
    /// An empty window of `window` entries (at least 1).
    pub(crate) fn new(window: u16) -> Inflight {
        Inflight { ids: HashSet::new(), next: 1, window: usize::from(window.max(1)) }
    }

    /// Changes the window size (at least 1).
    pub(crate) fn set_window(&mut self, window: u16) {
        self.window = usize::from(window.max(1));
    }

    /// Whether another PUBLISH may be sent.
    pub(crate) fn has_room(&self) -> bool {
        self.ids.len() < self.window
    }

    /// Takes a free packet identifier, or `None` if the window is full.
    pub(crate) fn allocate(&mut self) -> Option<NonZeroU16> {
        if !self.has_room() {
            return None;
        }
        // The window is at most 65535 and not full, so a free id exists within one lap.
        for _ in 0..=u16::MAX {
            let id = self.next;
            self.next = self.next.checked_add(1).unwrap_or(1);
            if let Some(nz) = NonZeroU16::new(id) {
                if self.ids.insert(id) {
                    return Some(nz);
                }
            }
        }
        None
    }

    /// Frees `id` on PUBACK; returns whether it was in use.
    pub(crate) fn release(&mut self, id: NonZeroU16) -> bool {
        self.ids.remove(&id.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_skipping_ids_in_use_and_wraps() {
        let mut f = Inflight::new(3);
        let a = f.allocate().unwrap();
        let b = f.allocate().unwrap();
        let c = f.allocate().unwrap();
        assert_eq!((a.get(), b.get(), c.get()), (1, 2, 3));
        assert!(f.allocate().is_none());
        assert!(f.release(b));
        assert!(!f.release(b));
        assert_eq!(f.allocate().unwrap().get(), 4);
        f.set_window(65535);
        f.next = 65535;
        assert_eq!(f.allocate().unwrap().get(), 65535);
        // 1 and 3 are still in use, so the lap continues at 2.
        assert_eq!(f.allocate().unwrap().get(), 2);
        assert_eq!(f.allocate().unwrap().get(), 5);
        assert_eq!(f.ids.len(), 6);
    }
}
