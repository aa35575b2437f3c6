//! `pyrometer`: the command line. Parses flags into typed configs, wires the
//! layers together, prints status and errors. Exit codes are in [`exit`].

/// `eprint!` / `eprintln!` that never panic: a reader of stderr that went
/// away (`pyrometer record … 2>&1 | head`) must not turn the summary into a
/// panic. These shadow std's macros in every module below.
macro_rules! eprint {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod args;
mod attach;
mod bench;
mod diff;
mod dump;
mod exit;
mod limits;
mod memory;
mod meta;
mod output;
mod record;
mod report;
mod service;
mod service_args;
mod tick;
mod top;

use clap::Parser;

fn main() {
    // A closed stdout (`pyrometer dump | head`) must not panic.
    // SAFETY: restoring the default SIGPIPE disposition before any I/O.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    limits::raise_open_files();
    let cli = args::Cli::parse();
    let result = match cli.command {
        args::Command::Dump(a) => dump::run(a),
        args::Command::Record(a) => record::run(*a),
        args::Command::Report(a) => report::run(a),
        args::Command::Top(a) => top::run(a),
        args::Command::Diff(a) => diff::run(a),
        args::Command::BenchSample(a) => bench::run(a),
        args::Command::BenchTimer(a) => bench::run_timer(a),
        args::Command::Completions(a) => meta::completions(a),
        args::Command::Man(a) => meta::man(a),
    };
    if let Err(err) = result {
        let code = exit::code_for(&err);
        eprintln!("pyrometer: error: {err}");
        for cause in err.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
        if let Some(hint) = exit::hint_for(&err) {
            eprintln!("{hint}");
        }
        std::process::exit(code);
    }
}
