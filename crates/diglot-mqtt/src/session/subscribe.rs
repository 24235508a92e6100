//! SUBSCRIBE and UNSUBSCRIBE (§3.8–§3.11).
//!
//! Each filter is checked on its own: a bad one gets a failure code in the SUBACK and the
//! others are still granted, as if each were its own SUBSCRIBE [MQTT-3.8.4-4]. Each distinct
//! filter keeps one [`SubId`] for the life of the connection, so a repeated SUBSCRIBE
//! replaces the subscription in the router rather than adding a second one [MQTT-3.8.4-3].
//! Subscribe actions are pushed before the SUBACK is written: the driver carries out the
//! actions, then flushes, so a message published right after the SUBACK already matches.
//!
//! In a session that lives in its durable queue (a persistent one, or a resumed one) a
//! filter is not a subscription of the connection but a binding of the session queue
//! (`Action::Bind`/`Action::Unbind`), kept by the store across reconnects and restarts; what
//! matches arrives through the queue's consumer ([`super::SESSION_SUB`]). Bindings made by
//! earlier connections are unknown here, so an UNSUBSCRIBE there always unbinds and always
//! succeeds.
//!
//! Not here yet: shared subscriptions (`$share/…` is refused), Subscription Identifiers
//! (announced unavailable), retained-message handling options, MQTT 5 No Local in
//! persistent sessions (`Action::Bind` does not carry it, so it is not honoured there), and
//! outbound QoS 2 (granted QoS is capped at [`MAX_GRANTED_QOS`]).

use std::num::{NonZeroU16, NonZeroU32};

use bytestring::ByteString;
use diglot_core::{session_queue, Action, Filter, Output, Qos, SubId};

use super::{Session, SESSION_SUB};
use crate::codec::SubReq;
use crate::reason::{code, SubFailure};

/// The highest QoS granted to a subscription. Outbound QoS 2 is not implemented yet, and a
/// server may grant less than requested [MQTT-3.8.4-6]; raising this is the one change
/// needed once it is.
pub(crate) const MAX_GRANTED_QOS: Qos = Qos::AtLeastOnce;

/// The filter prefix of an MQTT 5 shared subscription (§4.8.2).
const SHARED_PREFIX: &str = "$share/";

impl Session {
    /// SUBSCRIBE: subscribe each filter, then answer SUBACK with one code per filter, in order
    /// [MQTT-3.8.4-5].
    pub(super) fn on_subscribe(
        &mut self,
        packet_id: NonZeroU16,
        sub_id: Option<NonZeroU32>,
        filters: Vec<SubReq>,
        out: &mut Output,
        actions: &mut Vec<Action>,
    ) {
        let Some(version) = self.wire.as_ref().map(|w| w.version()) else { return };
        let codes: Vec<u8> = filters
            .iter()
            .map(|req| match self.subscribe_one(req, sub_id.is_some(), actions) {
                Ok(qos) => qos as u8,
                Err(f) => f.suback_code(version),
            })
            .collect();
        if let Some(wire) = self.wire.as_mut() {
            // [MQTT-3.8.4-2] The SUBACK has the SUBSCRIBE's packet id.
            wire.suback(packet_id, &codes, out);
        }
    }

    /// Subscribes one filter and returns the granted QoS.
    fn subscribe_one(&mut self, req: &SubReq, has_sub_id: bool, actions: &mut Vec<Action>) -> Result<Qos, SubFailure> {
        // Subscription Identifiers Available is announced as 0 (§3.2.2.3.12).
        if has_sub_id {
            return Err(SubFailure::SubIds);
        }
        // Shared Subscription Available is announced as 0 (§3.2.2.3.14).
        if req.filter.starts_with(SHARED_PREFIX) {
            return Err(SubFailure::Shared);
        }
        let filter = Filter::new(&req.filter).map_err(|_| SubFailure::InvalidFilter)?;
        let granted = Qos::from_u8(req.qos).unwrap_or(Qos::AtMostOnce).min(MAX_GRANTED_QOS);
        let sub = match self.subs.get(&filter) {
            Some(&sub) => sub,
            None => self.new_sub_id(&filter)?,
        };
        match self.session_queue() {
            Some(queue) => actions.push(Action::Bind { queue, filter, qos: granted }),
            None => actions.push(Action::Subscribe {
                filter,
                sub,
                qos: granted,
                no_local: req.no_local,
                merge: true,
                retained: diglot_core::RetainHandling::Always,
                share: None,
            }),
        }
        Ok(granted)
    }

    /// The session queue that the filters are bound to, in a session that lives in it
    /// (persistent, or resumed).
    fn session_queue(&self) -> Option<String> {
        match (self.uses_queue, self.client_id.as_deref()) {
            (true, Some(id)) => Some(session_queue(id)),
            _ => None,
        }
    }

    /// A fresh id for a new filter, within `limits.max_subscriptions`.
    fn new_sub_id(&mut self, filter: &Filter) -> Result<SubId, SubFailure> {
        if self.subs.len() >= self.limits.max_subscriptions {
            return Err(SubFailure::Quota);
        }
        let sub = self.next_sub;
        if sub == SESSION_SUB {
            return Err(SubFailure::Quota);
        }
        self.next_sub = self.next_sub.checked_add(1).ok_or(SubFailure::Quota)?;
        self.subs.insert(filter.clone(), sub);
        Ok(sub)
    }

    /// UNSUBSCRIBE: remove each known filter, then answer UNSUBACK [MQTT-3.10.4-4], with a
    /// reason code per filter in MQTT 5 (§3.11.3).
    pub(super) fn on_unsubscribe(
        &mut self,
        packet_id: NonZeroU16,
        filters: Vec<ByteString>,
        out: &mut Output,
        actions: &mut Vec<Action>,
    ) {
        let codes: Vec<u8> = filters
            .iter()
            .map(|f| match Filter::new(f) {
                Err(_) => code::TOPIC_FILTER_INVALID,
                Ok(filter) => {
                    let known = self.subs.remove(&filter);
                    match (self.session_queue(), known) {
                        // The bindings live with the session queue, not the connection: one
                        // made by an earlier connection (or before a restart) is unknown
                        // here but may exist, so unbind anyway and report success.
                        (Some(queue), _) => {
                            actions.push(Action::Unbind { queue, filter });
                            code::SUCCESS
                        }
                        (None, Some(sub)) => {
                            actions.push(Action::Unsubscribe { filter, sub });
                            code::SUCCESS
                        }
                        (None, None) => code::NO_SUBSCRIPTION_EXISTED,
                    }
                }
            })
            .collect();
        if let Some(wire) = self.wire.as_mut() {
            wire.unsuback(packet_id, &codes, out);
        }
    }
}
