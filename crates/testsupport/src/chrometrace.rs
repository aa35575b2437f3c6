//! Checks of a Chrome trace event document (`{"traceEvents": [...]}`) as
//! Perfetto reads it: every event has its required fields, every track's
//! complete slices nest strictly (no partial overlap), and every track and
//! process is named; pid and tid fit the 32 bits Perfetto's JSON importer
//! keeps, `displayTimeUnit` is one it knows, categories and names are not
//! empty.
//!
//! (Perfetto's own tools cannot check it here: the `perfetto` package on
//! PyPI runs `trace_processor_shell`, which it downloads from the internet
//! at first use, and no npm package ships trace_processor.)

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// One complete (`X`) slice.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSlice {
    pub name: String,
    pub cat: String,
    /// Start, microseconds.
    pub ts: f64,
    /// Duration, microseconds.
    pub dur: f64,
    /// Nesting depth on its track (0: outermost).
    pub depth: usize,
}

/// A validated trace: slices per (pid, tid) track, in start order, and names.
#[derive(Debug, Default)]
pub struct Trace {
    pub tracks: BTreeMap<(i64, i64), Vec<TraceSlice>>,
    pub thread_names: BTreeMap<(i64, i64), String>,
    pub process_names: BTreeMap<i64, String>,
    pub other: Value,
}

impl Trace {
    /// Sum of the outermost slices' durations of a track, in seconds.
    pub fn root_seconds(&self, track: (i64, i64)) -> f64 {
        self.tracks
            .get(&track)
            .map(|s| {
                s.iter()
                    .filter(|s| s.depth == 0)
                    .map(|s| s.dur)
                    .sum::<f64>()
                    / 1e6
            })
            .unwrap_or(0.0)
    }
}

/// Parse and check a trace; every problem found is reported.
pub fn validate_trace(text: &str) -> Result<Trace, Vec<String>> {
    let doc: Value = match serde_json::from_str(text) {
        Ok(d) => d,
        Err(e) => return Err(vec![format!("not JSON: {e}")]),
    };
    let mut problems = Vec::new();
    let Some(events) = doc["traceEvents"].as_array() else {
        return Err(vec!["no traceEvents array".into()]);
    };
    let mut trace = Trace {
        other: doc["otherData"].clone(),
        ..Trace::default()
    };
    if let Some(unit) = doc.get("displayTimeUnit") {
        if !matches!(unit.as_str(), Some("ms") | Some("ns")) {
            problems.push(format!(
                "displayTimeUnit {unit} is neither \"ms\" nor \"ns\""
            ));
        }
    }
    let mut raw: BTreeMap<(i64, i64), Vec<TraceSlice>> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        let name = e["name"].as_str();
        let ph = e["ph"].as_str();
        let pid = e["pid"].as_i64();
        let tid = e["tid"].as_i64();
        let ts = e["ts"].as_f64();
        let (Some(name), Some(ph), Some(pid), Some(tid), Some(ts)) = (name, ph, pid, tid, ts)
        else {
            problems.push(format!("event {i} lacks name/ph/pid/tid/ts: {e}"));
            continue;
        };
        if u32::try_from(pid).is_err() || u32::try_from(tid).is_err() {
            problems.push(format!("event {i}: pid or tid outside 32 bits: {e}"));
        }
        if name.is_empty() {
            problems.push(format!("event {i} has an empty name: {e}"));
        }
        match ph {
            "M" => {
                let Some(value) = e["args"]["name"].as_str() else {
                    problems.push(format!("metadata event {i} has no args.name: {e}"));
                    continue;
                };
                match name {
                    "thread_name" => {
                        trace.thread_names.insert((pid, tid), value.to_string());
                    }
                    "process_name" => {
                        trace.process_names.insert(pid, value.to_string());
                    }
                    other => problems.push(format!("unknown metadata {other}")),
                }
            }
            "X" => {
                let (Some(dur), Some(cat)) = (e["dur"].as_f64(), e["cat"].as_str()) else {
                    problems.push(format!("X event {i} lacks dur or cat: {e}"));
                    continue;
                };
                if cat.is_empty() {
                    problems.push(format!("X event {i} has an empty category: {e}"));
                }
                if dur < 0.0 || ts < 0.0 || !dur.is_finite() {
                    problems.push(format!("X event {i} has a negative time: {e}"));
                }
                raw.entry((pid, tid)).or_default().push(TraceSlice {
                    name: name.to_string(),
                    cat: cat.to_string(),
                    ts,
                    dur,
                    depth: 0,
                });
            }
            other => problems.push(format!("event {i}: unexpected phase {other}")),
        }
    }
    const EPS: f64 = 1e-3; // microseconds
    for (track, mut slices) in raw {
        if !trace.thread_names.contains_key(&track) {
            problems.push(format!("track {track:?} has no thread_name"));
        }
        if !trace.process_names.contains_key(&track.0) {
            problems.push(format!("process {} has no process_name", track.0));
        }
        // Outer first at equal starts: longer first.
        slices.sort_by(|a, b| a.ts.total_cmp(&b.ts).then(b.dur.total_cmp(&a.dur)));
        let mut open: Vec<f64> = Vec::new(); // ends of the enclosing slices
        for s in &mut slices {
            while open.last().is_some_and(|end| *end <= s.ts + EPS) {
                open.pop();
            }
            if let Some(end) = open.last() {
                if s.ts + s.dur > end + EPS {
                    problems.push(format!(
                        "track {track:?}: {} [{}, {}] overlaps its enclosing slice ending at {end}",
                        s.name,
                        s.ts,
                        s.ts + s.dur
                    ));
                }
            }
            s.depth = open.len();
            open.push(s.ts + s.dur);
        }
        trace.tracks.insert(track, slices);
    }
    let named: BTreeSet<i64> = trace.thread_names.keys().map(|k| k.0).collect();
    for pid in named {
        if !trace.process_names.contains_key(&pid) {
            problems.push(format!("process {pid} has threads but no process_name"));
        }
    }
    if problems.is_empty() {
        Ok(trace)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::validate_trace;

    #[test]
    fn the_checks_catch_what_perfetto_refuses() {
        let meta = r#"{"name":"process_name","ph":"M","pid":1,"tid":0,"ts":0,"args":{"name":"p"}},
                      {"name":"thread_name","ph":"M","pid":1,"tid":2,"ts":0,"args":{"name":"t"}}"#;
        let good = format!(
            r#"{{"traceEvents":[{meta},
               {{"name":"f","cat":"python","ph":"X","pid":1,"tid":2,"ts":0,"dur":10}},
               {{"name":"g","cat":"python","ph":"X","pid":1,"tid":2,"ts":2,"dur":5}}],
               "displayTimeUnit":"ms"}}"#
        );
        assert!(validate_trace(&good).is_ok());
        for (bad, why) in [
            (
                good.replace(r#""ts":2,"dur":5"#, r#""ts":8,"dur":5"#),
                "overlaps",
            ),
            (
                good.replace(r#""tid":2,"ts":2"#, r#""tid":4294967296,"ts":2"#),
                "32 bits",
            ),
            (
                good.replace(
                    r#""cat":"python","ph":"X","pid":1,"tid":2,"ts":0"#,
                    r#""cat":"","ph":"X","pid":1,"tid":2,"ts":0"#,
                ),
                "empty category",
            ),
            (
                good.replace(r#""displayTimeUnit":"ms""#, r#""displayTimeUnit":"s""#),
                "displayTimeUnit",
            ),
            (good.replace(r#""name":"g""#, r#""name":"""#), "empty name"),
        ] {
            let problems = validate_trace(&bad).expect_err(why);
            assert!(
                problems.iter().any(|p| p.contains(why)),
                "{why}: {problems:?}"
            );
        }
    }
}
