//! What describes the binary: `--version`, the help of every subcommand
//! (with examples), shell completions and the man pages.

// Not every helper of the shared module is used here.
#[allow(unused_imports)]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// The visible subcommands, as `pyrometer --help` lists them.
fn subcommands() -> Vec<String> {
    let out = pyrometer(&["--help"]);
    assert!(out.status.success(), "--help: {}", stderr_of(&out));
    let text = stdout_of(&out);
    let mut in_commands = false;
    let mut names = Vec::new();
    for line in text.lines() {
        if line.starts_with("Commands:") {
            in_commands = true;
            continue;
        }
        if in_commands {
            if !line.starts_with("  ") {
                break;
            }
            // Continuation lines of a wrapped description are indented further.
            if line.starts_with("   ") {
                continue;
            }
            if let Some(name) = line.split_whitespace().next() {
                if name != "help" {
                    names.push(name.to_string());
                }
            }
        }
    }
    names
}

#[test]
fn version_names_the_supported_cpython_range() {
    let out = pyrometer(&["--version"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(
        stdout_of(&out).trim_end(),
        format!(
            "pyrometer {} (CPython 3.8\u{2013}3.15)",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn every_subcommand_has_help_with_examples() {
    let names = subcommands();
    for want in ["dump", "record", "report", "diff", "completions"] {
        assert!(
            names.iter().any(|n| n == want),
            "`pyrometer --help` does not list {want}: {names:?}"
        );
    }
    let top = stdout_of(&pyrometer(&["--help"]));
    assert!(
        top.contains("Examples:"),
        "pyrometer --help has no examples:\n{top}"
    );
    // `man` is hidden but has help too.
    for name in names.iter().map(String::as_str).chain(["man"]) {
        let out = pyrometer(&[name, "--help"]);
        let text = stdout_of(&out);
        assert!(
            out.status.success(),
            "pyrometer {name} --help failed: {}",
            stderr_of(&out)
        );
        assert!(
            text.contains("Usage: pyrometer ") && text.contains("Examples:\n  pyrometer "),
            "pyrometer {name} --help lacks a usage line or examples:\n{text}"
        );
    }
}

#[test]
fn bash_completion_script_is_valid_bash() {
    let scratch = Scratch::new("completions");
    let out = pyrometer(&["completions", "bash"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let script = scratch.file("pyrometer.bash");
    std::fs::write(&script, &out.stdout).expect("write the script");
    let text = stdout_of(&out);
    for word in [
        "record",
        "dump",
        "--subprocesses",
        "flamegraph",
        "speedscope",
    ] {
        assert!(
            text.contains(word),
            "the bash completions do not mention {word}"
        );
    }
    let check = pyrometer_testsupport::run_with_timeout(
        Command::new("bash").arg("-n").arg(&script),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        check.status.success(),
        "bash -n rejects the completion script: {}",
        stderr_of(&check)
    );
    // Sourcing it registers the completion function.
    let registered = pyrometer_testsupport::run_with_timeout(
        Command::new("bash")
            .arg("-c")
            .arg("source \"$1\" && complete -p pyrometer")
            .arg("bash")
            .arg(&script),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        registered.status.success() && stdout_of(&registered).contains("pyrometer"),
        "sourcing the script does not register a completion for pyrometer: {}{}",
        stdout_of(&registered),
        stderr_of(&registered)
    );
}

#[test]
fn other_shells_get_scripts_and_unknown_ones_a_usage_error() {
    for (shell, marker) in [
        ("zsh", "#compdef pyrometer"),
        ("fish", "complete -c pyrometer"),
    ] {
        let out = pyrometer(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr_of(&out));
        assert!(
            stdout_of(&out).contains(marker),
            "{shell} completions lack {marker:?}"
        );
    }
    let out = pyrometer(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(EXIT_USAGE), "{}", stderr_of(&out));
}

/// groff's rendering of a page, with every warning enabled; fails on any.
fn groff(page: &Path) -> String {
    let out = pyrometer_testsupport::run_with_timeout(
        Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-K", "utf8"])
            .arg(page),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("groff (scripts/setup.sh installs groff-base): {e}"));
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "groff rejects {}: {}",
        page.display(),
        stderr_of(&out)
    );
    stdout_of(&out)
}

/// groff's output with its overstriking (bold, underline) taken out.
fn plain(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c == '\u{8}' {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn man_pages_are_valid_roff() {
    let scratch = Scratch::new("man");
    let out = pyrometer(&["man"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let page = scratch.file("pyrometer.1");
    std::fs::write(&page, &out.stdout).expect("write the page");
    assert!(
        stdout_of(&out).starts_with(".ie \\n(.g .ds Aq \\(aq") || stdout_of(&out).contains(".TH "),
        "not a man page"
    );
    let text = plain(&groff(&page));
    let header = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    let footer = text
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or_default();
    let source = format!("pyrometer {}", env!("CARGO_PKG_VERSION"));
    assert!(
        header.contains("User Commands") && footer.contains(&source),
        "the page's header/footer are off: {header:?} / {footer:?}"
    );
    for want in [
        "NAME",
        "SYNOPSIS",
        "SUBCOMMANDS",
        "pyrometer-record(1)",
        "Examples:",
    ] {
        assert!(text.contains(want), "the man page lacks {want}:\n{text}");
    }

    let dir = scratch.file("man1");
    let out = pyrometer(&[Path::new("man"), Path::new("--dir"), &dir]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    for sub in ["", "-dump", "-record", "-report", "-diff", "-completions"] {
        let page = dir.join(format!("pyrometer{sub}.1"));
        assert!(page.is_file(), "man --dir did not write {}", page.display());
        let text = plain(&groff(&page));
        assert!(
            text.contains("OPTIONS"),
            "{} has no OPTIONS",
            page.display()
        );
    }
    let record = plain(&groff(&dir.join("pyrometer-record.1")));
    assert!(
        record.contains("--subprocesses") && record.contains("Examples:"),
        "pyrometer-record.1 lacks --subprocesses or examples:\n{record}"
    );
    assert!(
        !dir.join("pyrometer-bench-sample.1").exists()
            && !dir.join("pyrometer-bench-timer.1").exists()
            && !dir.join("pyrometer-man.1").exists(),
        "hidden subcommands got pages"
    );
}

#[test]
fn changelog_has_this_version_dated_as_the_man_pages() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let changelog = std::fs::read_to_string(root.join("CHANGELOG.md")).expect("CHANGELOG.md");
    assert!(
        changelog.contains("## [Unreleased]"),
        "CHANGELOG.md has no Unreleased section"
    );
    let heading = format!("## [{}] - ", env!("CARGO_PKG_VERSION"));
    let date = changelog
        .lines()
        .find_map(|l| l.strip_prefix(heading.as_str()))
        .unwrap_or_else(|| panic!("CHANGELOG.md has no {heading:?}DATE entry"));
    let out = pyrometer(&["man"]);
    let page = stdout_of(&out);
    let th = page
        .lines()
        .find(|l| l.starts_with(".TH "))
        .unwrap_or_default();
    assert!(
        th.contains(&format!("\"{date}\"")) || th.contains(&format!(" {date} ")),
        "the man page's date ({th}) is not the changelog's {date}: update RELEASE_DATE in crates/cli/src/meta.rs"
    );
}

/// `bench-timer` (hidden, for bench/run.py) ticks the clock of `record` at
/// the rate asked and reports the CPU a tick costs.
#[test]
fn the_bench_timer_ticks_at_the_rate_asked() {
    let out = pyrometer(&["bench-timer", "--rate", "200", "--duration", "0.5"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("bench-timer prints JSON");
    let ticks = doc["ticks"].as_u64().expect("ticks");
    let late = doc["late_ticks"].as_u64().expect("late_ticks");
    // 100 ticks are due in 0.5 s; a loaded machine may skip some, never add.
    assert!((95..=102).contains(&(ticks + late)), "{doc}");
    let cpu = doc["cpu_us_per_tick"].as_f64().expect("cpu_us_per_tick");
    assert!(cpu > 0.0 && cpu < 5_000.0, "{doc}");
    let bad = pyrometer(&["bench-timer", "--duration", "0"]);
    assert!(!bad.status.success());
    assert!(
        stderr_of(&bad).contains("--duration"),
        "{}",
        stderr_of(&bad)
    );
}

#[test]
fn a_full_stdout_is_an_error_not_a_panic() {
    for args in [&["completions", "bash"][..], &["man"][..]] {
        // Not run_with_timeout: it pipes stdout itself. Both commands only
        // print, so they cannot hang.
        let full = std::fs::File::create("/dev/full").expect("/dev/full");
        let out = Command::new(PYROMETER)
            .args(args)
            .stdout(full)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run pyrometer");
        assert_eq!(
            out.status.code(),
            Some(EXIT_FAILURE),
            "pyrometer {args:?} > /dev/full: {}",
            stderr_of(&out)
        );
        let err = stderr_of(&out);
        assert!(
            err.contains("pyrometer: error: cannot write") && !err.contains("panicked"),
            "pyrometer {args:?} > /dev/full: {err}"
        );
    }
}
