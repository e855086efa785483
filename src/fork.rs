//! What a forked child inherits and must fix: locks that threads gone with
//! the fork may have held, and the parent's threads still queued in
//! `parking_lot`'s parking table as waiters of our locks and condition
//! variables. A notify or an unlock in the child could hand a lock to such a
//! vanished waiter, which would never let it go. The engine calls these from
//! the at-fork hook, on the only thread the child has.

use parking_lot::{Condvar, Mutex};
use parking_lot_core::{unpark_all, DEFAULT_UNPARK_TOKEN};

/// Unlocks `lock` if a thread that did not survive `fork()` held it, and
/// drops the vanished threads that waited for it.
pub fn release_in_child<T>(lock: &Mutex<T>) {
    // SAFETY: in a forked child only the forking thread exists, and it
    // holds none of these locks, so the holder is gone for good; waking the
    // parked (vanished) waiters only takes them off the parking table.
    unsafe {
        unpark_all(lock.raw() as *const _ as usize, DEFAULT_UNPARK_TOKEN);
        if lock.is_locked() {
            lock.force_unlock();
        }
    }
}

/// Drops the vanished threads that waited on `condvar`.
pub fn forget_waiters(condvar: &Condvar) {
    // SAFETY: a condition variable parks its waiters under its own address;
    // waking them only takes them off the parking table (no thread is left
    // to run).
    unsafe { unpark_all(condvar as *const Condvar as usize, DEFAULT_UNPARK_TOKEN) };
}
