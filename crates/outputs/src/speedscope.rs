//! speedscope's JSON file format: one sampled profile per thread, each
//! distinct stack once with its weight (seconds).
//! Schema: https://www.speedscope.app/file-format-schema.json
//!
//! Written directly rather than through `serde_json::Value` (a million
//! samples make hundreds of thousands of stacks): keys in the order
//! `serde_json` would sort them, each stack's text built once and copied
//! into every profile that has it.

use std::io::Write;

use pyrometer_profile::{Profile, StackId, StrId, ThreadKey};
use pyrometer_sampler::ThreadState;
use serde_json::json;

use crate::html::FxMap;
use crate::{display_filename, StackOptions};

/// Write a speedscope document.
pub fn write_speedscope(
    profile: &Profile,
    opts: &StackOptions,
    name: &str,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let weight = if profile.meta.rate > 0.0 {
        1.0 / profile.meta.rate
    } else {
        1.0
    };
    // One profile per thread; with `endpoints`, per (endpoint, thread).
    // Samples of one stack in one profile are one entry, whatever their
    // state, endpoint or category labels: the document then does not
    // depend on the order in which labels were interned.
    type Entry = (Option<Option<StrId>>, ThreadKey, StackId);
    let mut sums: FxMap<Entry, u64> = FxMap::default();
    for (key, count) in profile.counts_unordered() {
        if key.state == ThreadState::Idle && !opts.include_idle {
            continue;
        }
        let Some(stack) = key.stack else { continue };
        let group = opts.endpoints.then_some(key.endpoint);
        *sums.entry((group, key.thread, stack)).or_insert(0) += count;
    }
    let group_name = |g: Option<Option<StrId>>| g.map(|e| e.map_or("none", |e| profile.str(e)));
    let mut entries: Vec<(Entry, u64)> = sums.into_iter().collect();
    // Profiles by (endpoint name, thread), stacks by id within each.
    entries.sort_unstable_by(|(a, _), (b, _)| {
        group_name(a.0)
            .cmp(&group_name(b.0))
            .then(a.1.cmp(&b.1))
            .then(a.2.cmp(&b.2))
    });

    // Frames get their index when first met, root first; each stack's
    // `[i,j,k]` text is made once.
    let mut frame_index: Vec<u32> = Vec::new();
    let mut frames: Vec<pyrometer_profile::FrameId> = Vec::new();
    let mut stack_text: FxMap<StackId, (usize, usize)> = FxMap::default();
    let mut arena: Vec<u8> = Vec::new();
    let mut path = Vec::new();

    let mut doc: Vec<u8> = Vec::with_capacity(1 << 20);
    doc.extend_from_slice(br#"{"$schema":"https://www.speedscope.app/file-format-schema.json","activeProfileIndex":0,"exporter":"#);
    serde_json::to_writer(&mut doc, concat!("pyrometer ", env!("CARGO_PKG_VERSION")))?;
    doc.extend_from_slice(br#","name":"#);
    serde_json::to_writer(&mut doc, name)?;
    doc.extend_from_slice(br#","profiles":["#);
    out.write_all(&doc)?;
    doc.clear();

    let mut i = 0;
    let mut first_profile = true;
    while i < entries.len() {
        let (group, thread) = (entries[i].0 .0, entries[i].0 .1);
        let end = entries[i..]
            .iter()
            .position(|((g, t, _), _)| (*g, *t) != (group, thread))
            .map_or(entries.len(), |n| i + n);
        let group_entries = &entries[i..end];
        i = end;
        let weights: Vec<f64> = group_entries
            .iter()
            .map(|(_, c)| *c as f64 * weight)
            .collect();
        let total: f64 = weights.iter().sum();
        let label = match group_name(group) {
            Some(e) => format!("{e} — {}", profile.thread(thread).label()),
            None => profile.thread(thread).label(),
        };
        if !first_profile {
            doc.push(b',');
        }
        first_profile = false;
        doc.extend_from_slice(br#"{"endValue":"#);
        serde_json::to_writer(&mut doc, &total)?;
        doc.extend_from_slice(br#","name":"#);
        serde_json::to_writer(&mut doc, &label)?;
        doc.extend_from_slice(br#","samples":["#);
        for (k, ((_, _, stack), _)) in group_entries.iter().enumerate() {
            if k > 0 {
                doc.push(b',');
            }
            let (from, to) = *stack_text.entry(*stack).or_insert_with(|| {
                path.clear();
                let mut cur = Some(*stack);
                while let Some(s) = cur {
                    let node = profile.stack(s);
                    path.push(node.frame);
                    cur = node.parent;
                }
                let from = arena.len();
                arena.push(b'[');
                for (j, f) in path.iter().rev().enumerate() {
                    let fi = f.0 as usize;
                    if fi >= frame_index.len() {
                        frame_index.resize(fi + 1, u32::MAX);
                    }
                    if frame_index[fi] == u32::MAX {
                        frame_index[fi] = frames.len() as u32;
                        frames.push(*f);
                    }
                    if j > 0 {
                        arena.push(b',');
                    }
                    // Writing into a Vec cannot fail.
                    let _ = write!(arena, "{}", frame_index[fi]);
                }
                arena.push(b']');
                (from, arena.len())
            });
            doc.extend_from_slice(&arena[from..to]);
        }
        doc.extend_from_slice(
            br#"],"startValue":0.0,"type":"sampled","unit":"seconds","weights":["#,
        );
        for (k, w) in weights.iter().enumerate() {
            if k > 0 {
                doc.push(b',');
            }
            serde_json::to_writer(&mut doc, w)?;
        }
        doc.extend_from_slice(b"]}");
        if doc.len() >= 1 << 20 {
            out.write_all(&doc)?;
            doc.clear();
        }
    }
    doc.extend_from_slice(br#"],"shared":{"frames":["#);
    for (k, f) in frames.iter().enumerate() {
        if k > 0 {
            doc.push(b',');
        }
        let info = profile.frame(*f);
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
        serde_json::to_writer(&mut doc, &fr)?;
    }
    doc.extend_from_slice(b"]}}\n");
    out.write_all(&doc)
}
