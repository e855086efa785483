//! What a forked child inherits and must fix: locks that threads gone with
//! the fork may have held. The engine calls this from the at-fork hook.

use parking_lot::Mutex;

/// Unlocks `lock` if a thread that did not survive `fork()` held it.
pub fn release_in_child<T>(lock: &Mutex<T>) {
    if lock.is_locked() {
        // SAFETY: in a forked child only the forking thread exists, and it
        // holds none of these locks, so the holder is gone for good.
        unsafe { lock.force_unlock() };
    }
}
