//! `pyrometer record`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use pyrometer_outputs::{write_flamegraph, write_folded, write_speedscope, StackOptions};
use pyrometer_profile::Profile;
use pyrometer_sampler::{Clock, Session};

use crate::args::{Format, GroupBy, Mode, RecordArgs};
use crate::attach::{attach_pid, Launched};
use crate::output::{check_writable, describe, write_atomic, write_new};
use crate::service::{Progress, Service};
use pyrometer_outputs::pyroscope::ProfileKind;
use std::sync::Arc;

/// Set by Ctrl-C / SIGTERM.
static STOP: AtomicBool = AtomicBool::new(false);
/// The command launched by `record -- CMD`, once started (0: none).
static LAUNCHED_PID: AtomicI32 = AtomicI32::new(0);

/// The first Ctrl-C / SIGTERM ends sampling and writes the output; a second
/// one exits at once, should that writing hang (a FIFO nobody reads).
fn on_interrupt() {
    if !STOP.swap(true, Ordering::SeqCst) {
        return;
    }
    let child = LAUNCHED_PID.load(Ordering::SeqCst);
    if child > 0 {
        // SAFETY: signalling the command this process launched.
        unsafe { libc::kill(child, libc::SIGTERM) };
    }
    eprintln!("pyrometer: interrupted again; exiting without writing the output");
    std::process::exit(crate::exit::INTERRUPTED);
}

pub fn run(args: RecordArgs) -> Result<()> {
    // --rate, --duration and the --pid/command choice are checked by clap
    // (exit code 2).
    crate::service::validate(&args.service).map_err(crate::exit::usage)?;
    if crate::report::format_needs_timeline(args.format) && args.service.timeline_samples == 0 {
        return Err(crate::exit::usage(anyhow!(
            "-f chrometrace draws the timeline: --timeline-samples must be at least 1"
        )));
    }
    let explicit_output = args.output.clone();
    if let Some(path) = &explicit_output {
        check_writable(path)?;
    } else {
        check_writable(&PathBuf::from("pyrometer-probe"))
            .context("the current directory is not writable; pass -o PATH")?;
    }
    ctrlc::set_handler(on_interrupt).context("cannot install the Ctrl-C handler")?;
    crate::service::install_sigusr1()?;

    if args.memory && args.pid.is_some() {
        return Err(crate::exit::usage(anyhow!(
            "--memory needs the command to launch: pyrometer record --memory [OPTIONS] -- CMD \
             (it preloads an allocation hook, which a running process cannot get)"
        )));
    }
    let (memory, memory_env) = if args.memory {
        let (m, env) = crate::memory::MemoryRecording::start(
            u64::from(args.memory_sample_bytes),
            args.max_depth as usize,
        )?;
        (Some(m), env)
    } else {
        (None, Vec::new())
    };
    let (mut session, mut launched) = match args.pid {
        Some(pid) => (Session::new(attach_pid(pid)?, args.subprocesses), None),
        None => {
            let (root, l) = crate::attach::launch_with_env(
                &args.command,
                args.subprocesses,
                false,
                &memory_env,
            )?;
            LAUNCHED_PID.store(l.child.id() as i32, Ordering::SeqCst);
            let session = match root {
                Some(t) => Session::new(t, args.subprocesses),
                None => Session::children_of(l.child.id() as i32),
            };
            (session, Some(l))
        }
    };
    session.set_blocking(args.blocking);
    // Idle threads' samples are dropped from outputs unless --idle: do not
    // spend reads walking their stacks.
    // Saved profiles (pprof) keep idle stacks, so `report --idle` can show
    // them later.
    session.set_idle_stacks(args.idle || args.format == Format::Pprof);
    session.set_max_depth(args.max_depth as usize);
    let pid = session.root_pid();
    let output = explicit_output.unwrap_or_else(|| default_output(pid, args.format));

    let mut profile = Profile::new();
    if memory.is_some() {
        let a = profile.allocations_mut();
        a.enabled = true;
        a.mean_bytes = u64::from(args.memory_sample_bytes);
    }
    let root_cmdline = session
        .targets()
        .first()
        .map(|t| t.cmdline().to_string())
        .unwrap_or_default();
    profile.meta.target = if args.command.is_empty() {
        format!("pid {pid}: {root_cmdline}")
    } else {
        args.command.join(" ")
    };
    profile.meta.python_version = session
        .targets()
        .first()
        .map(|t| t.interpreter().version.to_string())
        .unwrap_or_default();
    profile.meta.rate = args.rate as f64;
    profile.meta.start_time = Some(std::time::SystemTime::now());

    profile.set_period(Duration::from_secs_f64(1.0 / args.rate as f64));
    let memory_every = Duration::from_millis(u64::from(args.memory_interval));
    session.set_memory_interval(Some(memory_every));
    profile.memory_mut().interval = Some(memory_every).filter(|d| !d.is_zero());
    profile
        .timeline_mut()
        .set_limit(args.service.timeline_samples);
    // Idle threads' samples only fill the timeline when they are shown.
    profile.timeline_mut().keep_idle = args.idle;

    let opts = stack_options(&args);
    let title = format!("pyrometer: {}", profile.meta.target);
    let format = args.format;
    let render: crate::service::Render = {
        let (opts, title) = (opts.clone(), title.clone());
        Arc::new(move |p: &Profile, w: &mut dyn std::io::Write| render(format, p, &opts, &title, w))
    };
    let kind = if args.idle && args.mode == Mode::Wall && !args.gil {
        ProfileKind::Wall
    } else {
        ProfileKind::Cpu
    };
    let mut service = Service::start(
        &args.service,
        args.rate as f64,
        kind,
        output.clone(),
        render.clone(),
    )?;
    let outcome = sample_loop(
        &mut session,
        &mut launched,
        &mut profile,
        &args,
        &mut service,
        memory.as_ref(),
    );
    let memory_stats = memory.map(|m| m.finish(&mut profile));
    profile.finish();
    if let Some(l) = launched.as_mut() {
        stop_child(l);
    }
    let report = service.finish();

    let written = write_atomic(&output, |w| render(&profile, w));
    // The summary goes to stderr, which may be a pipe whose reader already
    // left (`2>&1 | head`): that must not kill pyrometer before the exit
    // code (or the rescue below) — the writes just fail, unseen.
    crate::output::ignore_sigpipe();
    print_summary(&profile, &outcome, &output, format, written.is_ok());
    if let Some(stats) = &memory_stats {
        crate::memory::print_summary(&profile, stats);
    }
    report.print(args.service.write_every.is_some());
    if let Err(e) = written {
        // What was collected is never lost: fall back to folded stacks in /tmp.
        let dir = std::env::temp_dir();
        match write_new(&dir, &format!("pyrometer-{pid}-rescued"), |w| {
            write_folded(&profile, &opts, w)
        }) {
            Ok(saved) => eprintln!(
                "pyrometer: the samples were saved as folded stacks to {}",
                saved.display()
            ),
            Err(e2) => eprintln!("pyrometer: the samples could not be saved either: {e2:#}"),
        }
        return Err(e);
    }
    Ok(())
}

/// Render a profile in one of the output formats.
pub fn render(
    format: Format,
    profile: &Profile,
    opts: &StackOptions,
    title: &str,
    w: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    match format {
        Format::Flamegraph => write_flamegraph(profile, opts, title, w),
        Format::Raw => write_folded(profile, opts, w),
        Format::Speedscope => write_speedscope(profile, opts, title, w),
        Format::Pprof => pyrometer_outputs::write_pprof(profile, w),
        Format::Html => pyrometer_outputs::write_html(profile, opts, title, w),
        Format::Chrometrace => pyrometer_outputs::write_chrometrace(profile, opts, title, w),
    }
}

fn stack_options(args: &RecordArgs) -> StackOptions {
    let mut o = StackOptions::new();
    o.threads = args.threads;
    o.include_idle = args.idle;
    o.no_line_numbers = args.nolineno;
    o.function_lines = args.function;
    o.full_filenames = args.full_filenames;
    o.processes = args.subprocesses || args.group_by.contains(&GroupBy::Process);
    o.threads |= args.group_by.contains(&GroupBy::Thread);
    o.endpoints = args.group_by.contains(&GroupBy::Endpoint);
    o
}

fn default_output(pid: i32, format: Format) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from(format!("pyrometer-{pid}-{secs}.{}", format.extension()))
}

/// How the sampling loop ended.
struct Outcome {
    elapsed: Duration,
    ticks: u64,
    late_ticks: u64,
    errors: u64,
    torn_threads: u64,
    torn_retries: u64,
    reused_samples: u64,
    last_error: Option<String>,
    ended_by: &'static str,
    cpu: Duration,
}

fn sample_loop(
    session: &mut Session,
    launched: &mut Option<Launched>,
    profile: &mut Profile,
    args: &RecordArgs,
    service: &mut Service,
    memory: Option<&crate::memory::MemoryRecording>,
) -> Outcome {
    let cpu_start = own_cpu_time();
    let mut clock = Clock::new(args.rate as f64);
    let start = clock.start();
    let deadline = args.duration.map(|d| start + Duration::from_secs_f64(d));
    let status = !args.quiet && std::io::stderr().is_terminal();
    let mut last_status = Instant::now();
    let mode = if args.gil { Mode::Gil } else { args.mode };
    let mut ended_by = "duration";
    let mut ticker = crate::tick::Ticker::new(mode, args.subprocesses);
    for t in session.targets() {
        profile.set_process(t.pid(), t.cmdline());
        if args.subprocesses {
            let role = if t.pid() == session.root_pid() {
                "master"
            } else {
                "worker"
            };
            profile.set_process_role(t.pid(), role);
        }
    }
    loop {
        let Some(tick) = clock.wait(deadline, || STOP.load(Ordering::SeqCst)) else {
            if STOP.load(Ordering::SeqCst) {
                ended_by = "interrupted";
            }
            break;
        };
        let time = tick.due.saturating_duration_since(start);
        let ended = ticker.tick(
            session,
            launched,
            time,
            &mut RecordSink { profile, service },
        );
        if let Some(m) = memory {
            m.drain(profile);
        }
        service.tick(
            profile,
            &Progress {
                duration: start.elapsed(),
                ticks: clock.ticks,
                late_ticks: clock.late_ticks,
                errors: session.stats.errors,
            },
        );
        if let Some(why) = ended {
            ended_by = why.describe();
            break;
        }
        if status && last_status.elapsed() > Duration::from_millis(250) {
            last_status = Instant::now();
            let secs = start.elapsed().as_secs_f64();
            eprint!(
                "\r\x1b[Kpyrometer: {} samples, {} processes, {:.0} Hz, {} errors, {:.1} s",
                profile.total_samples(),
                session.targets().len(),
                clock.ticks as f64 / secs.max(1e-9),
                session.stats.errors,
                secs
            );
        }
    }
    if status {
        eprint!("\r\x1b[K");
    }
    let elapsed = start.elapsed();
    profile.meta.duration = elapsed;
    profile.meta.ticks = clock.ticks;
    profile.meta.late_ticks = clock.late_ticks;
    let errors = session.stats.errors;
    profile.meta.errors = errors;
    Outcome {
        elapsed,
        ticks: clock.ticks,
        late_ticks: clock.late_ticks,
        errors,
        torn_threads: session.stats.torn_threads,
        torn_retries: session.stats.torn_retries,
        reused_samples: session.stats.reused_samples,
        last_error: session.last_error.clone(),
        ended_by,
        cpu: own_cpu_time().saturating_sub(cpu_start),
    }
}

/// Where `record`'s ticks go: the profile and the service (periodic
/// writes, Pyroscope).
struct RecordSink<'a> {
    profile: &'a mut Profile,
    service: &'a mut Service,
}

impl crate::tick::TickSink for RecordSink<'_> {
    fn attached(&mut self, pid: i32, cmdline: &str, _python_version: &str) {
        self.profile.set_process(pid, cmdline);
        self.profile.set_process_role(pid, "worker");
    }
    fn exited(&mut self, pid: i32) {
        self.profile.process_exited(pid);
    }
    fn sample(&mut self, sample: pyrometer_sampler::Sample) {
        self.profile.add_sample(&sample);
        self.service.observe(&sample);
    }
    fn memory(&mut self, reading: &pyrometer_sampler::MemoryReading) {
        self.profile.add_memory_reading(reading);
    }
}

/// Stop a launched command that is still running when recording ends.
pub(crate) fn stop_child(l: &mut Launched) {
    if l.exited().is_some() {
        return;
    }
    let pid = l.child.id() as i32;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        if l.exited().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = l.child.kill();
    let _ = l.child.wait();
}

pub fn own_cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn print_summary(
    profile: &Profile,
    o: &Outcome,
    output: &std::path::Path,
    format: Format,
    written: bool,
) {
    let secs = o.elapsed.as_secs_f64().max(1e-9);
    let what = match format {
        Format::Flamegraph => "flame graph",
        Format::Raw => "folded stacks",
        Format::Speedscope => "speedscope profile",
        Format::Pprof => "pprof profile",
        Format::Html => "HTML report",
        Format::Chrometrace => "Chrome trace",
    };
    if written {
        eprintln!("pyrometer: wrote {what} to {}", describe(output));
    }
    let total = profile.total_samples();
    eprintln!(
        "  stopped: {}; {:.2} s, {} ticks at {:.1} Hz (requested {:.0} Hz, {} late ticks skipped)",
        o.ended_by,
        secs,
        o.ticks,
        o.ticks as f64 / secs,
        profile.meta.rate,
        o.late_ticks
    );
    let err_pct = if o.ticks > 0 {
        100.0 * o.errors as f64 / o.ticks as f64
    } else {
        0.0
    };
    let reused = if o.reused_samples > 0 {
        format!(
            "; {} thread reads saved (threads that had not run since the tick before)",
            o.reused_samples
        )
    } else {
        String::new()
    };
    let retried = if o.torn_retries > 0 {
        format!(" ({} torn reads read again)", o.torn_retries)
    } else {
        String::new()
    };
    eprintln!(
        "  samples: {total} thread samples; errors: {} ({err_pct:.2} % of ticks had a failed read), {} thread samples dropped as torn{retried}{reused}",
        o.errors, o.torn_threads
    );
    if let (true, Some(e)) = (o.errors > 0, &o.last_error) {
        eprintln!("  last failed read: {}", crate::output::terminal_safe(e));
    }
    if total > 0 {
        let split: Vec<String> = profile
            .by_state()
            .iter()
            .map(|(s, c)| format!("{} {:.1} %", s.as_str(), 100.0 * *c as f64 / total as f64))
            .collect();
        eprintln!("  thread states: {}", split.join(", "));
    }
    if profile.truncated_samples > 0 {
        eprintln!(
            "  {} samples had stacks deeper than --max-depth and were cut",
            profile.truncated_samples
        );
    }
    print_endpoints(profile);
    for line in pyrometer_outputs::memory::summary_lines(profile, &StackOptions::new()) {
        eprintln!("  {}", crate::output::terminal_safe(&line));
    }
    eprintln!(
        "  pyrometer CPU: {:.3} s ({:.2} % of one core)",
        o.cpu.as_secs_f64(),
        100.0 * o.cpu.as_secs_f64() / secs
    );
}

/// The endpoint table of the summary: top endpoints by CPU and by wall
/// time, requests seen, estimated latency percentiles, category split.
fn print_endpoints(profile: &Profile) {
    use std::collections::HashMap;
    struct Row {
        wall: u64,
        cpu: u64,
        categories: HashMap<String, u64>,
    }
    let mut rows: HashMap<String, Row> = HashMap::new();
    let mut total_cpu = 0u64;
    for (key, count) in profile.counts() {
        if key.state.is_active() {
            total_cpu += count;
        }
        let Some(e) = key.endpoint else { continue };
        let row = rows.entry(profile.str(e).to_string()).or_insert(Row {
            wall: 0,
            cpu: 0,
            categories: HashMap::new(),
        });
        row.wall += count;
        if key.state.is_active() {
            row.cpu += count;
        }
        let cat = match (key.state, key.category) {
            (pyrometer_sampler::ThreadState::Idle, _) => "idle".to_string(),
            (_, Some(c)) => profile.str(c).to_string(),
            (_, None) => "other".to_string(),
        };
        *row.categories.entry(cat).or_insert(0) += count;
    }
    if rows.is_empty() {
        return;
    }
    let requests: HashMap<String, &pyrometer_profile::EndpointRequests> = profile
        .requests()
        .endpoints()
        .map(|(e, r)| (profile.str(e).to_string(), r))
        .collect();
    let mut list: Vec<_> = rows.into_iter().collect();
    list.sort_by(|a, b| b.1.cpu.cmp(&a.1.cpu).then(b.1.wall.cmp(&a.1.wall)));
    let ms = |d: Option<Duration>| {
        d.map(|d| format!("{:.1}", d.as_secs_f64() * 1e3))
            .unwrap_or_else(|| "-".into())
    };
    eprintln!("  endpoints (by CPU; latencies estimated from samples, ms):");
    eprintln!(
        "    {:<40} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8}  categories",
        "endpoint", "CPU %", "wall s", "requests", "p50", "p95", "max"
    );
    let period = 1.0 / profile.meta.rate.max(1e-9);
    for (name, row) in list.iter().take(15) {
        let r = requests.get(name);
        let mut cats: Vec<_> = row.categories.iter().collect();
        cats.sort_by(|a, b| b.1.cmp(a.1));
        let split: Vec<String> = cats
            .iter()
            .take(4)
            .map(|(c, n)| format!("{c} {:.0}%", 100.0 * **n as f64 / row.wall.max(1) as f64))
            .collect();
        eprintln!(
            "    {:<40} {:>6.1}% {:>7.2} {:>8} {:>8} {:>8} {:>8}  {}",
            crate::output::terminal_safe(name),
            100.0 * row.cpu as f64 / total_cpu.max(1) as f64,
            row.wall as f64 * period,
            r.map(|r| r.count).unwrap_or(0),
            ms(r.and_then(|r| r.quantile(0.5))),
            ms(r.and_then(|r| r.quantile(0.95))),
            ms(r.map(|r| r.max)),
            split.join(", ")
        );
    }
}
