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
    let mut per_thread: BTreeMap<Group, (Vec<Vec<usize>>, Vec<f64>)> = BTreeMap::new();
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
        let entry = per_thread.entry((group, key.thread)).or_default();
        entry.0.push(stack);
        entry.1.push(count as f64 * weight);
    }
    let profiles: Vec<_> = per_thread
        .into_iter()
        .map(|((group, thread), (samples, weights))| {
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
