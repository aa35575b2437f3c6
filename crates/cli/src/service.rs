//! What `record` does for long-running services while it samples:
//! rewriting the output every `--write-every` seconds or on SIGUSR1 (on a
//! thread of its own, atomically), and pushing each interval's samples to
//! Pyroscope (`--pyroscope`, on the pusher's thread). The sampling loop
//! only clones or hands over profiles; it never waits on a disk or the
//! network.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use pyrometer_outputs::pyroscope::{
    check_url, parse_tags, ProfileKind, PushStats, Pusher, PyroscopeConfig,
};
use pyrometer_profile::Profile;
use pyrometer_sampler::Sample;

use crate::output::write_atomic;
use crate::service_args::ServiceArgs;

/// How long the end of a recording waits for the last pushes.
pub const PUSH_FLUSH_WAIT: Duration = Duration::from_secs(5);

/// Set by SIGUSR1: write the output now.
static WRITE_NOW: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigusr1(_: libc::c_int) {
    WRITE_NOW.store(true, Ordering::SeqCst);
}

/// Make SIGUSR1 request a rewrite (instead of killing pyrometer).
pub fn install_sigusr1() -> Result<()> {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    let previous = unsafe {
        libc::signal(
            libc::SIGUSR1,
            on_sigusr1 as extern "C" fn(libc::c_int) as libc::sighandler_t,
        )
    };
    if previous == libc::SIG_ERR {
        bail!("cannot install the SIGUSR1 handler");
    }
    Ok(())
}

/// Renders a profile into the output format.
pub type Render =
    Arc<dyn Fn(&Profile, &mut dyn std::io::Write) -> std::io::Result<()> + Send + Sync>;

/// Facts of the recording so far, for snapshots.
pub struct Progress {
    pub duration: Duration,
    pub ticks: u64,
    pub late_ticks: u64,
    pub errors: u64,
}

/// Counters of the periodic writer.
#[derive(Debug, Default, Clone)]
pub struct WriteStats {
    pub written: u64,
    pub failed: u64,
    pub last_error: Option<String>,
}

struct PeriodicWriter {
    every: Option<Duration>,
    next: Option<Instant>,
    tx: Option<SyncSender<Profile>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<Mutex<WriteStats>>,
}

impl PeriodicWriter {
    fn start(every: Option<Duration>, path: PathBuf, render: Render) -> Result<Self> {
        // One snapshot in flight at most: a slow disk delays rewrites, it
        // never piles up copies of the profile.
        let (tx, rx) = sync_channel::<Profile>(1);
        let stats: Arc<Mutex<WriteStats>> = Arc::default();
        let shared = stats.clone();
        let thread = std::thread::Builder::new()
            .name("periodic-write".into())
            .spawn(move || {
                for snapshot in rx {
                    let result = write_atomic(&path, |w| render(&snapshot, w));
                    let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
                    match result {
                        Ok(()) => s.written += 1,
                        Err(e) => {
                            if s.failed == 0 {
                                eprintln!("pyrometer: warning: periodic write failed: {e:#}");
                            }
                            s.failed += 1;
                            s.last_error = Some(format!("{e:#}"));
                        }
                    }
                }
            })
            .context("cannot start the periodic writer")?;
        Ok(PeriodicWriter {
            every,
            next: every.map(|e| Instant::now() + e),
            tx: Some(tx),
            thread: Some(thread),
            stats,
        })
    }

    fn tick(&mut self, profile: &Profile, progress: &Progress) {
        let now = Instant::now();
        let signalled = WRITE_NOW.load(Ordering::SeqCst);
        let due = self.next.is_some_and(|next| now >= next);
        if !signalled && !due {
            return;
        }
        let Some(tx) = &self.tx else { return };
        let mut snapshot = profile.clone();
        snapshot.meta.duration = progress.duration;
        snapshot.meta.ticks = progress.ticks;
        snapshot.meta.late_ticks = progress.late_ticks;
        snapshot.meta.errors = progress.errors;
        snapshot.finish();
        match tx.try_send(snapshot) {
            Ok(()) => {
                WRITE_NOW.store(false, Ordering::SeqCst);
                if let Some(every) = self.every {
                    self.next = Some(now + every);
                }
            }
            // The writer is busy with the last one: try again next tick.
            Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(_)) => self.tx = None,
        }
    }

    fn finish(mut self) -> WriteStats {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        s.clone()
    }
}

struct Push {
    pusher: Pusher,
    every: Duration,
    rate: f64,
    interval: Profile,
    started: Instant,
    started_wall: SystemTime,
    pushes: u64,
}

impl Push {
    fn fresh(rate: f64) -> Profile {
        let mut p = Profile::new();
        // Intervals are aggregated only: no timeline.
        p.timeline_mut().set_limit(0);
        p.meta.rate = rate;
        p.set_period(Duration::from_secs_f64(1.0 / rate.max(1e-9)));
        p
    }

    fn rotate(&mut self, now: Instant) {
        let mut done = std::mem::replace(&mut self.interval, Push::fresh(self.rate));
        done.meta.start_time = Some(self.started_wall);
        done.meta.duration = now.saturating_duration_since(self.started);
        done.finish();
        self.started = now;
        self.started_wall = SystemTime::now();
        self.pushes += 1;
        self.pusher.push(done);
    }
}

/// What happened besides sampling, for the summary.
pub struct ServiceReport {
    pub writes: WriteStats,
    pub push: Option<(PushStats, u64)>,
}

/// The periodic writer and the Pyroscope pusher of one recording.
pub struct Service {
    writer: PeriodicWriter,
    push: Option<Push>,
}

/// Check the service flags before anything starts.
pub fn validate(args: &ServiceArgs) -> Result<()> {
    // --write-every and --pyroscope-interval are checked by clap (crate::args::seconds).
    if let Some(url) = &args.pyroscope {
        check_url(url)?;
        pyrometer_outputs::pyroscope::check_tls(url, args.pyroscope_ca.as_deref())?;
        parse_tags(&args.tags)?;
        if args.app_name.as_deref().is_none_or(str::is_empty) {
            bail!("--pyroscope needs --app-name NAME (Pyroscope's service_name)");
        }
        if args
            .pyroscope_basic_auth
            .as_deref()
            .is_some_and(|a| !a.contains(':'))
        {
            bail!("--pyroscope-basic-auth must be USER:PASSWORD");
        }
    } else if args.app_name.is_some()
        || args.pyroscope_ca.is_some()
        || !args.tags.is_empty()
        || args.pyroscope_basic_auth.is_some()
        || args.pyroscope_tenant_id.is_some()
    {
        bail!("--app-name, --tag, --pyroscope-basic-auth, --pyroscope-tenant-id and --pyroscope-ca need --pyroscope URL");
    }
    Ok(())
}

impl Service {
    /// Start the writer thread and, with `--pyroscope`, the pusher.
    pub fn start(
        args: &ServiceArgs,
        rate: f64,
        kind: ProfileKind,
        output: PathBuf,
        render: Render,
    ) -> Result<Service> {
        let every = args.write_every.map(Duration::from_secs_f64);
        let writer = PeriodicWriter::start(every, output, render)?;
        let push = match &args.pyroscope {
            None => None,
            Some(url) => {
                let basic_auth = match &args.pyroscope_basic_auth {
                    None => None,
                    Some(a) => match a.split_once(':') {
                        Some((u, p)) => Some((u.to_string(), p.to_string())),
                        None => bail!("--pyroscope-basic-auth must be USER:PASSWORD"),
                    },
                };
                let config = PyroscopeConfig {
                    url: url.clone(),
                    ca_file: args.pyroscope_ca.clone(),
                    app_name: args.app_name.clone().unwrap_or_default(),
                    tags: parse_tags(&args.tags)?,
                    basic_auth,
                    tenant_id: args.pyroscope_tenant_id.clone(),
                    kind,
                };
                let pusher = Pusher::start(config)?;
                Some(Push {
                    pusher,
                    every: Duration::from_secs_f64(args.pyroscope_interval),
                    rate,
                    interval: Push::fresh(rate),
                    started: Instant::now(),
                    started_wall: SystemTime::now(),
                    pushes: 0,
                })
            }
        };
        Ok(Service { writer, push })
    }

    /// A sample kept by the recording.
    pub fn observe(&mut self, sample: &Sample) {
        if let Some(p) = &mut self.push {
            p.interval.add_sample(sample);
        }
    }

    /// Called once per tick: rewrite or push when it is time.
    pub fn tick(&mut self, profile: &Profile, progress: &Progress) {
        self.writer.tick(profile, progress);
        if let Some(p) = &mut self.push {
            let now = Instant::now();
            if now.saturating_duration_since(p.started) >= p.every {
                p.rotate(now);
            }
        }
    }

    /// Push the last partial interval (bounded wait) and stop the writer.
    pub fn finish(self) -> ServiceReport {
        let writes = self.writer.finish();
        let push = self.push.map(|mut p| {
            if p.interval.total_samples() > 0 {
                p.rotate(Instant::now());
            }
            let pushes = p.pushes;
            (p.pusher.finish(PUSH_FLUSH_WAIT), pushes)
        });
        ServiceReport { writes, push }
    }
}

impl ServiceReport {
    /// Lines of the end-of-run summary.
    pub fn print(&self, periodic: bool) {
        let w = &self.writes;
        if periodic || w.written > 0 || w.failed > 0 {
            let mut line = format!("  periodic writes: {} while recording", w.written);
            if w.failed > 0 {
                line.push_str(&format!(
                    ", {} failed (last: {})",
                    w.failed,
                    w.last_error.as_deref().unwrap_or("?")
                ));
            }
            eprintln!("{line}");
        }
        if let Some((s, intervals)) = &self.push {
            eprintln!(
                "  pyroscope: {} of {intervals} intervals pushed; {} failed attempts (retried), {} refused, {} dropped (queue full or too old), {} unsent at exit",
                s.pushed, s.failed_attempts, s.rejected, s.dropped, s.unsent
            );
            if let Some(e) = &s.last_error {
                eprintln!(
                    "  pyroscope: last error: {}",
                    crate::output::terminal_safe(e)
                );
            }
        }
    }
}
