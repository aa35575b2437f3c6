//! The memory section of the HTML report (`record --memory`): `memory` in
//! the JSON document, `null` without `--memory`:
//!
//! ```text
//! memory: { mean_bytes, total_bytes, attributed_bytes, duration_s, bucket_s,
//!           lines: [{ label, alloc_bytes, live_bytes }],      // top rows
//!           functions: [..], endpoints: [..],
//!           leaks: [{ label, score, live_bytes, growth_per_s }],
//!           series: [{ label, live: [bytes per bucket] }] }   // top sites by peak live
//! ```

use std::collections::HashMap;

use pyrometer_profile::{AllocationSite, Profile};
use serde_json::{json, Value};

use crate::display_filename;

/// Rows per table, sites per chart.
const ROWS: usize = 50;
const SERIES: usize = 8;

fn innermost(profile: &Profile, site: &AllocationSite, by_function: bool) -> String {
    match profile.stack_frames(site.stack).last() {
        Some(f) => {
            let f = profile.frame(*f);
            let line = if by_function { f.first_line } else { f.line };
            format!(
                "{} ({}:{line})",
                profile.str(f.name),
                display_filename(profile.str(f.filename), false)
            )
        }
        None => "(stack not read)".to_string(),
    }
}

fn rows(map: HashMap<String, (f64, f64)>) -> Value {
    let mut v: Vec<_> = map.into_iter().collect();
    // By the bytes shown (rounded): sums over sites in hash order differ
    // in their last bits, which must not reorder the rows.
    v.sort_by(|a, b| {
        b.1 .0
            .round()
            .total_cmp(&a.1 .0.round())
            .then(a.0.cmp(&b.0))
    });
    Value::Array(
        v.into_iter()
            .take(ROWS)
            .map(|(label, (alloc, live))| {
                json!({ "label": label, "alloc_bytes": alloc.round(), "live_bytes": live.round() })
            })
            .collect(),
    )
}

/// The `memory` value of the report.
pub(super) fn report(profile: &Profile) -> Value {
    let a = profile.allocations();
    if !a.enabled {
        return Value::Null;
    }
    let mut lines: HashMap<String, (f64, f64)> = HashMap::new();
    let mut functions: HashMap<String, (f64, f64)> = HashMap::new();
    let mut endpoints: HashMap<String, (f64, f64)> = HashMap::new();
    let mut series: HashMap<String, Vec<f64>> = HashMap::new();
    for (site, s) in a.sites() {
        let add = |m: &mut HashMap<String, (f64, f64)>, k: String| {
            let e = m.entry(k).or_default();
            e.0 += s.alloc_bytes;
            e.1 += s.live_bytes;
        };
        let line = innermost(profile, site, false);
        add(&mut lines, line.clone());
        add(&mut functions, innermost(profile, site, true));
        if let Some(e) = site.endpoint {
            add(&mut endpoints, profile.str(e).to_string());
        }
        let sum = series.entry(line).or_default();
        if sum.len() < s.live_series.len() {
            sum.resize(s.live_series.len(), 0.0);
        }
        for (acc, v) in sum.iter_mut().zip(&s.live_series) {
            *acc += v;
        }
    }
    let mut top: Vec<(String, Vec<f64>)> = series.into_iter().collect();
    let peak = |v: &[f64]| v.iter().copied().fold(0.0, f64::max).round();
    top.sort_by(|a, b| peak(&b.1).total_cmp(&peak(&a.1)).then(a.0.cmp(&b.0)));
    let mut leaks: Vec<(String, &pyrometer_profile::LeakCandidate)> = Vec::new();
    let candidates = a.leak_candidates();
    for c in &candidates {
        leaks.push((innermost(profile, &c.site, false), c));
    }
    // Most likely first; equal scores by label (not by hash order).
    leaks.sort_by(|a, b| b.1.score.total_cmp(&a.1.score).then(a.0.cmp(&b.0)));
    let leaks: Vec<Value> = leaks
        .into_iter()
        .take(ROWS)
        .map(|(label, c)| {
            json!({
                "label": label,
                "endpoint": c.site.endpoint.map(|e| profile.str(e).to_string()),
                "score": (c.score * 100.0).round() / 100.0,
                "live_bytes": c.live_bytes.round(),
                "growth_per_s": c.growth_per_sec.round(),
            })
        })
        .collect();
    json!({
        "mean_bytes": a.mean_bytes,
        "total_bytes": a.total_bytes().round(),
        "attributed_bytes": a.attributed_bytes().round(),
        "duration_s": profile.meta.duration.as_secs_f64(),
        "bucket_s": a.bucket_width().as_secs_f64(),
        "lines": rows(lines),
        "functions": rows(functions),
        "endpoints": rows(endpoints),
        "leaks": leaks,
        "series": top
            .into_iter()
            .filter(|(_, v)| peak(v) > 0.0)
            .take(SERIES)
            .map(|(label, live)| json!({ "label": label, "live": live.iter().map(|v| v.round()).collect::<Vec<_>>() }))
            .collect::<Vec<_>>(),
    })
}
