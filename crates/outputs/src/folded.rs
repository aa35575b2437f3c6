//! Folded stacks (`frame;frame;leaf count`, root first) and the SVG flame
//! graph rendered from them by inferno.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use pyrometer_profile::{FrameId, Profile, StackId, StrId, ThreadKey};
use pyrometer_sampler::ThreadState;

use crate::{frame_label, sanitize_frame_text, StackOptions};

/// Folded lines, merged and sorted.
pub fn folded_lines(profile: &Profile, opts: &StackOptions) -> Vec<String> {
    // Sum by what the lines show first (states, categories and, unless
    // asked for, threads, processes and endpoints are not shown), so that
    // each distinct line is built once.
    type LineKey = (Option<StrId>, Option<i32>, Option<ThreadKey>, StackId);
    let mut by_key: HashMap<LineKey, u64> = HashMap::new();
    for (key, count) in profile.counts() {
        if key.state == ThreadState::Idle && !opts.include_idle {
            continue;
        }
        // A thread running no Python code has nothing to show.
        let Some(stack) = key.stack else { continue };
        let k = (
            key.endpoint.filter(|_| opts.endpoints),
            opts.processes.then(|| profile.thread(key.thread).pid),
            opts.threads.then_some(key.thread),
            stack,
        );
        *by_key.entry(k).or_insert(0) += count;
    }
    let mut labels: HashMap<FrameId, String> = HashMap::new();
    let mut merged: BTreeMap<String, u64> = BTreeMap::new();
    for ((endpoint, pid, thread, stack), count) in by_key {
        let mut line = String::new();
        let push = |line: &mut String, part: &str| {
            if !line.is_empty() {
                line.push(';');
            }
            line.push_str(part);
        };
        if opts.endpoints {
            let e = endpoint.map(|e| profile.str(e)).unwrap_or("none");
            push(&mut line, &sanitize_frame_text(&format!("endpoint ({e})")));
        }
        if let Some(pid) = pid {
            let cmd = profile.process_cmdline(pid).unwrap_or("");
            // Flame graphs cut long labels: keep the PID and the start of
            // the command line readable.
            let short: String = if cmd.chars().count() > 80 {
                cmd.chars().take(77).chain("...".chars()).collect()
            } else {
                cmd.to_string()
            };
            push(
                &mut line,
                &sanitize_frame_text(&format!("process {pid}:\"{short}\"")),
            );
        }
        if let Some(t) = thread {
            push(
                &mut line,
                &sanitize_frame_text(&format!("thread ({})", profile.thread(t).label())),
            );
        }
        for f in profile.stack_frames(Some(stack)) {
            let label = labels.entry(f).or_insert_with(|| {
                sanitize_frame_text(&frame_label(profile, profile.frame(f), opts))
            });
            push(&mut line, label);
        }
        if line.is_empty() {
            continue;
        }
        *merged.entry(line).or_insert(0) += count;
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
