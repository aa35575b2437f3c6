//! Helpers shared by this crate's tests of real threads.

use std::time::{Duration, Instant};

/// Waits for `cond` (re-evaluated) with a deadline: robust on a loaded machine.
pub fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}
