//! The ids the gateway assigns: UUIDv7 (RFC 9562), time-ordered.
//!
//! `uuid::Uuid::now_v7` reads the clock and a shared ordering context for
//! every id, an eighth of a packed record's cost. Here the caller gives the
//! time (the call's receive time, read once per call) and each thread keeps
//! its own counter, RFC 9562's method 1 (§6.2): the 12 bits of `rand_a` and
//! the top 30 of `rand_b` are a counter, started at a random value each
//! millisecond and incremented per id, so the ids one thread makes are
//! strictly increasing, and those of one call come in the call's order. The
//! other 32 bits are random for every id, from the thread's CSPRNG.

use std::cell::RefCell;

use rand::{rngs::ThreadRng, Rng as _};
use time::OffsetDateTime;

/// Bits of the counter: `rand_a` (12) and the top of `rand_b` (30).
const COUNTER_BITS: u32 = 42;
const COUNTER_MAX: u64 = (1 << COUNTER_BITS) - 1;

/// One thread's last id (its millisecond and counter) and its random source,
/// held rather than looked up for every id.
struct Ids {
    millis: u64,
    counter: u64,
    rng: ThreadRng,
}

impl Ids {
    /// The next id's millisecond, counter and random bits for the time `now`
    /// (Unix milliseconds): always after the last id.
    fn next(&mut self, now: u64) -> (u64, u64, u32) {
        if now > self.millis {
            // A fresh random start has its top bit clear: room for 2^41 more.
            self.millis = now;
            self.counter = self.rng.next_u64() & (COUNTER_MAX >> 1);
        } else if self.counter < COUNTER_MAX {
            // The same millisecond (or the clock stepped back): stay ordered.
            self.counter += 1;
        } else {
            // The counter ran out: borrow the next millisecond.
            self.millis += 1;
            self.counter = self.rng.next_u64() & (COUNTER_MAX >> 1);
        }
        (self.millis, self.counter, self.rng.next_u32())
    }
}

thread_local! {
    static IDS: RefCell<Ids> = RefCell::new(Ids {
        millis: 0,
        counter: 0,
        rng: rand::rng(),
    });
}

/// A new UUIDv7 for a record received at `at`, hyphenated, lower case.
pub fn new_id(at: OffsetDateTime) -> String {
    let now = u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let (millis, counter, random) = IDS.with_borrow_mut(|ids| ids.next(now));
    layout(millis, counter, random)
}

/// The UUIDv7 of `millis`, `counter` and `random`, hyphenated, lower case.
fn layout(millis: u64, counter: u64, random: u32) -> String {
    let mut bytes = [0u8; 10];
    // rand_a (12 bits; the builder puts the version above them) and rand_b
    // (62 bits; the builder overwrites the top two with the variant).
    bytes[..2].copy_from_slice(&((counter >> 30) as u16).to_be_bytes());
    let rand_b = ((counter & ((1 << 30) - 1)) << 32) | u64::from(random);
    bytes[2..].copy_from_slice(&rand_b.to_be_bytes());
    let uuid = uuid::Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid();
    let mut buf = uuid::Uuid::encode_buffer();
    uuid.hyphenated().encode_lower(&mut buf).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> Ids {
        Ids {
            millis: 0,
            counter: 0,
            rng: rand::rng(),
        }
    }

    #[test]
    fn the_counter_and_random_bits_land_in_rand_a_and_rand_b() {
        let counter = 0x2AB_CDEF_0123; // 42 bits
        let id = layout(1_764_000_000_123, counter, 0xDEAD_BEEF);
        let uuid = uuid::Uuid::parse_str(&id).expect("a UUID");
        assert_eq!(uuid.get_version_num(), 7);
        assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
        let (seconds, nanos) = uuid.get_timestamp().expect("v7").to_unix();
        assert_eq!((seconds, nanos / 1_000_000), (1_764_000_000, 123));
        let bits = uuid.as_u128();
        assert_eq!((bits >> 64) & 0xfff, u128::from(counter >> 30), "rand_a");
        let rand_b = bits & ((1 << 62) - 1);
        assert_eq!(rand_b >> 32, u128::from(counter & ((1 << 30) - 1)));
        assert_eq!(rand_b & 0xffff_ffff, 0xDEAD_BEEF);
    }

    #[test]
    fn ids_of_one_thread_are_strictly_increasing() {
        let mut ids = fresh();
        let at = 1_764_000_000_123;
        let made: Vec<String> = (0..10_000)
            .map(|i| {
                // A millisecond per thousand ids, and once a step back.
                let now = at + i as u64 / 1000 - u64::from(i == 5000);
                let (millis, counter, random) = ids.next(now);
                layout(millis, counter, random)
            })
            .collect();
        assert!(made.windows(2).all(|pair| pair[0] < pair[1]), "in order");
    }

    #[test]
    fn a_counter_that_runs_out_borrows_the_next_millisecond() {
        let mut ids = Ids {
            millis: 1_000,
            counter: COUNTER_MAX,
            ..fresh()
        };
        let (millis, counter, _) = ids.next(1_000);
        assert_eq!(millis, 1_001);
        assert!(counter <= COUNTER_MAX >> 1);
        // The clock catching up with the borrowed millisecond stays ordered.
        let (millis, next, _) = ids.next(1_001);
        assert_eq!((millis, next), (1_001, counter + 1));
    }

    #[test]
    fn new_id_uses_the_given_time() {
        let at = OffsetDateTime::now_utc() + time::Duration::days(1);
        let uuid = uuid::Uuid::parse_str(&new_id(at)).expect("a UUID");
        let (seconds, _) = uuid.get_timestamp().expect("v7").to_unix();
        assert_eq!(seconds, at.unix_timestamp() as u64);
    }
}
