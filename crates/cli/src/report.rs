//! `pyrometer report`: render a saved pprof profile (`record -f pprof`) in
//! any of record's formats, with record's stack flags.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use pyrometer_outputs::{read_pprof, StackOptions};
use pyrometer_profile::Profile;

use crate::args::{Format, ReportArgs, StackFlags};
use crate::output::{check_writable, terminal_safe, write_atomic};

pub fn run(args: ReportArgs) -> Result<()> {
    let profile = load(&args.input)?;
    let output = match args.output {
        Some(o) => o,
        None => {
            let o = derived_output(&args.input, args.format.extension());
            if o == args.input {
                bail!(
                    "the default output would overwrite {}; pass -o PATH",
                    args.input.display()
                );
            }
            o
        }
    };
    check_writable(&output)?;
    if format_needs_timeline(args.format) && profile.timeline().entries().is_empty() {
        eprintln!(
            "pyrometer: warning: {} holds no timeline (it was saved by another tool, an older \
             pyrometer, or with --timeline-samples 0): the trace will have no slices",
            args.input.display()
        );
    }
    let opts = stack_options(&args.stacks, &profile);
    let title = format!("pyrometer: {}", profile.meta.target);
    let format = args.format;
    write_atomic(&output, |w| {
        crate::record::render(format, &profile, &opts, &title, w)
    })?;
    let what = match format {
        Format::Flamegraph => "flame graph",
        Format::Raw => "folded stacks",
        Format::Speedscope => "speedscope profile",
        Format::Pprof => "pprof profile",
        Format::Html => "HTML report",
        Format::Chrometrace => "Chrome trace",
    };
    eprintln!("pyrometer: wrote {what} to {}", output.display());
    eprintln!("  {}", describe(&profile));
    Ok(())
}

/// Formats drawn from the profile's timeline.
pub fn format_needs_timeline(format: Format) -> bool {
    format == Format::Chrometrace
}

/// Read a saved profile, with errors that name the file.
pub fn load(path: &Path) -> Result<Profile> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    read_pprof(&bytes).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// The stack options of the flags. Process root frames are shown when asked
/// for, or when the profile holds several processes (as `record
/// --subprocesses` would have shown them).
pub fn stack_options(flags: &StackFlags, profile: &Profile) -> StackOptions {
    let mut o = StackOptions::new();
    o.threads = flags.threads;
    o.include_idle = flags.idle;
    o.no_line_numbers = flags.nolineno;
    o.function_lines = flags.function;
    o.full_filenames = flags.full_filenames;
    o.processes = flags.subprocesses || profile.processes().count() > 1;
    o
}

/// One line about a profile: samples, target, rate, duration.
pub fn describe(profile: &Profile) -> String {
    let m = &profile.meta;
    let mut s = format!("{} thread samples", profile.total_samples());
    if !m.target.is_empty() {
        s.push_str(&format!(" of {}", terminal_safe(&m.target)));
    }
    if !m.python_version.is_empty() {
        s.push_str(&format!(" (Python {})", terminal_safe(&m.python_version)));
    }
    if m.rate > 0.0 {
        s.push_str(&format!(", {:.0} Hz", m.rate));
    }
    if !m.duration.is_zero() {
        s.push_str(&format!(", {:.2} s", m.duration.as_secs_f64()));
    }
    s
}

/// `run.pb.gz` → `run.EXT` (next to the input).
pub fn derived_output(input: &Path, extension: &str) -> PathBuf {
    let name = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "profile".into());
    let stem = [".pb.gz", ".pprof.gz", ".pb", ".pprof", ".gz"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .filter(|s| !s.is_empty())
        .unwrap_or(&name);
    input.with_file_name(format!("{stem}.{extension}"))
}
