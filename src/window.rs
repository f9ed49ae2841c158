//! An in-process sliding-window counter: at most `max` events per key per window, bounded
//! in bytes. The audit trail uses it to bound what anonymous clients may make it record
//! (per process is enough for that); the login's limits are in `crate::state`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn secs(v: i64) -> u64 {
    u64::try_from(v.max(1)).unwrap_or(1)
}

/// Bytes one `Window`'s keys and events may take together (SECURITY 39).
pub const WINDOW_BYTES: u64 = 32 * 1024 * 1024;

/// In process only: the audit trail's own bound on what anonymous clients may make it
/// record (per process is enough for that); login limits are in `crate::state`.
/// A sliding-window counter per key: at most `max` events per `window`.
pub struct Window {
    max: u32,
    window: i64,
    events: moka::sync::Cache<String, Arc<Mutex<VecDeque<i64>>>>,
}

impl Window {
    pub fn new(max: u32, window: Duration) -> Self {
        Self::with_budget(max, window, WINDOW_BYTES)
    }

    /// A window whose keys and events take at most `bytes`. An entry is weighed when it
    /// is made, as full (`max` events): it never grows past that.
    pub fn with_budget(max: u32, window: Duration, bytes: u64) -> Self {
        let window_secs = i64::try_from(window.as_secs())
            .unwrap_or(i64::MAX / 2)
            .max(1);
        let full = usize::try_from(max)
            .unwrap_or(usize::MAX)
            .saturating_mul(std::mem::size_of::<i64>());
        Self {
            max,
            window: window_secs,
            events: moka::sync::Cache::builder()
                .max_capacity(bytes)
                .weigher(move |k: &String, _: &Arc<Mutex<VecDeque<i64>>>| {
                    u32::try_from(k.len().saturating_add(full).saturating_add(256))
                        .unwrap_or(u32::MAX)
                })
                .time_to_idle(window)
                .build(),
        }
    }

    /// Bytes the window's entries take (after pending cache maintenance).
    pub fn bytes(&self) -> u64 {
        self.events.run_pending_tasks();
        self.events.weighted_size()
    }

    /// The seconds until `key` may count an event again, without counting one.
    pub fn peek(&self, key: &str, now: i64) -> Result<(), u64> {
        let Some(slot) = self.events.get(key) else {
            return if self.max == 0 { Err(1) } else { Ok(()) };
        };
        let Ok(events) = slot.lock() else {
            return Err(1);
        };
        let live = events.iter().filter(|&&t| t > now - self.window).count();
        if u32::try_from(live).unwrap_or(u32::MAX) >= self.max {
            let oldest = events
                .iter()
                .find(|&&t| t > now - self.window)
                .copied()
                .unwrap_or(now);
            return Err(secs(oldest + self.window - now));
        }
        Ok(())
    }

    /// Takes back an event counted at `at` (a later budget refused the whole request).
    pub fn undo(&self, key: &str, at: i64) {
        if let Some(slot) = self.events.get(key)
            && let Ok(mut events) = slot.lock()
            && let Some(i) = events.iter().rposition(|&t| t == at)
        {
            events.remove(i);
        }
    }

    /// Counts one event in each `(window, key)` if all allow it; else counts none and
    /// returns the longest wait.
    pub fn hit_all(list: &[(&Window, &str)], now: i64) -> Result<(), u64> {
        for (i, (w, key)) in list.iter().enumerate() {
            if let Err(wait) = w.hit(key, now) {
                for (w, key) in &list[..i] {
                    w.undo(key, now);
                }
                return Err(wait);
            }
        }
        Ok(())
    }

    /// Counts one event for `key` if allowed, else returns the seconds until one is.
    pub fn hit(&self, key: &str, now: i64) -> Result<(), u64> {
        let slot = self
            .events
            .get_with(key.to_owned(), || Arc::new(Mutex::new(VecDeque::new())));
        let Ok(mut events) = slot.lock() else {
            return Err(1);
        };
        while events.front().is_some_and(|&t| t <= now - self.window) {
            events.pop_front();
        }
        if u32::try_from(events.len()).unwrap_or(u32::MAX) >= self.max {
            let oldest = events.front().copied().unwrap_or(now);
            return Err(secs(oldest + self.window - now));
        }
        events.push_back(now);
        Ok(())
    }
}

/// Generated cases for the budget (issue 29): over any sequence of hits at non-decreasing
/// times, no key ever counts more than `max` events inside one window, and `hit_all` counts
/// in every window or in none.
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn no_window_ever_holds_more_than_max(
            max in 0u32..6, window in 1u64..30,
            hits in proptest::collection::vec((0usize..3, 0i64..10), 0..80),
        ) {
            let w = Window::new(max, Duration::from_secs(window));
            let keys = ["a", "b", "c"];
            let mut now = 1_000;
            let mut counted: Vec<(usize, i64)> = Vec::new();
            for (k, step) in hits {
                now += step;
                let allowed = w.hit(keys[k], now).is_ok();
                let live = counted
                    .iter()
                    .filter(|(key, t)| *key == k && *t > now - i64::try_from(window).unwrap_or(1))
                    .count();
                prop_assert_eq!(allowed, u32::try_from(live).unwrap_or(u32::MAX) < max);
                if allowed {
                    counted.push((k, now));
                }
                prop_assert_eq!(w.peek(keys[k], now).is_ok(), u32::try_from(live + usize::from(allowed)).unwrap_or(u32::MAX) < max);
            }
        }

        #[test]
        fn hit_all_counts_everywhere_or_nowhere(
            a in 0u32..4, b in 0u32..4, rounds in 1usize..12,
        ) {
            let (wa, wb) = (Window::new(a, Duration::from_secs(60)), Window::new(b, Duration::from_secs(60)));
            let mut done = 0u32;
            for _ in 0..rounds {
                if Window::hit_all(&[(&wa, "k"), (&wb, "k")], 5_000).is_ok() {
                    done += 1;
                }
            }
            prop_assert_eq!(done, a.min(b).min(u32::try_from(rounds).unwrap_or(u32::MAX)));
            // Whatever was refused left no event behind: exactly `done` in each.
            let left_a = (0..a).filter(|_| wa.hit("k", 5_000).is_ok()).count();
            prop_assert_eq!(u32::try_from(left_a).unwrap_or(0), a - done);
        }
    }
}
