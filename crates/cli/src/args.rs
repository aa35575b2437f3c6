//! Command-line flags. Flags mean what they mean in py-spy, except that
//! `--duration` is wall-clock seconds and the target is never paused unless
//! `--blocking` is given.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Sampling profiler for live Python processes and web services.
#[derive(Debug, Parser)]
#[command(
    name = "pyrometer",
    version = crate::meta::version_line(),
    about,
    long_about = None,
    after_help = "Examples:\n  pyrometer dump --pid 1234\n  pyrometer record --pid 1234 -d 30 -o profile.svg\n  pyrometer record --subprocesses --pid $(pgrep -o gunicorn) -f html -o report.html\n  pyrometer record -- python3 app.py\n\nReading another process needs root or CAP_SYS_PTRACE; see `pyrometer help record`."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the current stack of every Python thread of a process.
    #[command(
        after_help = "Examples:\n  pyrometer dump --pid 1234\n  pyrometer dump --pid 1234 --locals --json"
    )]
    Dump(DumpArgs),
    /// Sample a process and write a profile (flame graph, folded stacks,
    /// speedscope, pprof, HTML, Chrome trace); for services, rewrite it every
    /// --write-every seconds (and on SIGUSR1) and push to Pyroscope.
    #[command(
        after_help = "Examples:\n  pyrometer record --pid 1234 -d 30 -o profile.svg\n  pyrometer record -r 1000 -f speedscope -o out.json -- python3 app.py\n  pyrometer record --pid 1234 -f chrometrace -d 10 -o trace.json   # open in ui.perfetto.dev\n  pyrometer record --pid 1234 -s -f pprof -o live.pb.gz --write-every 60   # kill -USR1 to write now\n  pyrometer record --pid 1234 -s --pyroscope http://localhost:4040 --app-name shop --tag env=prod"
    )]
    Record(Box<RecordArgs>),
    /// A live, full-screen view of a running program or service: functions,
    /// lines, endpoints and processes, refreshed every second.
    #[command(
        after_help = "Examples:\n  pyrometer top --pid 1234\n  pyrometer top --pid GUNICORN_MASTER --subprocesses\n  pyrometer top -- python3 app.py\n\nKeys: Tab or f/l/e/p switch view, 1-9 or Left/Right pick the sort column, r reverses,\n/ filters (Enter keeps, Esc clears), space pauses, c toggles cumulative/interval,\n0 or R resets, ? or h shows help, q or Ctrl-C quits."
    )]
    Top(TopArgs),
    /// Render a saved pprof profile (`record -f pprof`) as a flame graph,
    /// folded stacks or speedscope.
    #[command(
        after_help = "Examples:\n  pyrometer record --pid 1234 -d 30 -f pprof -o run.pb.gz\n  pyrometer report run.pb.gz -o run.svg\n  pyrometer report run.pb.gz -f raw --threads -o run.txt"
    )]
    Report(ReportArgs),
    /// Compare two saved pprof profiles in a differential flame graph: the
    /// shape is AFTER's; red frames have more own samples, blue ones fewer.
    #[command(
        after_help = "Examples:\n  pyrometer diff before.pb.gz after.pb.gz -o diff.svg\n  pyrometer diff before.pb.gz after.pb.gz --nolineno -o diff.svg"
    )]
    Diff(DiffArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Examples:\n  pyrometer completions bash > ~/.local/share/bash-completion/completions/pyrometer\n  pyrometer completions zsh > ~/.zfunc/_pyrometer\n  pyrometer completions fish > ~/.config/fish/completions/pyrometer.fish"
    )]
    Completions(crate::meta::CompletionsArgs),
    /// Print the man page, generated from these flags.
    #[command(
        hide = true,
        after_help = "Examples:\n  pyrometer man > pyrometer.1 && man -l pyrometer.1\n  pyrometer man --dir share/man/man1"
    )]
    Man(crate::meta::ManArgs),
    /// Measure the cost of one sample of a process (for benchmarks).
    #[command(hide = true)]
    BenchSample(BenchArgs),
    /// Measure the CPU cost of the sampling clock alone (for benchmarks).
    #[command(hide = true)]
    BenchTimer(BenchTimerArgs),
}

#[derive(Debug, Args)]
pub struct BenchTimerArgs {
    /// Ticks per second.
    #[arg(short, long, default_value_t = 1000)]
    pub rate: u32,
    /// Seconds to tick for.
    #[arg(short, long, default_value_t = 5.0)]
    pub duration: f64,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// PID of the running Python process.
    #[arg(short, long)]
    pub pid: i64,
    /// Samples to take back to back.
    #[arg(short, long, default_value_t = 20000)]
    pub samples: u32,
    /// Aggregate into a profile as `record` does.
    #[arg(long)]
    pub aggregate: bool,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// PID of the running Python process.
    #[arg(short, long)]
    pub pid: i64,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    /// Show each frame's local variables.
    #[arg(short, long)]
    pub locals: bool,
    /// Stop the target's threads while reading (default: read while it runs).
    #[arg(long)]
    pub blocking: bool,
    /// Most frames read per thread.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_depth: u32,
}

/// Output formats of `record`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Interactive SVG flame graph.
    Flamegraph,
    /// Folded stacks: `frame;frame;leaf count` per line, root first.
    Raw,
    /// speedscope JSON (one profile per thread).
    Speedscope,
    /// Gzipped pprof (profile.proto): every sample with its thread and
    /// state; for `pyrometer report`/`diff`, go tool pprof, Pyroscope.
    Pprof,
    /// A self-contained HTML report to read offline in a browser: summary,
    /// hot lines with their source, functions, threads, flame graph.
    Html,
    /// Chrome trace event JSON for Perfetto / chrome://tracing: a track
    /// per thread, a slice per frame and per request over time (the first
    /// --timeline-samples samples).
    Chrometrace,
}

impl Format {
    pub fn extension(&self) -> &'static str {
        match self {
            Format::Flamegraph => "svg",
            Format::Raw => "txt",
            Format::Speedscope => "json",
            Format::Pprof => "pb.gz",
            Format::Html => "html",
            Format::Chrometrace => "trace.json",
        }
    }
}

/// What `raw` stacks are grouped under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GroupBy {
    /// An `endpoint (METHOD module.view)` root frame.
    Endpoint,
    /// A `process PID:"cmdline"` root frame.
    Process,
    /// A `thread (NAME TID)` root frame.
    Thread,
}

/// Which threads each tick samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Every thread every tick (idle ones are dropped unless --idle).
    Wall,
    /// Only threads running on a CPU.
    Cpu,
    /// Only the thread holding the GIL.
    Gil,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["pid", "command"])))]
pub struct RecordArgs {
    /// PID of the running Python process.
    #[arg(short, long)]
    pub pid: Option<i64>,
    /// Output file (default: pyrometer-PID-TIME.EXT in the current directory).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Flamegraph)]
    pub format: Format,
    /// Samples per second.
    #[arg(short, long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rate: u32,
    /// Stop after this many seconds of wall-clock time (default: until the
    /// target exits or Ctrl-C).
    #[arg(short, long, value_parser = seconds(0.001, MAX_SECONDS))]
    pub duration: Option<f64>,
    /// A `thread (NAME TID)` root frame per thread.
    #[arg(short, long)]
    pub threads: bool,
    /// Include samples of idle threads.
    #[arg(short, long)]
    pub idle: bool,
    /// Which threads to sample: every thread (wall), only those on a CPU
    /// (cpu), or only the GIL holder (gil).
    #[arg(long, value_enum, default_value_t = Mode::Wall)]
    pub mode: Mode,
    /// Only sample the thread holding the GIL (same as --mode gil).
    #[arg(short = 'g', long, conflicts_with = "mode")]
    pub gil: bool,
    /// Leave line numbers out of frames.
    #[arg(long)]
    pub nolineno: bool,
    /// Aggregate by function (first line) instead of by current line.
    #[arg(short = 'F', long)]
    pub function: bool,
    /// Show full file names.
    #[arg(long)]
    pub full_filenames: bool,
    /// Stop the target's threads while reading each sample (slower; the
    /// default reads while the target runs and drops torn samples).
    #[arg(long)]
    pub blocking: bool,
    /// Accepted for py-spy compatibility: this is already the default.
    #[arg(long, hide = true, conflicts_with = "blocking")]
    pub nonblocking: bool,
    /// Most frames read per thread; deeper stacks are cut and counted.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_depth: u32,
    /// Group stacks under a root frame per endpoint, process or thread
    /// (repeatable).
    #[arg(long, value_enum)]
    pub group_by: Vec<GroupBy>,
    /// Also sample every descendant Python process (gunicorn and uvicorn
    /// workers, multiprocessing children), following them as they come and go.
    #[arg(short, long)]
    pub subprocesses: bool,
    /// Do not print the one-line status while recording.
    #[arg(long)]
    pub quiet: bool,
    /// Read each process's RSS and pymalloc heap every this many
    /// milliseconds (0: not at all).
    #[arg(long, value_name = "MS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=60_000))]
    pub memory_interval: u32,
    /// Also sample memory allocations of the launched command and its
    /// children (needs `-- CMD`): bytes allocated and live per line,
    /// function and endpoint, and leak candidates.
    #[arg(long)]
    pub memory: bool,
    /// With --memory: mean bytes allocated between two samples.
    #[arg(long, default_value_t = 512 * 1024, value_parser = clap::value_parser!(u32).range(1..), requires = "memory")]
    pub memory_sample_bytes: u32,
    #[command(flatten)]
    pub service: crate::service_args::ServiceArgs,
    /// Command to launch and profile from its start (after `--`).
    #[arg(last = true, num_args = 1..)]
    pub command: Vec<String>,
}

/// How `report` and `diff` label frames and which samples they keep (the
/// stack flags of `record`).
#[derive(Debug, Args)]
pub struct StackFlags {
    /// A `thread (NAME TID)` root frame per thread.
    #[arg(short, long)]
    pub threads: bool,
    /// Include samples of idle threads.
    #[arg(short, long)]
    pub idle: bool,
    /// Leave line numbers out of frames.
    #[arg(long)]
    pub nolineno: bool,
    /// Aggregate by function (first line) instead of by current line.
    #[arg(short = 'F', long)]
    pub function: bool,
    /// Show full file names.
    #[arg(long)]
    pub full_filenames: bool,
    /// A `process PID:"cmdline"` root frame per process (the default when
    /// the profile holds several processes).
    #[arg(short = 's', long)]
    pub subprocesses: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A profile saved by `pyrometer record -f pprof` (.pb.gz).
    pub input: PathBuf,
    /// Output file (default: the input's name with the format's extension).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Flamegraph)]
    pub format: Format,
    #[command(flatten)]
    pub stacks: StackFlags,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The baseline profile (`record -f pprof`).
    pub before: PathBuf,
    /// The profile compared with it.
    pub after: PathBuf,
    /// Output SVG (default: AFTER's name with `.diff.svg`).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Compare raw sample counts instead of scaling BEFORE to AFTER's total.
    #[arg(long)]
    pub no_normalize: bool,
    #[command(flatten)]
    pub stacks: StackFlags,
}

/// The longest value of any duration-like flag (ten years): larger ones
/// would overflow the clock.
pub const MAX_SECONDS: f64 = 315_360_000.0;

/// The parser of every duration-like flag (`--duration`, `--write-every`,
/// `--refresh`, `--pyroscope-interval`): finite seconds from `min` to `max`
/// (at most [`MAX_SECONDS`]), checked at parse time (exit code 2), each
/// with the same message.
pub fn seconds(
    min: f64,
    max: f64,
) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    let max = max.min(MAX_SECONDS);
    move |s: &str| match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (min..=max).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is not a number of seconds from {min} to {max}"
        )),
    }
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["pid", "command"])))]
pub struct TopArgs {
    /// PID of the running Python process.
    #[arg(short, long)]
    pub pid: Option<i64>,
    /// Samples per second.
    #[arg(short, long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rate: u32,
    /// Include samples of idle threads in the functions and lines views.
    #[arg(short, long)]
    pub idle: bool,
    /// Which threads to sample: every thread (wall), only those on a CPU
    /// (cpu), or only the GIL holder (gil).
    #[arg(long, value_enum, default_value_t = Mode::Wall)]
    pub mode: Mode,
    /// Also sample every descendant Python process (gunicorn and uvicorn
    /// workers), following them as they come and go.
    #[arg(short, long)]
    pub subprocesses: bool,
    /// Seconds between refreshes of the view.
    #[arg(long, default_value_t = 1.0, value_parser = seconds(0.1, 60.0))]
    pub refresh: f64,
    /// Command to launch and watch (after `--`); its output is discarded
    /// while the view owns the terminal.
    #[arg(last = true, num_args = 1..)]
    pub command: Vec<String>,
}
