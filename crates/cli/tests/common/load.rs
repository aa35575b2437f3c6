//! What a target (or pyrometer) actually got from a loaded machine, so that
//! the accuracy tests can size their runs and bounds by it instead of by
//! wall-clock time: on the shared 2-core machine a CPU-bound target may get
//! 5–15 % of a CPU, and pyrometer's own wake-ups may be late.
//!
//! * CPU time from `/proc/PID/stat` (user + system, clock ticks);
//! * scheduler statistics from `/proc/PID/task/TID/schedstat` (time on a
//!   CPU, time waiting in the run queue, times scheduled in);
//! * the tick accounting of a `record` summary.

use std::time::{Duration, Instant};

/// The fields of a `/proc/.../stat` line after the command name, from the
/// state (field 3 of proc(5)) on: the name may hold spaces and parentheses.
fn stat_fields(path: &str) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(path).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// CPU time (user + system) process `pid` has used so far, all its
/// threads, in seconds; `None` once it is gone.
pub fn cpu_seconds(pid: i32) -> Option<f64> {
    let f = stat_fields(&format!("/proc/{pid}/stat"))?;
    // utime and stime are fields 14 and 15; the state (field 3) is f[0].
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks_per_second())
}

/// Wait until process `pid` has used `need` seconds of CPU beyond `from`
/// (a [`cpu_seconds`] reading), or until `deadline` passes, or it exits;
/// returns the CPU seconds it used beyond `from` and the wall time waited.
pub fn wait_for_cpu(pid: i32, from: f64, need: f64, deadline: Duration) -> (f64, Duration) {
    let t0 = Instant::now();
    let mut used = 0.0;
    while t0.elapsed() < deadline {
        match cpu_seconds(pid) {
            Some(now) => used = now - from,
            None => break,
        }
        if used >= need {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (used, t0.elapsed())
}

/// One thread's scheduler statistics (`/proc/PID/task/TID/schedstat`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SchedStat {
    /// Time spent on a CPU.
    pub on_cpu: Duration,
    /// Time spent runnable, waiting in a run queue.
    pub waiting: Duration,
    /// Times it was scheduled in.
    pub slices: u64,
}

impl SchedStat {
    pub fn read(pid: i32, tid: i32) -> Option<SchedStat> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?;
        let mut it = text.split_whitespace().map(|v| v.parse::<u64>().ok());
        Some(SchedStat {
            on_cpu: Duration::from_nanos(it.next()??),
            waiting: Duration::from_nanos(it.next()??),
            slices: it.next()??,
        })
    }

    /// What changed since `earlier`.
    pub fn since(&self, earlier: &SchedStat) -> SchedStat {
        SchedStat {
            on_cpu: self.on_cpu.saturating_sub(earlier.on_cpu),
            waiting: self.waiting.saturating_sub(earlier.waiting),
            slices: self.slices.saturating_sub(earlier.slices),
        }
    }

    /// The share of `wall` the thread was in state `R` (on a CPU or in a
    /// run queue): what a poll of its `stat` sees as running.
    pub fn runnable_share(&self, wall: Duration) -> f64 {
        ((self.on_cpu + self.waiting).as_secs_f64() / wall.as_secs_f64().max(1e-9)).min(1.0)
    }
}

/// The host TID of the thread of `pid` whose TID in the innermost PID
/// namespace is `ns_tid` (the last `NSpid:` field of its status): the
/// kernel's own answer, independent of pyrometer's translation.
pub fn host_tid_of_ns_tid(pid: i32, ns_tid: i32) -> Option<i32> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let inner = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|v| v.split_whitespace().last()?.parse::<i32>().ok());
        if inner == Some(ns_tid) {
            return task.file_name().to_str()?.parse().ok();
        }
    }
    None
}

/// `/proc/loadavg`'s first three fields, for messages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The tick accounting of a `record` summary:
/// `stopped: ...; 2.50 s, 498 ticks at 199.2 Hz (requested 200 Hz, 2 late
/// ticks skipped)` and `samples: N thread samples; errors: E (...), T
/// thread samples dropped as torn`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TickSummary {
    pub seconds: f64,
    pub ticks: u64,
    pub late: u64,
    pub requested_hz: f64,
    pub samples: u64,
    pub errors: u64,
    pub torn: u64,
}

impl TickSummary {
    pub fn parse(stderr: &str) -> Option<TickSummary> {
        let line = stderr
            .lines()
            .find(|l| l.trim_start().starts_with("stopped: "))?;
        let (_, rest) = line.split_once("; ")?;
        let mut words = rest.split_whitespace();
        let seconds = words.next()?.parse().ok()?;
        let _s = words.next()?;
        let ticks = words.next()?.parse().ok()?;
        let requested_hz = rest
            .split_once("(requested ")?
            .1
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        let late = rest
            .split_once(" Hz, ")?
            .1
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        let (samples, errors, torn) = super::summary_counts(stderr)?;
        Some(TickSummary {
            seconds,
            ticks,
            late,
            requested_hz,
            samples,
            errors,
            torn,
        })
    }

    /// Every tick of the schedule is accounted for: delivered or skipped as
    /// late (a sampler that silently sampled at a lower rate fails this,
    /// however loaded the machine).
    pub fn ticks_accounted(&self) -> Result<(), String> {
        let due = self.requested_hz * self.seconds;
        let seen = (self.ticks + self.late) as f64;
        // Slack for the stretch after the last tick (the stop, a stall of
        // pyrometer itself before it reads the clock).
        if seen >= 0.95 * due - 10.0 && seen <= 1.02 * due + 5.0 {
            Ok(())
        } else {
            Err(format!(
                "{} ticks + {} late in {:.2} s at {} Hz: {due:.0} due",
                self.ticks, self.late, self.seconds, self.requested_hz
            ))
        }
    }

    /// A target whose `threads` threads are always busy yields a sample of
    /// each at every delivered tick, but for failed or torn reads (counted):
    /// `samples` is what the output shows of them (the summary's own count
    /// also has the idle threads' samples).
    pub fn every_tick_sampled(&self, samples: u64, threads: u64) -> Result<(), String> {
        let want = self.ticks.saturating_mul(threads);
        let got = samples + self.torn + self.errors.saturating_mul(threads);
        if got * 100 >= want * 95 {
            Ok(())
        } else {
            Err(format!(
                "{samples} samples shown ({} torn, {} failed ticks) for {} ticks of {threads} busy thread(s)",
                self.torn, self.errors, self.ticks
            ))
        }
    }
}
