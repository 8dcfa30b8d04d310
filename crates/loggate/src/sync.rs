//! Synchronisation helpers shared by the crate's modules (and open to the
//! bench crate).

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, carrying on with its value if a panic poisoned it.
///
/// Only for locks held across no panic point, or whose updates are single
/// assignments, clones or swaps: a panic elsewhere cannot leave such a value
/// half-written, so refusing it would only turn one failure into many.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
