//! Renderers and exporters: each takes a `&Profile`, options and a writer.
#![deny(missing_docs)]

mod chrometrace;
mod folded;
mod html;
pub mod memory;
mod pprof;
pub mod pyroscope;
mod pyroscope_tls;
mod speedscope;
pub mod top;

pub use chrometrace::{write_chrometrace, GAP_PERIODS};
pub use folded::{folded_lines, write_flamegraph, write_folded};
pub use html::write_html;
pub use pprof::{
    decode_pprof, pprof_message, proto as pprof_proto, read_pprof, write_pprof, PprofError,
    TIMESTAMP_LABEL,
};
pub use speedscope::write_speedscope;

use pyrometer_profile::{FrameInfo, Profile};

/// How frames are labelled and which samples are kept.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct StackOptions {
    /// A `thread (NAME TID)` root frame per thread (`--threads`).
    pub threads: bool,
    /// Keep samples of idle threads (`--idle`).
    pub include_idle: bool,
    /// Leave out line numbers (`--nolineno`).
    pub no_line_numbers: bool,
    /// Aggregate by function: the function's first line instead of the
    /// current line (`--function`).
    pub function_lines: bool,
    /// Full file names instead of shortened ones (`--full-filenames`).
    pub full_filenames: bool,
    /// A `process PID:"cmdline"` root frame per process (`--subprocesses`).
    pub processes: bool,
    /// An `endpoint (METHOD module.view)` root frame (`--group-by endpoint`);
    /// samples serving no request go under `endpoint (none)`.
    pub endpoints: bool,
}

impl StackOptions {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }
}

/// The file name as shown: full, or shortened to what follows
/// `site-packages/`, the standard library directory, or the last component.
pub fn display_filename(path: &str, full: bool) -> &str {
    if full {
        return path;
    }
    for marker in ["/site-packages/", "/dist-packages/"] {
        if let Some(i) = path.rfind(marker) {
            return &path[i + marker.len()..];
        }
    }
    if let Some(i) = path.find("/lib/python3.") {
        let rest = &path[i + "/lib/python3.".len()..];
        if let Some(j) = rest.find('/') {
            return &rest[j + 1..];
        }
    }
    path.rsplit('/').next().unwrap_or(path)
}

/// Make a string from the target safe inside one folded-stack frame: no
/// separators, no line breaks, no control characters.
pub fn sanitize_frame_text(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            ';' => ':',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

/// Make a string from the target safe as a line of text in any output (an
/// SVG title, a summary): control characters, which XML forbids and
/// terminals obey, become spaces.
pub fn sanitize_text(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `qualname (file.py:line)`.
pub fn frame_label(profile: &Profile, frame: &FrameInfo, opts: &StackOptions) -> String {
    let name = profile.str(frame.name);
    let file = display_filename(profile.str(frame.filename), opts.full_filenames);
    let line = if opts.function_lines {
        frame.first_line
    } else {
        frame.line
    };
    if opts.no_line_numbers || line <= 0 {
        format!("{name} ({file})")
    } else {
        format!("{name} ({file}:{line})")
    }
}
