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

/// A value replaced whole while readers keep using the one they took: the
/// auth file's principals and the TLS configuration, both swapped on SIGHUP.
#[derive(Debug)]
pub struct Swappable<T>(std::sync::RwLock<std::sync::Arc<T>>);

impl<T> Swappable<T> {
    pub fn new(value: T) -> Swappable<T> {
        Swappable(std::sync::RwLock::new(std::sync::Arc::new(value)))
    }

    /// The value in force now; a later `replace` does not change it.
    pub fn current(&self) -> std::sync::Arc<T> {
        // Only a clone happens under the lock: poisoning cannot leave it
        // half-written (see `lock`).
        std::sync::Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Puts `value` in force for every later `current`.
    pub fn replace(&self, value: T) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = std::sync::Arc::new(value);
    }
}
