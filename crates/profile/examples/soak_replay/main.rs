//! Soak replay: feeds a long stream of service-shaped samples into the
//! aggregated profile at full speed, as `record` does for each sample, so
//! that 24 hours of 1 kHz samples (86.4 M per busy thread) go through the
//! aggregation in minutes. Prints one JSON line of progress (samples so
//! far, entries of each table) every `--every` samples; bench/soak.py reads
//! the process's RSS and CPU time from /proc alongside.
//!
//! Usage: soak_replay [--samples N] [--every N] [--rate HZ]

use std::io::Write;
use std::time::Duration;

use pyrometer_profile::Profile;

mod synthetic;

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let total = arg(&args, "--samples", 86_400_000);
    let every = arg(&args, "--every", 1_000_000).max(1);
    let rate = arg(&args, "--rate", 1000).max(1);
    let period = Duration::from_nanos(1_000_000_000 / rate);
    let mut stream = synthetic::ServiceStream::new(0x5eed);
    let mut profile = Profile::new();
    profile.set_period(period);
    let mut tick = Vec::new();
    let (mut done, mut next_report) = (0u64, every);
    let stdout = std::io::stdout();
    while done < total {
        stream.next_tick(period, &mut tick);
        for s in &tick {
            profile.add_sample(s);
        }
        done += tick.len() as u64;
        if done >= next_report || done >= total {
            next_report += every;
            let t = profile.table_sizes();
            let mut out = stdout.lock();
            let _ = writeln!(
                out,
                "{{\"samples\":{done},\"paths_generated\":{},\"strings\":{},\"frames\":{},\"frames_by_code\":{},\"stacks\":{},\"threads\":{},\"counts\":{},\"last_paths\":{},\"open_requests\":{},\"endpoints\":{},\"requests_kept\":{},\"timeline\":{},\"activity_buckets\":{}}}",
                stream.paths_generated, t.strings, t.frames, t.frames_by_code, t.stacks, t.threads,
                t.counts, t.last_paths, t.open_requests, t.endpoints, t.requests_kept, t.timeline,
                t.activity_buckets
            );
            let _ = out.flush();
        }
    }
    profile.finish();
    assert_eq!(profile.total_samples(), done, "every sample was counted");
}
