//! The outbound QoS 1 and QoS 2 window: packet identifiers of PUBLISHes sent and not yet
//! acknowledged, each with the stage of its flow and the durable-queue entry it carries.
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

use diglot_core::{DurableRef, QueueId, Seq};

/// The packet identifier a durable entry asks for: its seq folded into 1..=65535, so the
/// same entry gets the same id on every delivery attempt.
pub(crate) fn durable_id(seq: Seq) -> NonZeroU16 {
    let id = seq.wrapping_sub(1) % u64::from(u16::MAX) + 1;
    NonZeroU16::new(u16::try_from(id).unwrap_or(1)).unwrap_or(NonZeroU16::MIN)
}

/// Where an outbound QoS > 0 PUBLISH is in its flow (§4.3.2, §4.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// QoS 1, waiting for PUBACK.
    Qos1,
    /// QoS 2, waiting for PUBREC.
    Qos2Sent,
    /// QoS 2, PUBREL sent, waiting for PUBCOMP.
    Qos2Released,
}

/// What a PUBREC did to the flow it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecOutcome {
    /// No QoS 2 PUBLISH of ours has that id.
    Unknown,
    /// The PUBREC refused the message (MQTT 5 reason ≥ 0x80): the flow ended and the id is
    /// free; the durable entry it carried, if any, is handed back.
    Refused(Option<DurableRef>),
    /// Send PUBREL (again, for a repeated PUBREC) and wait for PUBCOMP.
    Release,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    durable: Option<DurableRef>,
    stage: Stage,
}

/// Packet identifiers of unacknowledged outbound PUBLISHes, QoS 1 and QoS 2 alike: both
/// count against the client's Receive Maximum until their flow ends (PUBACK; PUBCOMP, or a
/// PUBREC with an error code) [MQTT-4.9.0-2].
#[derive(Debug)]
pub(crate) struct Inflight {
    ids: HashMap<u16, Slot>,
    /// Ids an earlier connection released (PUBREL sent) for session-queue entries not
    /// redelivered yet: the client holds them until their PUBREL comes again, so no new
    /// PUBLISH may take them ([`Inflight::reserve`]). Not counted against the window: the
    /// entries themselves must still get through it.
    reserved: std::collections::HashSet<u16>,
    next: u16,
    window: usize,
}

impl Inflight {
    /// An empty window of `window` entries (at least 1).
    pub(crate) fn new(window: u16) -> Inflight {
        Inflight { ids: HashMap::new(), reserved: Default::default(), next: 1, window: usize::from(window.max(1)) }
    }

    /// Changes the window size (at least 1).
    pub(crate) fn set_window(&mut self, window: u16) {
        self.window = usize::from(window.max(1));
    }

    /// Whether another PUBLISH may be sent.
    pub(crate) fn has_room(&self) -> bool {
        self.ids.len() < self.window
    }

    /// How many more QoS 1 or 2 PUBLISHes may be sent now.
    pub(crate) fn room(&self) -> usize {
        self.window.saturating_sub(self.ids.len())
    }

    /// Takes `preferred` if it is free, else the next free packet identifier, for a PUBLISH
    /// at QoS 2 (`qos2`) or QoS 1; `None` if the window is full. `durable` is handed back
    /// when the flow ends.
    pub(crate) fn allocate(
        &mut self,
        preferred: Option<NonZeroU16>,
        durable: Option<DurableRef>,
        qos2: bool,
    ) -> Option<NonZeroU16> {
        if !self.has_room() {
            return None;
        }
        let slot = Slot { durable, stage: if qos2 { Stage::Qos2Sent } else { Stage::Qos1 } };
        if let Some(id) = preferred.filter(|id| !self.reserved.contains(&id.get())) {
            if let Entry::Vacant(e) = self.ids.entry(id.get()) {
                e.insert(slot);
                return Some(id);
            }
        }
        // The window is at most 65535 and not full, so a free id exists within one lap.
        for _ in 0..=u16::MAX {
            let id = self.next;
            self.next = self.next.checked_add(1).unwrap_or(1);
            if let Some(nz) = NonZeroU16::new(id).filter(|_| !self.reserved.contains(&id)) {
                if let Entry::Vacant(e) = self.ids.entry(id) {
                    e.insert(slot);
                    return Some(nz);
                }
            }
        }
        None
    }

    /// PUBACK: frees a QoS 1 `id` and returns the durable entry it carried; `None` if no QoS 1
    /// PUBLISH has that id.
    pub(crate) fn puback(&mut self, id: NonZeroU16) -> Option<Option<DurableRef>> {
        self.take_if(id, Stage::Qos1)
    }

    /// PUBREC with reason `code` (0 in 3.x).
    pub(crate) fn pubrec(&mut self, id: NonZeroU16, code: u8) -> RecOutcome {
        let Some(slot) = self.ids.get_mut(&id.get()) else { return RecOutcome::Unknown };
        match slot.stage {
            Stage::Qos1 => RecOutcome::Unknown,
            // §4.3.3: a PUBREC with a reason code of 0x80 or greater ends the flow.
            Stage::Qos2Sent if code >= 0x80 => RecOutcome::Refused(self.ids.remove(&id.get()).and_then(|s| s.durable)),
            Stage::Qos2Sent | Stage::Qos2Released => {
                slot.stage = Stage::Qos2Released;
                RecOutcome::Release
            }
        }
    }

    /// PUBCOMP: frees a QoS 2 `id` whose PUBREL was sent and returns the durable entry it
    /// carried; `None` if no such flow has that id.
    pub(crate) fn pubcomp(&mut self, id: NonZeroU16) -> Option<Option<DurableRef>> {
        self.take_if(id, Stage::Qos2Released)
    }

    /// Keeps `id` from new PUBLISHes until [`Inflight::unreserve`] (see `reserved`).
    pub(crate) fn reserve(&mut self, id: u16) {
        self.reserved.insert(id);
    }

    /// Gives back an id [`Inflight::reserve`] kept.
    pub(crate) fn unreserve(&mut self, id: u16) {
        self.reserved.remove(&id);
    }

    /// Takes `id` for a QoS 2 delivery (of `durable`, if it came from a durable queue) whose
    /// PUBREL an earlier connection sent: the flow resumes waiting for PUBCOMP
    /// [MQTT-4.4.0-1]. `false` if the window is full or `id` is in use.
    pub(crate) fn resume_released(&mut self, id: NonZeroU16, durable: Option<DurableRef>) -> bool {
        self.has_room() && self.resume_released_anyway(id, durable)
    }

    /// [`Inflight::resume_released`] even past the window (a client whose Receive Maximum
    /// shrank still needs every PUBREL: the window holds back new PUBLISHes until they end).
    pub(crate) fn resume_released_anyway(&mut self, id: NonZeroU16, durable: Option<DurableRef>) -> bool {
        match self.ids.entry(id.get()) {
            Entry::Vacant(e) => {
                e.insert(Slot { durable, stage: Stage::Qos2Released });
                true
            }
            Entry::Occupied(_) => false,
        }
    }

    /// The QoS 2 flows of entries of durable queue `queue` whose PUBREL was sent: (packet id,
    /// entry).
    pub(crate) fn released(&self, queue: QueueId) -> impl Iterator<Item = (u16, Seq)> + '_ {
        self.ids.iter().filter_map(move |(&id, slot)| match (slot.stage, slot.durable) {
            (Stage::Qos2Released, Some(r)) if r.queue == queue => Some((id, r.seq)),
            _ => None,
        })
    }

    /// The other QoS 2 flows whose PUBREL was sent: those of deliveries that are not entries of
    /// durable queue `queue` (none if `None`).
    pub(crate) fn released_elsewhere(&self, queue: Option<QueueId>) -> impl Iterator<Item = u16> + '_ {
        self.ids.iter().filter_map(move |(&id, slot)| match (slot.stage, slot.durable) {
            (Stage::Qos2Released, Some(r)) if Some(r.queue) == queue => None,
            (Stage::Qos2Released, _) => Some(id),
            _ => None,
        })
    }

    /// Frees `id` whatever its stage (a PUBLISH that was not written after all).
    pub(crate) fn release(&mut self, id: NonZeroU16) -> Option<Option<DurableRef>> {
        self.ids.remove(&id.get()).map(|s| s.durable)
    }

    fn take_if(&mut self, id: NonZeroU16, stage: Stage) -> Option<Option<DurableRef>> {
        match self.ids.entry(id.get()) {
            Entry::Occupied(e) if e.get().stage == stage => Some(e.remove().durable),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_skipping_ids_in_use_and_wraps() {
        let mut f = Inflight::new(3);
        let a = f.allocate(None, None, false).unwrap();
        let b = f.allocate(None, None, false).unwrap();
        let c = f.allocate(None, None, false).unwrap();
        assert_eq!((a.get(), b.get(), c.get()), (1, 2, 3));
        assert!(f.allocate(None, None, false).is_none());
        assert_eq!(f.release(b), Some(None));
        assert_eq!(f.release(b), None);
        assert_eq!(f.allocate(None, None, false).unwrap().get(), 4);
        f.set_window(65535);
        f.next = 65535;
        assert_eq!(f.allocate(None, None, false).unwrap().get(), 65535);
        // 1 and 3 are still in use, so the lap continues at 2.
        assert_eq!(f.allocate(None, None, false).unwrap().get(), 2);
        assert_eq!(f.allocate(None, None, false).unwrap().get(), 5);
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
        let id = f.allocate(Some(durable_id(r.seq)), Some(r), false).unwrap();
        assert_eq!(id.get(), 4465);
        // Taken: the next free id instead.
        let r2 = DurableRef { queue: 4, seq: 70_000 + 65_535 };
        let id2 = f.allocate(Some(durable_id(r2.seq)), Some(r2), false).unwrap();
        assert_eq!(id2.get(), 1);
        assert_eq!(f.puback(id), Some(Some(r)));
        assert_eq!(f.release(id2), Some(Some(r2)));
    }

    #[test]
    fn qos2_flow_stages() {
        let mut f = Inflight::new(3);
        let r = DurableRef { queue: 1, seq: 7 };
        let q2 = f.allocate(Some(durable_id(7)), Some(r), true).unwrap();
        let q1 = f.allocate(None, None, false).unwrap();
        // A PUBACK or PUBCOMP does not end a flow waiting for PUBREC, nor PUBREC a QoS 1 one.
        assert_eq!(f.puback(q2), None);
        assert_eq!(f.pubcomp(q2), None);
        assert_eq!(f.pubrec(q1, 0), RecOutcome::Unknown);
        assert_eq!(f.pubrec(pid(99), 0), RecOutcome::Unknown);
        assert_eq!(f.pubrec(q2, 0), RecOutcome::Release);
        // A repeated PUBREC is answered with PUBREL again; the id stays in flight.
        assert_eq!(f.pubrec(q2, 0), RecOutcome::Release);
        assert_eq!(f.ids.len(), 2);
        assert_eq!(f.pubcomp(q2), Some(Some(r)));
        assert_eq!(f.pubcomp(q2), None);
        // A refusing PUBREC ends the flow.
        let q3 = f.allocate(None, None, true).unwrap();
        assert_eq!(f.pubrec(q3, 0x80), RecOutcome::Refused(None));
        assert_eq!(f.puback(q1), Some(None));
        assert!(f.ids.is_empty());
    }

    #[test]
    fn a_released_flow_resumes_waiting_for_pubcomp() {
        let mut f = Inflight::new(2);
        let r = DurableRef { queue: 3, seq: 9 };
        let other = DurableRef { queue: 4, seq: 9 };
        let a = f.allocate(None, Some(r), true).unwrap();
        let b = f.allocate(None, Some(other), true).unwrap();
        assert_eq!(f.released(3).count(), 0, "PUBREL not sent yet");
        assert_eq!(f.pubrec(a, 0), RecOutcome::Release);
        assert_eq!(f.pubrec(b, 0), RecOutcome::Release);
        assert_eq!(f.released(3).collect::<Vec<_>>(), [(a.get(), 9)], "queue 3's only");

        let mut next = Inflight::new(2);
        assert_eq!(f.released_elsewhere(Some(3)).collect::<Vec<_>>(), [b.get()], "queue 4's is elsewhere");
        assert!(next.resume_released(a, Some(r)));
        assert!(!next.resume_released(a, Some(other)), "id in use");
        assert_eq!(next.pubrec(a, 0), RecOutcome::Release, "a repeated PUBREC gets PUBREL");
        assert_eq!(next.puback(a), None);
        assert!(next.resume_released(pid(5), None));
        assert!(!next.resume_released(pid(6), None), "window full");
        assert_eq!(next.pubcomp(pid(5)), Some(None));
        assert_eq!(next.pubcomp(a), Some(Some(r)));
    }

    #[test]
    fn reserved_ids_are_not_given_to_new_publishes() {
        let mut f = Inflight::new(10);
        f.reserve(1);
        f.reserve(2);
        let r = DurableRef { queue: 1, seq: 1 };
        // Preferred or next, a reserved id is skipped.
        assert_eq!(f.allocate(Some(pid(1)), Some(r), true).unwrap().get(), 3);
        assert_eq!(f.allocate(None, None, false).unwrap().get(), 4);
        assert_eq!(f.room(), 8, "reserved ids do not take the window");
        f.unreserve(1);
        assert!(f.resume_released(pid(1), Some(r)));
        assert_eq!(f.allocate(None, None, false).unwrap().get(), 5);
    }

    fn pid(n: u16) -> NonZeroU16 {
        NonZeroU16::new(n).unwrap()
    }
}
