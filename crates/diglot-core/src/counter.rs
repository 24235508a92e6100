//! A counter that many threads add to at once.
//!
//! A broker-wide `AtomicU64` that every publish adds to is one cache line that both cores
//! write in turn: each add waits for the line to come over from the other core. A [`Counter`]
//! gives each thread a line of its own (threads share one only past [`STRIPES`] threads) and
//! sums the lines when it is read, which is rare (metrics, the admin API, `$SYS`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// How many lines a counter has.
pub const STRIPES: usize = 8;

/// One cache line (two on CPUs that fetch lines in pairs).
#[derive(Default)]
#[repr(align(128))]
struct Line(AtomicU64);

/// A `u64` counter with one cache line per thread. Reads are a sum, so they see every add
/// that happened before them, though not as one instant across threads.
#[derive(Default)]
pub struct Counter {
    lines: [Line; STRIPES],
}

static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static STRIPE: usize = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
}

impl Counter {
    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        let i = STRIPE.try_with(|s| *s).unwrap_or(0);
        self.lines[i].0.fetch_add(n, Ordering::Relaxed);
    }

    /// The sum of every add so far.
    pub fn get(&self) -> u64 {
        self.lines.iter().map(|l| l.0.load(Ordering::Relaxed)).fold(0, u64::wrapping_add)
    }
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn adds_from_many_threads_all_count() {
        let c = Arc::new(Counter::default());
        let threads: Vec<_> = (0..STRIPES + 3)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.add(t as u64 + 1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let n = (STRIPES + 3) as u64;
        assert_eq!(c.get(), 1000 * n * (n + 1) / 2);
    }
}
