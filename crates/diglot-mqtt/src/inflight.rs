//! The outbound QoS 1 window: packet identifiers of PUBLISHes sent and not yet acknowledged,
//! each with the durable-queue entry it carries, if any.
//!
//! Identifiers are taken from 1..=65535 in turn, skipping those still in use
//! [MQTT-2.3.1-4]; the window is the smaller of `limits.max_inflight` and the client's MQTT 5
//! Receive Maximum [MQTT-3.3.4-9]. A delivery from a durable queue asks for the identifier
//! derived from its queue position ([`durable_id`]) first, so that a message redelivered
//! after a reconnect goes out with the packet id it had before [MQTT-4.4.0-1]. The messages
//! themselves are not kept: an unacknowledged durable entry returns to its queue when the
//! connection ends, and the store redelivers it.
//!
//! This module does not encode packets.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::num::NonZeroU16;

use diglot_core::{DurableRef, Seq};

/// The packet identifier a durable entry asks for: its seq folded into 1..=65535, so the
/// same entry gets the same id on every delivery attempt.
pub(crate) fn durable_id(seq: Seq) -> NonZeroU16 {
    let id = seq.wrapping_sub(1) % u64::from(u16::MAX) + 1;
    NonZeroU16::new(u16::try_from(id).unwrap_or(1)).unwrap_or(NonZeroU16::MIN)
}

/// Packet identifiers of unacknowledged outbound PUBLISHes.
#[derive(Debug)]
pub(crate) struct Inflight {
    ids: HashMap<u16, Option<DurableRef>>,
    next: u16,
    window: usize,
}

impl Inflight {
    /// An empty window of `window` entries (at least 1).
    pub(crate) fn new(window: u16) -> Inflight {
        Inflight { ids: HashMap::new(), next: 1, window: usize::from(window.max(1)) }
    }

    /// Changes the window size (at least 1).
    pub(crate) fn set_window(&mut self, window: u16) {
        self.window = usize::from(window.max(1));
    }

    /// Whether another PUBLISH may be sent.
    pub(crate) fn has_room(&self) -> bool {
        self.ids.len() < self.window
    }

    /// Takes `preferred` if it is free, else the next free packet identifier; `None` if the
    /// window is full. `durable` is handed back by [`Inflight::release`].
    pub(crate) fn allocate(
        &mut self,
        preferred: Option<NonZeroU16>,
        durable: Option<DurableRef>,
    ) -> Option<NonZeroU16> {
        if !self.has_room() {
            return None;
        }
        if let Some(id) = preferred {
            if let Entry::Vacant(e) = self.ids.entry(id.get()) {
                e.insert(durable);
                return Some(id);
            }
        }
        // The window is at most 65535 and not full, so a free id exists within one lap.
        for _ in 0..=u16::MAX {
            let id = self.next;
            self.next = self.next.checked_add(1).unwrap_or(1);
            if let Some(nz) = NonZeroU16::new(id) {
                if let Entry::Vacant(e) = self.ids.entry(id) {
                    e.insert(durable);
                    return Some(nz);
                }
            }
        }
        None
    }

    /// Frees `id` on PUBACK: `None` if it was not in use, else the durable entry it carried.
    pub(crate) fn release(&mut self, id: NonZeroU16) -> Option<Option<DurableRef>> {
        self.ids.remove(&id.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_skipping_ids_in_use_and_wraps() {
        let mut f = Inflight::new(3);
        let a = f.allocate(None, None).unwrap();
        let b = f.allocate(None, None).unwrap();
        let c = f.allocate(None, None).unwrap();
        assert_eq!((a.get(), b.get(), c.get()), (1, 2, 3));
        assert!(f.allocate(None, None).is_none());
        assert_eq!(f.release(b), Some(None));
        assert_eq!(f.release(b), None);
        assert_eq!(f.allocate(None, None).unwrap().get(), 4);
        f.set_window(65535);
        f.next = 65535;
        assert_eq!(f.allocate(None, None).unwrap().get(), 65535);
        // 1 and 3 are still in use, so the lap continues at 2.
        assert_eq!(f.allocate(None, None).unwrap().get(), 2);
        assert_eq!(f.allocate(None, None).unwrap().get(), 5);
        assert_eq!(f.ids.len(), 6);
    }

    #[test]
    fn durable_entries_prefer_their_derived_id() {
        assert_eq!(durable_id(1).get(), 1);
        assert_eq!(durable_id(65535).get(), 65535);
        assert_eq!(durable_id(65536).get(), 1);
        assert_eq!(durable_id(0).get(), 1, "seq 0 does not underflow");
        assert_eq!(durable_id(u64::MAX).get(), durable_id(u64::MAX).get());

        let mut f = Inflight::new(10);
        let r = DurableRef { queue: 4, seq: 70_000 };
        let id = f.allocate(Some(durable_id(r.seq)), Some(r)).unwrap();
        assert_eq!(id.get(), 4465);
        // Taken: the next free id instead.
        let r2 = DurableRef { queue: 4, seq: 70_000 + 65_535 };
        let id2 = f.allocate(Some(durable_id(r2.seq)), Some(r2)).unwrap();
        assert_eq!(id2.get(), 1);
        assert_eq!(f.release(id), Some(Some(r)));
        assert_eq!(f.release(id2), Some(Some(r2)));
    }
}
