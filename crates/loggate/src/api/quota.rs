//! What each principal may use, so that one caller cannot take the gateway
//! from the others: records per second (a token bucket per principal,
//! `--rate-per-principal`) and open tails (`--max-tails-per-principal`).
//!
//! Only principals of `--auth-file` are counted: without it every caller is
//! the same anonymous one, and the gateway-wide bounds are what apply.

use std::{
    collections::HashMap,
    num::NonZeroUsize,
    sync::{Arc, Mutex},
};

use tokio::time::Instant;
use tonic::Status;

use crate::auth::Caller;
use crate::sync::lock;

/// The per-principal quotas, from `serve`'s flags.
#[derive(Debug, Clone, Copy)]
pub struct QuotaSettings {
    /// Records per second per principal; `None`: unlimited.
    pub rate: Option<Rate>,
    /// Tails one principal may have open at once.
    pub max_tails: NonZeroUsize,
}

/// A token bucket's shape.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    /// Records per second, on average.
    pub per_second: u32,
    /// Records at once: the bucket's size.
    pub burst: u32,
}

/// Every principal's use so far.
pub(super) struct Quotas {
    settings: QuotaSettings,
    /// One bucket per principal that wrote since the gateway started; the
    /// auth files' names bound how many there are.
    buckets: Mutex<HashMap<String, Bucket>>,
    /// Open tails per principal; an entry goes when its last tail ends.
    tails: OpenTails,
    /// Open tails that start in the past (each holding a broker channel)
    /// per principal, counted the same way.
    history_tails: OpenTails,
}

impl Quotas {
    pub(super) fn new(settings: QuotaSettings) -> Quotas {
        Quotas {
            settings,
            buckets: Mutex::default(),
            tails: Arc::default(),
            history_tails: Arc::default(),
        }
    }

    /// Spends `records` of the caller's rate, or refuses them
    /// RESOURCE_EXHAUSTED (spending nothing) when its bucket is short.
    pub(super) fn spend(&self, caller: &Caller, records: usize) -> Result<(), Status> {
        let Some(rate) = self.settings.rate else {
            return Ok(());
        };
        if caller.name().is_empty() || records == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = lock(&self.buckets);
        let bucket = buckets
            .entry(caller.name().to_owned())
            .or_insert_with(|| Bucket {
                tokens: f64::from(rate.burst),
                at: now,
            });
        if bucket.take(records, rate, now) {
            Ok(())
        } else {
            Err(Status::resource_exhausted(format!(
                "principal {:?} is over its quota of {} records/s, {} at once \
                 (--rate-per-principal, --burst-per-principal); retry later",
                caller.name(),
                rate.per_second,
                rate.burst
            )))
        }
    }

    /// A place for one more of the caller's tails, held until the tail
    /// ends, or RESOURCE_EXHAUSTED when it has `--max-tails-per-principal`.
    pub(super) fn open_tail(&self, caller: &Caller) -> Result<TailPlace, Status> {
        let max = self.settings.max_tails.get();
        take_place(&self.tails, caller, max, || {
            format!(
                "principal {:?} has {max} tails open, the most one principal may \
                 (--max-tails-per-principal)",
                caller.name()
            )
        })
    }

    /// A place for one more of the caller's tails that start in the past,
    /// at most `max` at once: each holds one of the broker channels all
    /// principals share (`--tail-channels`), so no one caller may take them all.
    pub(super) fn open_history_tail(
        &self,
        caller: &Caller,
        max: usize,
    ) -> Result<TailPlace, Status> {
        take_place(&self.history_tails, caller, max, || {
            format!(
                "principal {:?} has {max} tails that start in the past open, the most one \
                 principal may (a tenth of --tail-channels); try again later or follow live",
                caller.name()
            )
        })
    }
}

/// Counts one more of `caller`'s places in `places`, up to `max`, else
/// RESOURCE_EXHAUSTED with `refusal`. The anonymous caller is not counted.
fn take_place(
    places: &OpenTails,
    caller: &Caller,
    max: usize,
    refusal: impl FnOnce() -> String,
) -> Result<TailPlace, Status> {
    if caller.name().is_empty() {
        return Ok(TailPlace(None));
    }
    let mut open_places = lock(places);
    let open = open_places.entry(caller.name().to_owned()).or_insert(0);
    if *open >= max {
        return Err(Status::resource_exhausted(refusal()));
    }
    *open += 1;
    Ok(TailPlace(Some((
        caller.name().to_owned(),
        Arc::clone(places),
    ))))
}

/// Open tails per principal, shared with each tail's [`TailPlace`].
type OpenTails = Arc<Mutex<HashMap<String, usize>>>;

/// One tail's place in its principal's count, given back on drop (none for
/// the anonymous caller).
pub(super) struct TailPlace(Option<(String, OpenTails)>);

impl Drop for TailPlace {
    fn drop(&mut self) {
        if let Some((principal, tails)) = self.0.take() {
            let mut tails = lock(&tails);
            if let Some(open) = tails.get_mut(&principal) {
                *open = open.saturating_sub(1);
                if *open == 0 {
                    tails.remove(&principal);
                }
            }
        }
    }
}

/// A token bucket: refills at the rate, holds at most the burst.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Takes `records` tokens if there are enough. A request larger than the
    /// whole burst is let through when the bucket is full and leaves it in
    /// debt, rather than never.
    fn take(&mut self, records: usize, rate: Rate, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        let burst = f64::from(rate.burst);
        self.tokens = (self.tokens + elapsed * f64::from(rate.per_second)).min(burst);
        // Precision is irrelevant here: counts are far below 2^52.
        #[allow(clippy::cast_precision_loss)]
        let wanted = records as f64;
        if self.tokens >= wanted.min(burst) {
            self.tokens -= wanted;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const RATE: Rate = Rate {
        per_second: 100,
        burst: 10,
    };

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let start = Instant::now();
        let mut bucket = Bucket {
            tokens: 10.0,
            at: start,
        };
        assert!(bucket.take(10, RATE, start));
        assert!(!bucket.take(1, RATE, start));
        // 100/s: one token every 10 ms.
        let later = start + Duration::from_millis(50);
        assert!(bucket.take(5, RATE, later));
        assert!(!bucket.take(1, RATE, later));
    }

    #[test]
    fn a_request_larger_than_the_burst_waits_for_a_full_bucket_and_leaves_debt() {
        let start = Instant::now();
        let mut bucket = Bucket {
            tokens: 5.0,
            at: start,
        };
        assert!(!bucket.take(50, RATE, start));
        let full = start + Duration::from_millis(50);
        assert!(bucket.take(50, RATE, full));
        // 40 in debt: 400 ms before there is one again.
        assert!(!bucket.take(1, RATE, full + Duration::from_millis(390)));
        assert!(bucket.take(1, RATE, full + Duration::from_millis(420)));
    }
}
