//! Folded stacks (`frame;frame;leaf count`, root first) and the SVG flame
//! graph rendered from them by inferno.

use std::collections::BTreeMap;
use std::io::Write;

use pyrometer_profile::Profile;
use pyrometer_sampler::ThreadState;

use crate::{frame_label, sanitize_frame_text, StackOptions};

/// Folded lines, merged and sorted.
pub fn folded_lines(profile: &Profile, opts: &StackOptions) -> Vec<String> {
    let mut merged: BTreeMap<String, u64> = BTreeMap::new();
    for (key, count) in profile.counts() {
        if key.state == ThreadState::Idle && !opts.include_idle {
            continue;
        }
        if key.stack.is_none() {
            // A thread running no Python code has nothing to show.
            continue;
        }
        let mut parts = Vec::new();
        if opts.endpoints {
            let e = key.endpoint.map(|e| profile.str(e)).unwrap_or("none");
            parts.push(sanitize_frame_text(&format!("endpoint ({e})")));
        }
        if opts.processes {
            let pid = profile.thread(key.thread).pid;
            let cmd = profile.process_cmdline(pid).unwrap_or("");
            // Flame graphs cut long labels: keep the PID and the start of
            // the command line readable.
            let short: String = if cmd.chars().count() > 80 {
                cmd.chars().take(77).chain("...".chars()).collect()
            } else {
                cmd.to_string()
            };
            parts.push(sanitize_frame_text(&format!("process {pid}:\"{short}\"")));
        }
        if opts.threads {
            parts.push(sanitize_frame_text(&format!(
                "thread ({})",
                profile.thread(key.thread).label()
            )));
        }
        for f in profile.stack_frames(key.stack) {
            parts.push(sanitize_frame_text(&frame_label(
                profile,
                profile.frame(f),
                opts,
            )));
        }
        if parts.is_empty() {
            continue;
        }
        *merged.entry(parts.join(";")).or_insert(0) += count;
    }
    merged
        .into_iter()
        .map(|(stack, count)| format!("{stack} {count}"))
        .collect()
}

/// Write folded stacks.
pub fn write_folded(
    profile: &Profile,
    opts: &StackOptions,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    for line in folded_lines(profile, opts) {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// Write an interactive SVG flame graph.
pub fn write_flamegraph(
    profile: &Profile,
    opts: &StackOptions,
    title: &str,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let lines = folded_lines(profile, opts);
    let mut options = inferno::flamegraph::Options::default();
    // The title carries the target's command line.
    options.title = crate::sanitize_text(title);
    options.count_name = "samples".to_string();
    options.direction = inferno::flamegraph::Direction::Inverted;
    if lines.is_empty() {
        // inferno refuses an empty profile; say so in a valid SVG instead.
        return write!(
            out,
            concat!(
                r#"<?xml version="1.0" standalone="no"?>"#,
                r#"<svg xmlns="http://www.w3.org/2000/svg" width="600" height="60">"#,
                r#"<text x="10" y="30">No samples were collected.</text></svg>"#
            )
        );
    }
    inferno::flamegraph::from_lines(&mut options, lines.iter().map(|s| s.as_str()), out)
        .map_err(|e| std::io::Error::other(e.to_string()))
}
