//! Records per second by level, as the hub reads them: what the web page's
//! rate chart shows (`/api/stats`).
//!
//! A ring of one slot per second, each holding a count per level. The hub is
//! the only writer and adds a message's records at once, so the cost in its
//! path is a few atomic adds per message and no lock; a reader sums the slots
//! it wants without stopping the hub. A slot is reused once its second is
//! [`WINDOW_SECONDS`] old: the writer restamps it and zeroes it first, so a
//! reader may, for the one second being restamped, see a count a little
//! short. That is fine for a chart, and the price of never locking.

use std::sync::atomic::{AtomicI64, AtomicU32, Ordering::Relaxed};

use crate::record::Level;

/// How many seconds back the ring remembers.
pub const WINDOW_SECONDS: usize = 600;

const LEVELS: usize = Level::ALL.len();

/// Counts per level per second over the last [`WINDOW_SECONDS`].
pub struct Rates {
    slots: Box<[Slot]>,
}

struct Slot {
    /// The Unix second this slot counts; `i64::MIN` when never used.
    second: AtomicI64,
    counts: [AtomicU32; LEVELS],
}

/// One second's counts, indexed as [`Level::ALL`].
pub type Counts = [u32; LEVELS];

impl Default for Rates {
    fn default() -> Self {
        Rates {
            slots: (0..WINDOW_SECONDS)
                .map(|_| Slot {
                    second: AtomicI64::new(i64::MIN),
                    counts: Default::default(),
                })
                .collect(),
        }
    }
}

impl Rates {
    /// Counts `levels`, read during Unix second `now`.
    pub fn count(&self, now: i64, levels: impl IntoIterator<Item = Level>) {
        let slot = self.slot(now);
        if slot.second.load(Relaxed) != now {
            // Reused: zero it before it is stamped, so that a reader that
            // sees the new stamp does not also see the old second's counts.
            for count in &slot.counts {
                count.store(0, Relaxed);
            }
            slot.second.store(now, Relaxed);
        }
        let mut added = [0u32; LEVELS];
        for level in levels {
            added[level as usize] += 1;
        }
        for (count, added) in slot.counts.iter().zip(added) {
            if added > 0 {
                count.fetch_add(added, Relaxed);
            }
        }
    }

    /// The `seconds` whole seconds before `now` (`now` itself is still
    /// filling), oldest first; a second with nothing read counts zero.
    pub fn recent(&self, now: i64, seconds: usize) -> Vec<Counts> {
        let seconds = seconds.min(WINDOW_SECONDS - 1);
        (1..=seconds as i64)
            .rev()
            .map(|back| {
                let second = now - back;
                let slot = self.slot(second);
                let mut counts = [0; LEVELS];
                if slot.second.load(Relaxed) == second {
                    for (out, count) in counts.iter_mut().zip(&slot.counts) {
                        *out = count.load(Relaxed);
                    }
                }
                counts
            })
            .collect()
    }

    fn slot(&self, second: i64) -> &Slot {
        let index = second.rem_euclid(WINDOW_SECONDS as i64) as usize;
        &self.slots[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_their_second_and_level() {
        let rates = Rates::default();
        rates.count(1000, [Level::Info, Level::Info, Level::Error]);
        rates.count(1000, [Level::Info]);
        rates.count(1002, [Level::Fatal]);
        let recent = rates.recent(1003, 4);
        assert_eq!(
            recent,
            vec![[0; 6], [0, 0, 3, 0, 1, 0], [0; 6], [0, 0, 0, 0, 0, 1],]
        );
    }

    #[test]
    fn the_second_still_filling_is_left_out() {
        let rates = Rates::default();
        rates.count(50, [Level::Warn]);
        assert_eq!(rates.recent(50, 1), vec![[0; 6]]);
        assert_eq!(rates.recent(51, 1), vec![[0, 0, 0, 1, 0, 0]]);
    }

    #[test]
    fn a_slot_a_window_old_is_zeroed_before_reuse() {
        let rates = Rates::default();
        rates.count(7, [Level::Debug; 5]);
        let later = 7 + WINDOW_SECONDS as i64;
        rates.count(later, [Level::Trace]);
        assert_eq!(rates.recent(later + 1, 1), vec![[1, 0, 0, 0, 0, 0]]);
        // The old second is not reported as if it were recent either.
        assert_eq!(rates.recent(8, 1), vec![[0; 6]]);
    }

    #[test]
    fn a_long_window_is_cut_to_what_the_ring_holds() {
        let rates = Rates::default();
        assert_eq!(rates.recent(10_000, 10_000).len(), WINDOW_SECONDS - 1);
    }
}
