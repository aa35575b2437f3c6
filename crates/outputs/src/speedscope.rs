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
    let mut per_thread: BTreeMap<ThreadKey, (Vec<Vec<usize>>, Vec<f64>)> = BTreeMap::new();
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
        let entry = per_thread.entry(key.thread).or_default();
        entry.0.push(stack);
        entry.1.push(count as f64 * weight);
    }
    let profiles: Vec<_> = per_thread
        .into_iter()
        .map(|(thread, (samples, weights))| {
            let total: f64 = weights.iter().sum();
            json!({
                "type": "sampled",
                "name": profile.thread(thread).label(),
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
