//! `record --memory`: the allocation sampler on a thread of its own, its
//! events fed into the profile, and the memory part of the summary.

use std::collections::HashMap;
use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use pyrometer_profile::{AllocationSite, Profile};
use pyrometer_sampler::{MemoryEvent, MemorySampler, MemoryStats};

/// Events buffered between the sampler thread and the recording loop.
const CHANNEL_CAPACITY: usize = 1 << 16;

/// A running allocation sampler.
pub struct MemoryRecording {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<MemoryStats>>,
    events: Receiver<MemoryEvent>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl MemoryRecording {
    /// Start sampling one allocation per `mean_bytes`; returns the
    /// environment the launched command needs.
    pub fn start(
        mean_bytes: u64,
        max_depth: usize,
    ) -> Result<(MemoryRecording, Vec<(OsString, OsString)>)> {
        let sampler = MemorySampler::new(mean_bytes, max_depth)
            .context("cannot set up allocation sampling (--memory)")?;
        let env = sampler.environment();
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (tx, events) = sync_channel(CHANNEL_CAPACITY);
        let thread = {
            let (stop, dropped) = (stop.clone(), dropped.clone());
            std::thread::Builder::new()
                .name("pyrometer-memory".into())
                .spawn(move || {
                    sampler.run(&stop, |e| {
                        if let Err(TrySendError::Full(_)) = tx.try_send(e) {
                            dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
                .context("cannot start the allocation sampler thread")?
        };
        Ok((
            MemoryRecording {
                stop,
                thread: Some(thread),
                events,
                dropped,
            },
            env,
        ))
    }

    /// Move the events read so far into the profile.
    pub fn drain(&self, profile: &mut Profile) {
        while let Ok(e) = self.events.try_recv() {
            profile.add_memory_event(&e);
        }
    }

    /// Stop, move the last events into the profile, close its series.
    pub fn finish(mut self, profile: &mut Profile) -> MemoryStats {
        self.stop.store(true, Ordering::SeqCst);
        let stats = self
            .thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        self.drain(profile);
        let end = profile.meta.duration;
        let a = profile.allocations_mut();
        a.finish(end);
        a.untracked_blocks += stats.hook.untracked_blocks + self.dropped.load(Ordering::Relaxed);
        stats
    }
}

impl Drop for MemoryRecording {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// `function (file:line)` of a site's innermost frame.
pub fn site_line(profile: &Profile, site: &AllocationSite) -> String {
    innermost(profile, site, |f| f.line)
}

/// `function (file:first line)` of a site's innermost frame: the function,
/// whatever line of it allocated.
pub fn site_function(profile: &Profile, site: &AllocationSite) -> String {
    innermost(profile, site, |f| f.first_line)
}

/// `function (file:N)` of a site's innermost frame, N chosen by `line_of`.
fn innermost(
    profile: &Profile,
    site: &AllocationSite,
    line_of: impl Fn(&pyrometer_profile::FrameInfo) -> i32,
) -> String {
    match profile.stack_frames(site.stack).last() {
        Some(f) => {
            let f = profile.frame(*f);
            format!(
                "{} ({}:{})",
                profile.str(f.name),
                profile.str(f.filename),
                line_of(f)
            )
        }
        None => "(stack not read)".to_string(),
    }
}

fn mb(bytes: f64) -> f64 {
    bytes / 1e6
}

fn print_table(title: &str, rows: HashMap<String, (f64, f64)>, total: f64, secs: f64) {
    let mut rows: Vec<_> = rows.into_iter().collect();
    rows.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    eprintln!("  {title}");
    eprintln!(
        "    {:>9} {:>6} {:>8} {:>9}  site",
        "alloc MB", "%", "MB/s", "live MB"
    );
    for (name, (alloc, live)) in rows.iter().take(10) {
        eprintln!(
            "    {:>9.1} {:>5.1}% {:>8.2} {:>9.1}  {}",
            mb(*alloc),
            100.0 * alloc / total.max(1e-9),
            mb(*alloc) / secs,
            mb(*live),
            crate::output::terminal_safe(name)
        );
    }
}

/// The memory part of the summary: allocated bytes by line, function and
/// endpoint, and leak candidates.
pub fn print_summary(profile: &Profile, stats: &MemoryStats) {
    let a = profile.allocations();
    let secs = profile.meta.duration.as_secs_f64().max(1e-9);
    let total = a.total_bytes();
    let live: f64 = a.sites().map(|(_, s)| s.live_bytes).sum();
    eprintln!(
        "  memory (one sample per {} bytes allocated on average): {:.1} MB allocated ({:.2} MB/s), {:.1} MB of sampled blocks live at the end",
        a.mean_bytes,
        mb(total),
        mb(total) / secs,
        mb(live)
    );
    eprintln!(
        "    {} sampled allocations, {} attributed to a Python stack, {} on threads running no Python code, {} frees; {} processes hooked; lost: {} ring full, {} before the interpreter was located, {} with unreadable code objects, {} untracked blocks",
        stats.allocations,
        stats.attributed,
        stats.native,
        stats.frees,
        stats.hook.hooked_processes,
        stats.hook.dropped_full,
        stats.hook.no_recipe,
        stats.unresolved,
        a.untracked_blocks
    );
    if stats.allocations > 0 {
        eprintln!(
            "    stacks walked in the target (it never waits); per sampled allocation pyrometer handled it {:.0} µs later (mean) and spent {:.0} µs resolving it",
            stats.notice_ns as f64 / stats.allocations as f64 / 1e3,
            stats.read_ns as f64 / stats.allocations as f64 / 1e3
        );
    }
    if total <= 0.0 {
        return;
    }
    let procs: Vec<String> = a
        .by_process
        .iter()
        .take(32)
        .map(|(pid, b)| format!("{pid} {:.1} MB", mb(*b)))
        .collect();
    eprintln!(
        "    allocated by process ({}): {}",
        a.by_process.len(),
        procs.join(", ")
    );
    let mut by_line: HashMap<String, (f64, f64)> = HashMap::new();
    let mut by_function: HashMap<String, (f64, f64)> = HashMap::new();
    let mut by_endpoint: HashMap<String, (f64, f64)> = HashMap::new();
    for (site, s) in a.sites() {
        let add = |m: &mut HashMap<String, (f64, f64)>, k: String| {
            let e = m.entry(k).or_default();
            e.0 += s.alloc_bytes;
            e.1 += s.live_bytes;
        };
        add(&mut by_line, site_line(profile, site));
        add(&mut by_function, site_function(profile, site));
        if let Some(ep) = site.endpoint {
            add(&mut by_endpoint, profile.str(ep).to_string());
        }
    }
    print_table("allocated by line:", by_line, total, secs);
    print_table("allocated by function:", by_function, total, secs);
    if !by_endpoint.is_empty() {
        print_table("allocated by endpoint:", by_endpoint, total, secs);
    }
    let leaks = a.leak_candidates();
    if leaks.is_empty() {
        eprintln!("  leak candidates: none (no site's live bytes grew steadily)");
    } else {
        eprintln!("  leak candidates (live bytes growing steadily):");
        eprintln!(
            "    {:>5} {:>9} {:>10}  site",
            "score", "live MB", "growth/s"
        );
        for c in leaks.iter().take(10) {
            eprintln!(
                "    {:>5.2} {:>9.1} {:>8.2}MB  {}",
                c.score,
                mb(c.live_bytes),
                mb(c.growth_per_sec),
                crate::output::terminal_safe(&site_line(profile, &c.site))
            );
        }
    }
}
