//! speedscope's JSON file format: one sampled profile per thread.
//! Schema: https://www.speedscope.app/file-format-schema.json

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use pyrometer_profile::{FrameId, Profile, ThreadKey};
use pyrometer_sampler::ThreadState;
use serde_json::json;

use crate::{display_filename, StackOptions};

/// Write a speedscope document.
pub fn write_speedscope(
    profile: &Profile,
    opts: &StackOptions,
    name: &str,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let mut frames = Vec::new();
    let mut frame_index: HashMap<(FrameId, bool), usize> = HashMap::new();
    // One profile per thread; with `endpoints`, per (endpoint, thread).
    type Group = (Option<String>, ThreadKey);
    let mut per_thread: BTreeMap<Group, (Vec<Vec<usize>>, Vec<u64>)> = BTreeMap::new();
    let mut slots: HashMap<
        (
            Option<String>,
            ThreadKey,
            Option<pyrometer_profile::StackId>,
        ),
        usize,
    > = HashMap::new();
    let weight = if profile.meta.rate > 0.0 {
        1.0 / profile.meta.rate
    } else {
        1.0
    };
    for (key, count) in profile.counts() {
        if key.state == ThreadState::Idle && !opts.include_idle {
            continue;
        }
        let mut stack = Vec::new();
        for f in profile.stack_frames(key.stack) {
            let idx = *frame_index
                .entry((f, opts.function_lines))
                .or_insert_with(|| {
                    let info = profile.frame(f);
                    let line = if opts.function_lines {
                        info.first_line
                    } else {
                        info.line
                    };
                    let mut fr = json!({
                        "name": profile.str(info.name),
                        "file": display_filename(profile.str(info.filename), opts.full_filenames),
                    });
                    if !opts.no_line_numbers && line > 0 {
                        fr["line"] = json!(line);
                    }
                    frames.push(fr);
                    frames.len() - 1
                });
            stack.push(idx);
        }
        if stack.is_empty() {
            continue;
        }
        let group = opts.endpoints.then(|| {
            key.endpoint
                .map(|e| profile.str(e).to_string())
                .unwrap_or_else(|| "none".into())
        });
        // Samples of one stack in one profile are one entry, whatever
        // their state, endpoint or category labels: the document then
        // does not depend on the order in which labels were interned.
        let entry = per_thread.entry((group.clone(), key.thread)).or_default();
        let slot = *slots
            .entry((group, key.thread, key.stack))
            .or_insert_with(|| {
                entry.0.push(stack);
                entry.1.push(0);
                entry.1.len() - 1
            });
        entry.1[slot] += count;
    }
    let profiles: Vec<_> = per_thread
        .into_iter()
        .map(|((group, thread), (samples, counts))| {
            let weights: Vec<f64> = counts.iter().map(|&c| c as f64 * weight).collect();
            let total: f64 = weights.iter().sum();
            let name = match group {
                Some(e) => format!("{e} — {}", profile.thread(thread).label()),
                None => profile.thread(thread).label(),
            };
            json!({
                "type": "sampled",
                "name": name,
                "unit": "seconds",
                "startValue": 0.0,
                "endValue": total,
                "samples": samples,
                "weights": weights,
            })
        })
        .collect();
    let doc = json!({
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "shared": { "frames": frames },
        "profiles": profiles,
        "name": name,
        "activeProfileIndex": 0,
        "exporter": concat!("pyrometer ", env!("CARGO_PKG_VERSION")),
    });
    serde_json::to_writer(&mut *out, &doc)?;
    writeln!(out)
}
