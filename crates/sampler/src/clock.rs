//! A timer that does not lie: ticks on an absolute schedule (start + k·period)
//! with a little random jitter against aliasing with periodic work in the
//! target; when sampling falls behind, missed ticks are skipped and counted,
//! never replayed in a burst.

use std::time::{Duration, Instant};

use rand::Rng;

/// One tick of the clock.
#[derive(Debug, Clone, Copy)]
pub struct Tick {
    /// Index of the tick on the schedule.
    pub index: u64,
    /// When it was due.
    pub due: Instant,
}

/// The sampling clock.
#[derive(Debug)]
pub struct Clock {
    start: Instant,
    period: Duration,
    next_index: u64,
    jitter: f64,
    /// Ticks skipped because the sampler was late.
    pub late_ticks: u64,
    /// Ticks delivered.
    pub ticks: u64,
}

impl Clock {
    /// A clock ticking `rate` times per second from now.
    pub fn new(rate: f64) -> Self {
        let rate = rate.clamp(0.001, 1_000_000.0);
        // The kernel's default timer slack (50 µs) would make every sleep
        // late at high rates; ask for precise wake-ups.
        // SAFETY: PR_SET_TIMERSLACK takes a plain integer.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
        Clock {
            start: Instant::now(),
            period: Duration::from_secs_f64(1.0 / rate),
            next_index: 0,
            jitter: 0.1,
            late_ticks: 0,
            ticks: 0,
        }
    }

    /// When the clock started.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// The nominal period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Wait for the next tick, or return `None` if `deadline` comes first or
    /// `stop()` says so while waiting.
    pub fn wait(&mut self, deadline: Option<Instant>, stop: impl Fn() -> bool) -> Option<Tick> {
        let now = Instant::now();
        let due = self.due(self.next_index);
        // Late by more than a period: skip to the latest tick already due
        // and deliver it at once. Waiting for the next one instead would
        // spin (above 2 kHz) through time the sampler cannot keep up with.
        if now > due + self.period {
            let elapsed = now.duration_since(self.start).as_secs_f64();
            let skip_to = (elapsed / self.period.as_secs_f64()).floor() as u64;
            if skip_to > self.next_index {
                self.late_ticks += skip_to - self.next_index;
                self.next_index = skip_to;
            }
            if deadline.is_some_and(|d| now >= d) || stop() {
                return None;
            }
            return Some(self.deliver());
        }
        // Jitter of up to ±10 % of a period around the due time.
        let j: f64 = self.jitter * rand::thread_rng().gen_range(-1.0..1.0);
        let shift = self.period.mul_f64(j.abs());
        let target = if j >= 0.0 {
            due + shift
        } else {
            due.checked_sub(shift).unwrap_or(due)
        };
        if let Some(d) = deadline {
            if target > d {
                sleep_until(d, false, &stop);
                return None;
            }
        }
        // Spinning costs CPU: only above 2 kHz, where sleeping cannot keep up.
        let spin = self.period < Duration::from_micros(500);
        if !sleep_until(target, spin, &stop) {
            return None;
        }
        Some(self.deliver())
    }

    fn deliver(&mut self) -> Tick {
        let tick = Tick {
            index: self.next_index,
            due: self.due(self.next_index),
        };
        self.next_index += 1;
        self.ticks += 1;
        tick
    }

    fn due(&self, index: u64) -> Instant {
        self.start + self.period.mul_f64(index as f64)
    }
}

/// Waits shorter than this are spun rather than slept: a sleep's wake-up
/// latency (tens of µs) would otherwise cap the rate near 10 kHz.
const SPIN_BELOW: Duration = Duration::from_micros(80);

/// Sleep until `t`, waking at least every 50 ms to check `stop`. Returns
/// false if stopped.
fn sleep_until(t: Instant, spin: bool, stop: &impl Fn() -> bool) -> bool {
    loop {
        if stop() {
            return false;
        }
        let now = Instant::now();
        if now >= t {
            return true;
        }
        let left = t - now;
        if !spin {
            std::thread::sleep(left.min(Duration::from_millis(50)));
            continue;
        }
        if left < SPIN_BELOW {
            while Instant::now() < t {
                std::hint::spin_loop();
            }
            return true;
        }
        std::thread::sleep((left - SPIN_BELOW / 2).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_missed_ticks_instead_of_bursting() {
        let mut c = Clock::new(1000.0);
        assert!(c.wait(None, || false).is_some());
        std::thread::sleep(Duration::from_millis(30));
        let t = c.wait(None, || false).unwrap();
        assert!(c.late_ticks >= 20, "late ticks {}", c.late_ticks);
        assert!(t.index >= 25);
        // The next tick is on schedule, not immediately.
        let before = Instant::now();
        c.wait(None, || false).unwrap();
        assert!(before.elapsed() < Duration::from_millis(5));
    }

    #[test]
    fn a_late_tick_is_delivered_at_once_not_waited_for() {
        // At 100 kHz a 30 ms stall is thousands of periods late: the tick
        // comes back at once (the latest one already due), with no wait
        // for the next slot, and the missed ones are counted.
        let mut c = Clock::new(100_000.0);
        assert!(c.wait(None, || false).is_some());
        std::thread::sleep(Duration::from_millis(30));
        let before = Instant::now();
        let t = c.wait(None, || false).unwrap();
        let waited = before.elapsed();
        // Due by when it was delivered (a tick may fall due during the call).
        assert!(
            t.due <= before + waited,
            "delivered a tick that was not due yet"
        );
        assert!(t.index >= 2_900, "index {}", t.index);
        assert_eq!(c.late_ticks, t.index - 1);
        // A wait for the next slot would have been up to a period (10 µs)
        // of spinning; allow for a preempted test thread.
        assert!(waited < Duration::from_millis(5), "waited {waited:?}");
        // A late tick still honours the deadline.
        let mut d = Clock::new(100_000.0);
        std::thread::sleep(Duration::from_millis(2));
        assert!(d.wait(Some(Instant::now()), || false).is_none());
    }

    #[test]
    fn stops_at_deadline() {
        let mut c = Clock::new(10.0);
        let deadline = Instant::now() + Duration::from_millis(120);
        let mut n = 0;
        while c.wait(Some(deadline), || false).is_some() {
            n += 1;
        }
        assert!((1..=3).contains(&n), "{n} ticks");
        assert!(Instant::now() >= deadline);
    }
}
