//! The `expires` header ⇔ [`diglot_core::Message::expires_at`].
//!
//! On the wire, `expires` is an absolute time in milliseconds since the Unix epoch, as ActiveMQ
//! and Artemis write it (`0` means never). Inside the broker an expiry is an [`Instant`], so the
//! value is converted against the wall clock at the moment the frame is handled: a SEND with
//! `expires` five seconds ahead of the broker's clock makes a message that expires five seconds
//! after it arrived, and a MESSAGE carries `expires` = the wall clock now + what remains.
//! A time already past makes a message that expires at once (it is not delivered).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The wall clock in ms since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_ms_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis().min(u128::from(u64::MAX)) as u64)
}

/// Parses a SEND's `expires` value into the instant the message expires, given that `now` is
/// `now_ms` on the wall clock. `Ok(None)`: never (`0`). `Err`: not a decimal number.
pub(crate) fn parse(value: &str, now: Instant, now_ms: u64) -> Result<Option<Instant>, ()> {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    // Longer than u64 is far beyond any Instant: never.
    let Ok(ms) = value.parse::<u64>() else { return Ok(None) };
    if ms == 0 {
        return Ok(None);
    }
    let ahead = Duration::from_millis(ms.saturating_sub(now_ms));
    // An expiry too far ahead to represent is no expiry.
    Ok(now.checked_add(ahead))
}

/// The `expires` value for a message that expires at `at`, at `now` = `now_ms` on the wall
/// clock. Never 0 (which would mean "never").
pub(crate) fn header(at: Instant, now: Instant, now_ms: u64) -> u64 {
    let left = at.saturating_duration_since(now).as_millis().min(u128::from(u64::MAX)) as u64;
    now_ms.saturating_add(left).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_both_ways() {
        let now = Instant::now();
        let ms = 1_700_000_000_000;
        assert_eq!(parse("0", now, ms), Ok(None));
        assert_eq!(parse("1700000005000", now, ms), Ok(Some(now + Duration::from_secs(5))));
        assert_eq!(parse(" 1700000005000 ", now, ms), Ok(Some(now + Duration::from_secs(5))));
        // In the past: expires at once.
        assert_eq!(parse("1", now, ms), Ok(Some(now)));
        assert_eq!(parse("99999999999999999999999", now, ms), Ok(None));
        for bad in ["", "-1", "soon", "1.5", "+3"] {
            assert_eq!(parse(bad, now, ms), Err(()), "{bad}");
        }
        assert_eq!(header(now + Duration::from_secs(5), now, ms), 1_700_000_005_000);
        assert_eq!(header(now, now + Duration::from_secs(1), ms), ms);
        assert_eq!(header(now, now, 0), 1);
        assert!(unix_ms_now() > ms);
    }
}
