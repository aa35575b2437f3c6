//! What describes the binary rather than a target: the version line, shell
//! completions and man pages, all generated from the clap definition so they
//! never drift from the flags.

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};

use crate::args::Cli;

/// `0.1.0 (CPython 3.8–3.15)`: clap prints it after the name for `--version`.
pub fn version_line() -> &'static str {
    static LINE: OnceLock<String> = OnceLock::new();
    LINE.get_or_init(|| {
        format!(
            "{} (CPython {})",
            env!("CARGO_PKG_VERSION"),
            pyrometer_cpython::supported::supported_range()
        )
    })
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write a completion script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write every page (pyrometer.1, pyrometer-record.1, …) into this
    /// directory instead of printing pyrometer.1 to stdout.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn completions(args: CompletionsArgs) -> Result<()> {
    let mut cmd = Cli::command();
    // clap_complete panics when its writer fails: render into memory, then
    // write with an error of our own (`completions bash > /dev/full`).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "pyrometer", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)
        .and_then(|()| out.flush())
        .context("cannot write the completion script to stdout")
}

/// The date of this version's entry in CHANGELOG.md, for the pages' footer
/// (a fixed date keeps the generated pages reproducible; an empty one would
/// shift the `.TH` fields).
const RELEASE_DATE: &str = "2026-12-01";

fn man_page(cmd: clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd)
        .date(RELEASE_DATE)
        .source(format!("pyrometer {}", env!("CARGO_PKG_VERSION")))
        .manual("User Commands")
}

pub fn man(args: ManArgs) -> Result<()> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Builds display names (`pyrometer-record`) used for pages and links.
    cmd.build();
    match args.dir {
        None => {
            let mut out = std::io::stdout().lock();
            man_page(cmd)
                .render(&mut out)
                .and_then(|()| out.flush())
                .context("cannot write the man page to stdout")
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let mut pages = vec![cmd.clone()];
            pages.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
            for page in pages {
                let path = man_page(page)
                    .generate_to(&dir)
                    .with_context(|| format!("cannot write a man page into {}", dir.display()))?;
                println!("{}", path.display());
            }
            Ok(())
        }
    }
}
