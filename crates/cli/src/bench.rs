//! `pyrometer bench-sample` (hidden): sample back to back and report the
//! cost of one sample, in CPU time and in reads of the target. Used by
//! `bench/` to compare with other profilers.
//!
//! `pyrometer bench-timer` (hidden): tick the sampling clock of `record` at
//! a rate and do nothing else: the CPU a tick costs before any sampling
//! (the sleep and the wake-up, which on a virtual machine are tens of µs).

use std::time::{Duration, Instant};

use anyhow::Result;
use pyrometer_profile::Profile;
use serde_json::json;

use crate::args::{BenchArgs, BenchTimerArgs};
use crate::attach::attach_pid;
use crate::record::own_cpu_time;

pub fn run(args: BenchArgs) -> Result<()> {
    let mut target = attach_pid(args.pid)?;
    let mut profile = Profile::new();
    // Warm the code-object cache as a long recording would be.
    for _ in 0..100 {
        let _ = target.sample(Duration::ZERO);
    }
    let before = target.cache_stats();
    let stat_before = target.stats.clone();
    let cpu0 = own_cpu_time();
    let t0 = Instant::now();
    let mut frames = 0usize;
    let mut threads = 0usize;
    for _ in 0..args.samples {
        if let Ok(samples) = target.sample(t0.elapsed()) {
            threads += samples.len();
            for s in &samples {
                frames += s.frames.len();
                if args.aggregate {
                    profile.add_sample(s);
                }
            }
        }
    }
    let wall = t0.elapsed();
    let cpu = own_cpu_time().saturating_sub(cpu0);
    // Memory readings (RSS + pymalloc heap), as record takes every 100 ms.
    let memory_readings = (args.samples / 4).max(1);
    let mcpu0 = own_cpu_time();
    let mt0 = Instant::now();
    for _ in 0..memory_readings {
        std::hint::black_box(target.read_memory(mt0.elapsed()));
    }
    let memory_wall = mt0.elapsed();
    let memory_cpu = own_cpu_time().saturating_sub(mcpu0);
    let after = target.cache_stats();
    let n = args.samples.max(1) as f64;
    let stats = &target.stats;
    let doc = json!({
        "samples": args.samples,
        "thread_samples": threads,
        "mean_frames": frames as f64 / threads.max(1) as f64,
        "wall_us_per_sample": wall.as_secs_f64() * 1e6 / n,
        "cpu_us_per_sample": cpu.as_secs_f64() * 1e6 / n,
        "pages_prefetched_per_sample": (after.prefetched - before.prefetched) as f64 / n,
        "bytes_prefetched_per_sample": (after.prefetched_bytes - before.prefetched_bytes) as f64 / n,
        "memory_reads_per_sample": (after.page_fetches + after.direct_reads
            - before.page_fetches - before.direct_reads) as f64 / n,
        "torn_threads": stats.torn_threads - stat_before.torn_threads,
        "torn_ticks": stats.torn - stat_before.torn,
        "reused_thread_samples": stats.reused_samples - stat_before.reused_samples,
        "unread_ticks": stats.unread_ticks - stat_before.unread_ticks,
        "memory_readings": memory_readings,
        "memory_reading_wall_us": memory_wall.as_secs_f64() * 1e6 / f64::from(memory_readings),
        "memory_reading_cpu_us": memory_cpu.as_secs_f64() * 1e6 / f64::from(memory_readings),
    });
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}

pub fn run_timer(args: BenchTimerArgs) -> Result<()> {
    anyhow::ensure!(
        args.rate > 0
            && args.duration.is_finite()
            && args.duration > 0.0
            && args.duration <= 3600.0,
        "--rate must be positive and --duration between 0 and 3600 seconds"
    );
    let cpu0 = own_cpu_time();
    let mut clock = pyrometer_sampler::Clock::new(f64::from(args.rate));
    let deadline = clock.start() + Duration::from_secs_f64(args.duration);
    while let Some(tick) = clock.wait(Some(deadline), || false) {
        std::hint::black_box(tick);
    }
    let cpu = own_cpu_time().saturating_sub(cpu0);
    let ticks = clock.ticks.max(1) as f64;
    let doc = json!({
        "rate": args.rate,
        "ticks": clock.ticks,
        "late_ticks": clock.late_ticks,
        "cpu_us_per_tick": cpu.as_secs_f64() * 1e6 / ticks,
    });
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}
