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
    let (millis, counter, random) = IDS.with_borrow_mut(|ids| {
        // A fresh random start has its top bit clear: room for 2^41 more.
        if now > ids.millis {
            ids.millis = now;
            ids.counter = ids.rng.next_u64() & (COUNTER_MAX >> 1);
        } else if ids.counter < COUNTER_MAX {
            // The same millisecond (or the clock stepped back): stay ordered.
            ids.counter += 1;
        } else {
            // The counter ran out: borrow the next millisecond.
            ids.millis += 1;
            ids.counter = ids.rng.next_u64() & (COUNTER_MAX >> 1);
        }
        (ids.millis, ids.counter, ids.rng.next_u32())
    });
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

    #[test]
    fn ids_are_v7_with_the_given_time_and_strictly_increasing() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_764_000_000_123_456_789).unwrap();
        let ids: Vec<String> = (0..10_000).map(|_| new_id(at)).collect();
        for id in &ids {
            let uuid = uuid::Uuid::parse_str(id).expect("a UUID");
            assert_eq!(uuid.get_version_num(), 7);
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
            let (seconds, nanos) = uuid.get_timestamp().expect("v7").to_unix();
            assert_eq!((seconds, nanos / 1_000_000), (1_764_000_000, 123));
        }
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "in order");
    }

    #[test]
    fn a_later_millisecond_sorts_after_and_an_earlier_one_keeps_the_order() {
        let at = OffsetDateTime::from_unix_timestamp(1_764_000_000).unwrap();
        let first = new_id(at);
        let later = new_id(at + time::Duration::milliseconds(1));
        assert!(first < later);
        // A clock stepped back: still after the last id.
        let stepped_back = new_id(at);
        assert!(later < stepped_back);
    }

    #[test]
    fn ids_from_two_threads_do_not_collide() {
        let at = OffsetDateTime::now_utc();
        let make = move || (0..20_000).map(|_| new_id(at)).collect::<Vec<_>>();
        let other = std::thread::spawn(make);
        let mut all = make();
        all.extend(other.join().unwrap());
        let count = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), count);
    }
}
