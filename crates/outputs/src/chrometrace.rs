//! Chrome trace event JSON (`{"traceEvents": [...]}`), for Perfetto
//! (ui.perfetto.dev) and chrome://tracing: one track per thread (pid = the
//! process, tid = the OS thread id) named by `process_name` /
//! `thread_name` metadata events, and complete (`X`) slices built from the
//! profile's timeline. Consecutive samples of a thread that share a prefix
//! of their stack share one slice per frame of that prefix; a request
//! being served is a slice around the frames of its samples, so that every
//! slice nests strictly inside its parent on its track (Perfetto requires
//! it).
//!
//! A slice ends where the next sample that differs from it starts; after a
//! thread's last sample, or before a gap (an idle sample left out, a
//! thread not sampled for more than [`GAP_PERIODS`] periods), it ends one
//! period after its last sample — except a request's slice, which spans a
//! gap when the same request goes on after it (as the request statistics
//! count it).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::time::Duration;

use pyrometer_profile::{FrameId, Profile, StrId, ThreadKey, TimelineEntry};
use pyrometer_sampler::ThreadState;
use serde_json::json;

use crate::html::FxMap;
use crate::{frame_label, StackOptions};

/// A thread not sampled for longer than this many periods has a gap.
pub const GAP_PERIODS: f64 = 2.5;

/// What a slice stands for; equal keys at the same depth of consecutive
/// samples are one slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SliceKey {
    /// A request: its identity and its endpoint's label.
    Request(u64, usize),
    /// A frame, by label.
    Frame(usize),
}

struct Slice {
    start: Duration,
    end: Duration,
    depth: usize,
    key: SliceKey,
}

/// Labels, interned.
#[derive(Default)]
struct Names {
    list: Vec<String>,
    index: HashMap<String, usize>,
    by_frame: FxMap<FrameId, usize>,
    by_endpoint: FxMap<Option<StrId>, usize>,
    /// Each label as a JSON string, made when first written.
    json: Vec<Option<Vec<u8>>>,
}

impl Names {
    fn get(&mut self, s: String) -> usize {
        if let Some(i) = self.index.get(&s) {
            return *i;
        }
        self.list.push(s.clone());
        self.index.insert(s, self.list.len() - 1);
        self.list.len() - 1
    }
}

/// Microseconds, as the trace format wants them.
fn micros(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1000.0
}

/// The stack of slices of one sample, outermost first.
fn path_of(
    profile: &Profile,
    opts: &StackOptions,
    names: &mut Names,
    e: &TimelineEntry,
) -> Vec<SliceKey> {
    let mut path = Vec::new();
    if let Some(r) = e.request {
        let id = match names.by_endpoint.get(&e.endpoint) {
            Some(id) => *id,
            None => {
                let label = e
                    .endpoint
                    .map(|ep| profile.str(ep).to_string())
                    .unwrap_or_else(|| "request".to_string());
                let id = names.get(label);
                names.by_endpoint.insert(e.endpoint, id);
                id
            }
        };
        path.push(SliceKey::Request(r, id));
    }
    for f in profile.stack_frames(e.stack) {
        let id = match names.by_frame.get(&f) {
            Some(id) => *id,
            None => {
                let id = names.get(frame_label(profile, profile.frame(f), opts));
                names.by_frame.insert(f, id);
                id
            }
        };
        path.push(SliceKey::Frame(id));
    }
    path
}

/// Slices of one thread's samples (in time order).
fn slices_of(
    profile: &Profile,
    opts: &StackOptions,
    names: &mut Names,
    entries: &[&TimelineEntry],
    period: Duration,
) -> Vec<Slice> {
    let gap = period.mul_f64(GAP_PERIODS);
    let mut out = Vec::new();
    // Open slices, outermost first: (key, start).
    let mut open: Vec<(SliceKey, Duration)> = Vec::new();
    let mut last: Option<Duration> = None;
    let close_from = |open: &mut Vec<(SliceKey, Duration)>,
                      depth: usize,
                      end: Duration,
                      out: &mut Vec<Slice>| {
        while open.len() > depth {
            if let Some((key, start)) = open.pop() {
                out.push(Slice {
                    start,
                    end: end.max(start),
                    depth: open.len(),
                    key,
                });
            }
        }
    };
    // Samples left out (idle) since the last one shown.
    let mut skipped = false;
    for e in entries {
        if e.state == ThreadState::Idle && !opts.include_idle {
            // Left out, as in every other output: a gap on the track.
            skipped = true;
            continue;
        }
        let path = path_of(profile, opts, names, e);
        if let Some(t) = last {
            if skipped || e.time.saturating_sub(t) > gap || e.time < t {
                // A gap ends the frames one period after the last sample; a
                // request that goes on after it stays one slice.
                let same_request = matches!(
                    (open.first(), path.first()),
                    (Some((SliceKey::Request(a, _), _)), Some(SliceKey::Request(b, _))) if a == b
                ) && e.time >= t;
                let keep = usize::from(same_request);
                close_from(&mut open, keep, t + period, &mut out);
            }
        }
        skipped = false;
        let common = open
            .iter()
            .zip(&path)
            .take_while(|((a, _), b)| a == *b)
            .count();
        close_from(&mut open, common, e.time, &mut out);
        for key in path.into_iter().skip(common) {
            open.push((key, e.time));
        }
        last = Some(e.time);
    }
    if let Some(t) = last {
        close_from(&mut open, 0, t + period, &mut out);
    }
    // Parents before children: by start, then depth.
    out.sort_by_key(|s| (s.start, s.depth));
    out
}

/// Write a Chrome trace of the profile's timeline.
pub fn write_chrometrace(
    profile: &Profile,
    opts: &StackOptions,
    title: &str,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let rate = profile.meta.rate;
    let period = if rate > 0.0 && rate.is_finite() {
        Duration::from_secs_f64(1.0 / rate)
    } else {
        Duration::from_millis(10)
    };
    let mut by_thread: BTreeMap<ThreadKey, Vec<&TimelineEntry>> = BTreeMap::new();
    for e in profile.timeline().entries() {
        by_thread.entry(e.thread).or_default().push(e);
    }
    let track = |key: ThreadKey| {
        let t = profile.thread(key);
        let tid = match t.native_id {
            Some(n) => i64::from(n),
            None => (t.thread_id & 0x7fff_ffff) as i64,
        };
        (i64::from(t.pid), tid)
    };

    write!(out, "{{\"traceEvents\":[")?;
    let mut first = true;
    let emit =
        |out: &mut dyn Write, first: &mut bool, v: serde_json::Value| -> std::io::Result<()> {
            if !*first {
                writeln!(out, ",")?;
            }
            *first = false;
            serde_json::to_writer(&mut *out, &v).map_err(std::io::Error::other)
        };

    let pids: BTreeSet<i64> = by_thread.keys().map(|k| track(*k).0).collect();
    for pid in &pids {
        let name = i32::try_from(*pid)
            .ok()
            .and_then(|p| profile.process_cmdline(p))
            .map(|c| format!("{c} ({pid})"))
            .unwrap_or_else(|| format!("pid {pid}"));
        emit(
            out,
            &mut first,
            json!({"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
                   "ts": 0, "args": {"name": name}}),
        )?;
    }
    let mut names = Names::default();
    for (key, entries) in &by_thread {
        let (pid, tid) = track(*key);
        let thread = profile.thread(*key);
        let name = thread.name.clone().unwrap_or_else(|| thread.label());
        emit(
            out,
            &mut first,
            json!({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                   "ts": 0, "args": {"name": name}}),
        )?;
        // Slices are most of the trace (millions for a long timeline):
        // written directly, keys in the order `serde_json` sorts them,
        // each name escaped once.
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
        for s in slices_of(profile, opts, &mut names, entries, period) {
            let (label, cat) = match s.key {
                SliceKey::Request(_, label) => (label, "request"),
                SliceKey::Frame(label) => (label, "python"),
            };
            if names.json.len() <= label {
                names.json.resize(label + 1, None);
            }
            if names.json[label].is_none() {
                names.json[label] = Some(serde_json::to_vec(&names.list[label])?);
            }
            buf.extend_from_slice(if first { b"" } else { b",\n" });
            first = false;
            buf.extend_from_slice(b"{\"cat\":\"");
            buf.extend_from_slice(cat.as_bytes());
            buf.extend_from_slice(b"\",\"dur\":");
            serde_json::to_writer(&mut buf, &micros(s.end - s.start))?;
            buf.extend_from_slice(b",\"name\":");
            buf.extend_from_slice(names.json[label].as_deref().unwrap_or(b"\"\""));
            buf.extend_from_slice(b",\"ph\":\"X\",\"pid\":");
            serde_json::to_writer(&mut buf, &pid)?;
            buf.extend_from_slice(b",\"tid\":");
            serde_json::to_writer(&mut buf, &tid)?;
            buf.extend_from_slice(b",\"ts\":");
            serde_json::to_writer(&mut buf, &micros(s.start))?;
            buf.push(b'}');
            if buf.len() >= 1 << 16 {
                out.write_all(&buf)?;
                buf.clear();
            }
        }
        out.write_all(&buf)?;
    }
    let timeline = profile.timeline();
    let kept = timeline.entries().len();
    let mut other = json!({
        "title": title,
        "exporter": concat!("pyrometer ", env!("CARGO_PKG_VERSION")),
        "target": profile.meta.target,
        "python_version": profile.meta.python_version,
        "rate_hz": rate,
        "timeline_samples": kept,
        "timeline_dropped": timeline.dropped,
        "timeline_cut": timeline.was_cut(),
    });
    if let Some(start) = profile.meta.start_time {
        if let Ok(d) = start.duration_since(std::time::UNIX_EPOCH) {
            other["start_unix_ns"] = json!(d.as_nanos().min(u64::MAX as u128) as u64);
        }
    }
    if timeline.was_cut() {
        other["note"] = json!(format!(
            "only the first {kept} samples are on the timeline; {} later samples were left out \
             (raise --timeline-samples); the other formats hold every sample",
            timeline.dropped
        ));
    }
    write!(out, "],\"displayTimeUnit\":\"ms\",\"otherData\":")?;
    serde_json::to_writer(&mut *out, &other).map_err(std::io::Error::other)?;
    writeln!(out, "}}")
}
