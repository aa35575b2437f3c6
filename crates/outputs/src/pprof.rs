//! pprof (`perftools.profiles.Profile`, google/pprof `proto/profile.proto`),
//! gzipped: pyrometer's saved profile. [`write_pprof`] writes every
//! (stack, thread, state) of a [`Profile`] as one sample; [`read_pprof`]
//! rebuilds the `Profile`, so that `pyrometer report` renders from the
//! saved file exactly what `record` would have rendered.
//!
//! Layout:
//! * sample types `samples/count`, `wall/nanoseconds` (count × 1e9/rate)
//!   and `cpu/nanoseconds` (the same, only for samples of threads on a CPU:
//!   state python or native); period type `wall/nanoseconds`, period
//!   1e9/rate;
//! * one function per (name, file, first line), `system_name` = file name
//!   (pprof leaves a function alone when it differs from the name, so
//!   `<module>` is not "demangled" away);
//! * one location per frame, with one line (function, line);
//! * labels per sample: `thread_name`, `process` (command line) and `state`
//!   (python, native, gil-wait, idle) as strings; `pid`, `thread_id`
//!   (`threading.get_ident()`) and `native_id` (OS thread id) as numbers;
//! * the timeline (the first samples in time order, see
//!   `pyrometer_profile::Timeline`): after the aggregated samples, one
//!   sample per timeline entry with all values 0 (totals are unchanged),
//!   labels `timestamp_ns` (ns since the start, unit `nanoseconds`),
//!   `pid`, `thread_id`, `state`, `endpoint` and `request` (the request's
//!   identity); comments `timeline_limit` and `timeline_dropped`;
//! * memory (attach-mode readings, peaks and growth; `record --memory`
//!   allocation sites): more samples of the same kind, each marked by a
//!   label (see `pprof/side.rs`, `pprof/memory.rs`);
//! * `comment`s `pyrometer.KEY=VALUE` with the recording's facts (target,
//!   Python version, rate, ticks, late ticks, errors, …), values escaped
//!   with `\\`, `\n`, `\r`, `\t`.
//! * `comment`s `pyrometer.timeline=…` (samples per time bucket, process
//!   and state) and `pyrometer.requests.N=…` (an endpoint's request count,
//!   total and longest estimated duration and its reservoir of durations),
//!   so that the HTML report rendered from the file has the timeline and
//!   latency percentiles a live one has (the slowest requests' stacks are
//!   not saved).

mod memory;
mod side;

use std::collections::{BTreeMap, BinaryHeap};

use side::{key, Labels, Side, SideSample};
use std::io::{Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::encoding as enc;
use prost::Message;
use pyrometer_profile::{
    FrameId, FrameInfo, Profile, StackId, StackNode, ThreadInfo, ThreadKey, TimelineEntry,
};

use crate::html::FxMap;
use pyrometer_sampler::ThreadState;

/// The messages of `profile.proto`, derived by hand from its field numbers.
pub mod proto {
    /// `perftools.profiles.Profile`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        /// What each value of a sample measures.
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        /// The samples.
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        /// Binary mappings (none for interpreted code).
        #[prost(message, repeated, tag = "3")]
        pub mapping: Vec<Mapping>,
        /// Locations referenced by samples.
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        /// Functions referenced by locations.
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        /// Every string; index 0 is `""`.
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        /// Regex of frames to drop (string index).
        #[prost(int64, tag = "7")]
        pub drop_frames: i64,
        /// Regex of frames to keep (string index).
        #[prost(int64, tag = "8")]
        pub keep_frames: i64,
        /// Start of the recording, Unix nanoseconds.
        #[prost(int64, tag = "9")]
        pub time_nanos: i64,
        /// Length of the recording.
        #[prost(int64, tag = "10")]
        pub duration_nanos: i64,
        /// What `period` measures.
        #[prost(message, optional, tag = "11")]
        pub period_type: Option<ValueType>,
        /// Time between two samples.
        #[prost(int64, tag = "12")]
        pub period: i64,
        /// Free-form comments (string indices).
        #[prost(int64, repeated, tag = "13")]
        pub comment: Vec<i64>,
        /// The sample type viewers show first (string index).
        #[prost(int64, tag = "14")]
        pub default_sample_type: i64,
        /// Documentation link (string index).
        #[prost(int64, tag = "15")]
        pub doc_url: i64,
    }

    /// A type and unit, as string indices.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueType {
        /// E.g. `cpu`.
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        /// E.g. `nanoseconds`.
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }

    /// One stack with its values and labels.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        /// Locations, leaf first.
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        /// One value per sample type.
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
        /// Labels.
        #[prost(message, repeated, tag = "3")]
        pub label: Vec<Label>,
    }

    /// A key with a string or a number.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        /// String index.
        #[prost(int64, tag = "1")]
        pub key: i64,
        /// String index (0: none).
        #[prost(int64, tag = "2")]
        pub str: i64,
        /// Numeric value.
        #[prost(int64, tag = "3")]
        pub num: i64,
        /// Unit of `num` (string index).
        #[prost(int64, tag = "4")]
        pub num_unit: i64,
    }

    /// A binary mapped into the process.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Mapping {
        /// Unique, non-zero.
        #[prost(uint64, tag = "1")]
        pub id: u64,
        /// Start address.
        #[prost(uint64, tag = "2")]
        pub memory_start: u64,
        /// End address.
        #[prost(uint64, tag = "3")]
        pub memory_limit: u64,
        /// Offset in the file.
        #[prost(uint64, tag = "4")]
        pub file_offset: u64,
        /// File name (string index).
        #[prost(int64, tag = "5")]
        pub filename: i64,
        /// Build id (string index).
        #[prost(int64, tag = "6")]
        pub build_id: i64,
        /// Functions are known.
        #[prost(bool, tag = "7")]
        pub has_functions: bool,
        /// File names are known.
        #[prost(bool, tag = "8")]
        pub has_filenames: bool,
        /// Line numbers are known.
        #[prost(bool, tag = "9")]
        pub has_line_numbers: bool,
        /// Inlined functions are known.
        #[prost(bool, tag = "10")]
        pub has_inline_frames: bool,
    }

    /// A program location: one or more lines (inlined calls, caller last).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        /// Unique, non-zero.
        #[prost(uint64, tag = "1")]
        pub id: u64,
        /// Mapping (0: none).
        #[prost(uint64, tag = "2")]
        pub mapping_id: u64,
        /// Instruction address (0: none).
        #[prost(uint64, tag = "3")]
        pub address: u64,
        /// Lines, innermost first.
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
        /// Folded into its caller.
        #[prost(bool, tag = "5")]
        pub is_folded: bool,
    }

    /// A function at a line.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Line {
        /// Function id.
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        /// Line number.
        #[prost(int64, tag = "2")]
        pub line: i64,
        /// Column number.
        #[prost(int64, tag = "3")]
        pub column: i64,
    }

    /// A function.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Function {
        /// Unique, non-zero.
        #[prost(uint64, tag = "1")]
        pub id: u64,
        /// Name (string index).
        #[prost(int64, tag = "2")]
        pub name: i64,
        /// System name (string index).
        #[prost(int64, tag = "3")]
        pub system_name: i64,
        /// Source file (string index).
        #[prost(int64, tag = "4")]
        pub filename: i64,
        /// First line of the function.
        #[prost(int64, tag = "5")]
        pub start_line: i64,
    }
}

/// Why a file could not be read as a pprof profile.
#[derive(Debug, thiserror::Error)]
pub enum PprofError {
    /// Not gzip, or gzip of something that is not a profile.
    #[error("not a gzipped pprof profile ({0})")]
    NotPprof(String),
    /// A profile whose references do not resolve.
    #[error("corrupt pprof profile: {0}")]
    Corrupt(String),
}

const COMMENT_PREFIX: &str = "pyrometer.";
/// The label that marks a timeline sample (zero values) and gives its time.
pub const TIMESTAMP_LABEL: &str = "timestamp_ns";

/// A string table under construction.
struct Strings {
    table: Vec<String>,
    index: FxMap<String, i64>,
}

impl Strings {
    fn new() -> Self {
        let mut s = Strings {
            table: Vec::new(),
            index: FxMap::default(),
        };
        s.get("");
        s
    }

    fn get(&mut self, s: &str) -> i64 {
        if let Some(i) = self.index.get(s) {
            return *i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// The comments that carry what samples cannot: the timeline
/// (`timeline=WIDTH_NS;BUCKET,PID,PY,NATIVE,GIL,IDLE;…`) and each
/// endpoint's request statistics (`requests.N=COUNT\tTOTAL_NS\tMAX_NS\t
/// D1,D2,…\tENDPOINT`, durations in nanoseconds).
fn saved_extras(profile: &Profile) -> Vec<(String, String)> {
    let ns = |d: Duration| d.as_nanos().min(u64::MAX as u128).to_string();
    let mut out = Vec::new();
    let t = profile.activity();
    if !t.buckets().is_empty() {
        let mut v = ns(t.width());
        for (i, b) in t.buckets().iter().enumerate() {
            for (pid, c) in b {
                v.push_str(&format!(";{i},{pid},{},{},{},{}", c[0], c[1], c[2], c[3]));
            }
        }
        out.push(("timeline".to_string(), v));
    }
    let mut endpoints: Vec<_> = profile
        .requests()
        .endpoints()
        .map(|(e, r)| (profile.str(e), r))
        .collect();
    endpoints.sort_by(|a, b| a.0.cmp(b.0));
    for (i, (name, r)) in endpoints.into_iter().enumerate() {
        let durations: Vec<String> = r.durations().iter().map(|d| ns(*d)).collect();
        out.push((
            format!("requests.{i}"),
            format!(
                "{}\t{}\t{}\t{}\t{name}",
                r.count,
                ns(r.total),
                ns(r.max),
                durations.join(",")
            ),
        ));
    }
    out
}

/// Read back what [`saved_extras`] wrote; malformed parts are ignored.
fn restore_extras(profile: &mut Profile, facts: &BTreeMap<String, String>) {
    if let Some(v) = facts.get("timeline") {
        let mut parts = v.split(';');
        let width = parts
            .next()
            .and_then(|w| w.parse::<u64>().ok())
            .unwrap_or(0);
        let entries: Vec<(usize, i32, [u64; 4])> = parts
            .filter_map(|e| {
                let f: Vec<&str> = e.split(',').collect();
                let [i, pid, a, b, c, d] = f.as_slice() else {
                    return None;
                };
                Some((
                    i.parse().ok()?,
                    pid.parse().ok()?,
                    [
                        a.parse().ok()?,
                        b.parse().ok()?,
                        c.parse().ok()?,
                        d.parse().ok()?,
                    ],
                ))
            })
            .collect();
        if width > 0 {
            profile.set_activity(pyrometer_profile::Activity::restore(
                Duration::from_nanos(width),
                &entries,
            ));
        }
    }
    for (k, v) in facts {
        if !k.starts_with("requests.") {
            continue;
        }
        let f: Vec<&str> = v.splitn(5, '\t').collect();
        let [count, total, max, durations, name] = f.as_slice() else {
            continue;
        };
        let (Ok(count), Ok(total), Ok(max)) =
            (count.parse(), total.parse::<u64>(), max.parse::<u64>())
        else {
            continue;
        };
        let durations = durations
            .split(',')
            .filter_map(|d| d.parse::<u64>().ok())
            .map(Duration::from_nanos)
            .collect();
        profile.restore_requests(
            name,
            pyrometer_profile::EndpointRequests::from_saved(
                count,
                Duration::from_nanos(total),
                Duration::from_nanos(max),
                durations,
            ),
        );
    }
}

fn state_label(state: ThreadState) -> &'static str {
    state.as_str()
}

fn parse_state(s: &str) -> Option<ThreadState> {
    [
        ThreadState::Python,
        ThreadState::Native,
        ThreadState::GilWait,
        ThreadState::Idle,
    ]
    .into_iter()
    .find(|st| st.as_str() == s)
}

/// Nanoseconds per sample at `rate` Hz (0 when the rate is unknown).
fn ns_per_sample(rate: f64) -> f64 {
    if rate > 0.0 && rate.is_finite() {
        1e9 / rate
    } else {
        0.0
    }
}

/// The profile as an uncompressed `profile.proto` message.
pub fn pprof_message(profile: &Profile) -> proto::Profile {
    // What `write_pprof` writes, decoded: one encoder for both.
    proto::Profile::decode(encode_pprof(profile).as_slice()).unwrap_or_default()
}

/// The profile, encoded as a `profile.proto` message.
fn encode_pprof(profile: &Profile) -> Vec<u8> {
    let mut st = Strings::new();
    let meta = &profile.meta;
    let per = ns_per_sample(meta.rate);

    let mut sample_type = vec![
        proto::ValueType {
            r#type: st.get("samples"),
            unit: st.get("count"),
        },
        proto::ValueType {
            r#type: st.get("wall"),
            unit: st.get("nanoseconds"),
        },
        proto::ValueType {
            r#type: st.get("cpu"),
            unit: st.get("nanoseconds"),
        },
    ];

    let mut functions: Vec<proto::Function> = Vec::new();
    let mut function_ids: FxMap<(i64, i64, i32), u64> = FxMap::default();
    let mut locations: Vec<proto::Location> = Vec::new();
    let mut location_ids: FxMap<FrameId, u64> = FxMap::default();
    let keys = [
        st.get("thread_name"),
        st.get("thread_id"),
        st.get("native_id"),
        st.get("pid"),
        st.get("process"),
        st.get("state"),
    ];
    let [k_name, k_tid, k_native, k_pid, k_process, k_state] = keys;

    let mut location_of = |st: &mut Strings, fid: FrameId| -> u64 {
        if let Some(id) = location_ids.get(&fid) {
            return *id;
        }
        let f = profile.frame(fid);
        let name = st.get(profile.str(f.name));
        let filename = st.get(profile.str(f.filename));
        let func = *function_ids
            .entry((name, filename, f.first_line))
            .or_insert_with(|| {
                let id = functions.len() as u64 + 1;
                functions.push(proto::Function {
                    id,
                    name,
                    system_name: filename,
                    filename,
                    start_line: i64::from(f.first_line),
                });
                id
            });
        let id = locations.len() as u64 + 1;
        locations.push(proto::Location {
            id,
            mapping_id: 1,
            address: 0,
            line: vec![proto::Line {
                function_id: func,
                line: i64::from(f.line),
                column: 0,
            }],
            is_folded: false,
        });
        location_ids.insert(fid, id);
        id
    };

    // Samples are encoded as they are made, in file order (the reader
    // depends on it), so that a million of them are never held as
    // `proto::Sample`s; each stack's locations and each thread's labels
    // are encoded once and copied into every sample that has them.
    let n_values = if profile.allocations().enabled {
        sample_type.len() + memory::TYPES.len()
    } else {
        sample_type.len()
    };
    let mut sample_bytes: Vec<u8> = Vec::new();
    let mut stack_locations: FxMap<Option<StackId>, Vec<u64>> = FxMap::default();
    /// A stack's location ids, leaf first, made once.
    fn locations_of<'m>(
        cache: &'m mut FxMap<Option<StackId>, Vec<u64>>,
        profile: &Profile,
        st: &mut Strings,
        location_of: &mut dyn FnMut(&mut Strings, FrameId) -> u64,
        stack: Option<StackId>,
    ) -> &'m Vec<u64> {
        cache.entry(stack).or_insert_with(|| {
            profile
                .stack_frames(stack)
                .iter()
                .rev()
                .map(|fid| location_of(st, *fid))
                .collect()
        })
    }
    let mut packed_locations: FxMap<Option<StackId>, Vec<u8>> = FxMap::default();
    let mut thread_labels: FxMap<ThreadKey, Vec<u8>> = FxMap::default();
    let mut str_ids: FxMap<pyrometer_profile::StrId, i64> = FxMap::default();
    let mut profile_str = |st: &mut Strings, id: pyrometer_profile::StrId| -> i64 {
        *str_ids.entry(id).or_insert_with(|| st.get(profile.str(id)))
    };
    let str_label = |key: i64, str: i64| proto::Label {
        key,
        str,
        num: 0,
        num_unit: 0,
    };
    let num_label = |key: i64, num: i64| proto::Label {
        key,
        str: 0,
        num,
        num_unit: 0,
    };
    let k_endpoint = st.get("endpoint");
    let k_category = st.get("category");

    let mut body: Vec<u8> = Vec::with_capacity(512);
    for (key, count) in profile.counts() {
        body.clear();
        let packed = packed_locations.entry(key.stack).or_insert_with(|| {
            let ids = locations_of(
                &mut stack_locations,
                profile,
                &mut st,
                &mut location_of,
                key.stack,
            );
            let mut packed = Vec::new();
            enc::uint64::encode_packed(1, ids, &mut packed);
            packed
        });
        body.extend_from_slice(packed);
        let wall = (count as f64 * per).round() as i64;
        let cpu = if key.state.is_active() { wall } else { 0 };
        let mut values = [0i64; 16];
        values[0] = count as i64;
        values[1] = wall;
        values[2] = cpu;
        enc::int64::encode_packed(2, &values[..n_values.min(values.len())], &mut body);
        let thread = thread_labels.entry(key.thread).or_insert_with(|| {
            let thread = profile.thread(key.thread);
            let mut label = Vec::new();
            if let Some(name) = &thread.name {
                label.push(str_label(k_name, st.get(name)));
            }
            label.push(num_label(k_tid, thread.thread_id as i64));
            if let Some(native) = thread.native_id {
                label.push(num_label(k_native, i64::from(native)));
            }
            label.push(num_label(k_pid, i64::from(thread.pid)));
            if let Some(cmd) = profile.process_cmdline(thread.pid) {
                label.push(str_label(k_process, st.get(cmd)));
            }
            if let Some(role) = profile.process_role(thread.pid) {
                let k = st.get("process_role");
                label.push(str_label(k, st.get(role)));
            }
            let mut bytes = Vec::new();
            for l in &label {
                enc::message::encode(3, l, &mut bytes);
            }
            bytes
        });
        body.extend_from_slice(thread);
        let state = str_label(k_state, st.get(state_label(key.state)));
        enc::message::encode(3, &state, &mut body);
        if let Some(e) = key.endpoint {
            enc::message::encode(
                3,
                &str_label(k_endpoint, profile_str(&mut st, e)),
                &mut body,
            );
        }
        if let Some(c) = key.category {
            enc::message::encode(
                3,
                &str_label(k_category, profile_str(&mut st, c)),
                &mut body,
            );
        }
        enc::encode_key(2, enc::WireType::LengthDelimited, &mut sample_bytes);
        enc::encode_varint(body.len() as u64, &mut sample_bytes);
        sample_bytes.extend_from_slice(&body);
    }

    // The timeline: one zero-valued sample per kept sample, in time order,
    // with a `timestamp_ns` label (nanoseconds since the start).
    for e in profile.timeline().entries() {
        let location_id = locations_of(
            &mut stack_locations,
            profile,
            &mut st,
            &mut location_of,
            e.stack,
        )
        .clone();
        let thread = profile.thread(e.thread);
        let ns = e.time.as_nanos().min(i64::MAX as u128) as i64;
        let mut side = SideSample::marked_num(&mut st, TIMESTAMP_LABEL, ns, "nanoseconds");
        side.num(&mut st, "thread_id", thread.thread_id as i64, "")
            .num(&mut st, "pid", i64::from(thread.pid), "")
            .str(&mut st, "state", state_label(e.state));
        if let Some(ep) = e.endpoint {
            side.str(&mut st, "endpoint", profile.str(ep));
        }
        if let Some(r) = e.request {
            side.num(&mut st, "request", r as i64, "");
        }
        let sample = side.finish(location_id, vec![0; n_values]);
        enc::message::encode(2, &sample, &mut sample_bytes);
    }

    // Memory (attach mode): zero-valued samples labelled `memory`, see
    // `memory_samples`; allocation sites (`record --memory`).
    for sample in memory_samples(profile, &mut st, &mut location_of, n_values) {
        enc::message::encode(2, &sample, &mut sample_bytes);
    }
    for sample in memory::append(profile, &mut st, &mut sample_type, &mut location_of) {
        enc::message::encode(2, &sample, &mut sample_bytes);
    }

    let mut comments: Vec<(String, String)> = vec![
        ("version".into(), env!("CARGO_PKG_VERSION").into()),
        ("target".into(), meta.target.clone()),
        ("python_version".into(), meta.python_version.clone()),
        ("rate".into(), meta.rate.to_string()),
        (
            "duration_ns".into(),
            meta.duration.as_nanos().min(i64::MAX as u128).to_string(),
        ),
        ("ticks".into(), meta.ticks.to_string()),
        ("late_ticks".into(), meta.late_ticks.to_string()),
        ("errors".into(), meta.errors.to_string()),
        (
            "truncated_samples".into(),
            profile.truncated_samples.to_string(),
        ),
        (
            "timeline_limit".into(),
            profile.timeline().limit().to_string(),
        ),
        (
            "timeline_dropped".into(),
            profile.timeline().dropped.to_string(),
        ),
    ];
    for (pid, cmd) in profile.processes() {
        comments.push((format!("process.{pid}"), cmd.to_string()));
    }
    comments.extend(saved_extras(profile));
    comments.extend(memory_comments(profile));
    comments.extend(memory::comments(profile));
    let comment = comments
        .iter()
        .map(|(k, v)| st.get(&format!("{COMMENT_PREFIX}{k}={}", escape(v))))
        .collect();

    let duration_nanos = meta.duration.as_nanos().min(i64::MAX as u128) as i64;
    let start = meta.start_time.unwrap_or_else(|| {
        SystemTime::now()
            .checked_sub(meta.duration)
            .unwrap_or(UNIX_EPOCH)
    });
    let time_nanos = start
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
        .unwrap_or(0);

    let period_type = Some(proto::ValueType {
        r#type: st.get("wall"),
        unit: st.get("nanoseconds"),
    });
    let default_sample_type = st.get("wall");
    // One pseudo-mapping that says every location is already symbolized,
    // so that pprof tools neither look for a binary nor complain about it.
    let mapping = vec![proto::Mapping {
        id: 1,
        filename: st.get("python"),
        has_functions: true,
        has_filenames: true,
        has_line_numbers: true,
        ..Default::default()
    }];
    let rest = proto::Profile {
        sample_type,
        sample: Vec::new(),
        mapping,
        location: locations,
        function: functions,
        string_table: st.table,
        drop_frames: 0,
        keep_frames: 0,
        time_nanos,
        duration_nanos,
        period_type,
        period: per.round() as i64,
        comment,
        default_sample_type,
        doc_url: 0,
    };
    // Repeated fields concatenate: the samples above come first, then the
    // rest of the message (whose field order does not matter).
    let mut out = sample_bytes;
    out.extend_from_slice(&rest.encode_to_vec());
    out
}

/// Write the profile as a gzipped pprof (`.pb.gz`).
pub fn write_pprof(profile: &Profile, out: &mut dyn Write) -> std::io::Result<()> {
    let bytes = encode_pprof(profile);
    // The fastest level, as Go's runtime/pprof writes them: large
    // profiles compress several times faster for a slightly larger file.
    let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    gz.write_all(&bytes)?;
    gz.finish()?.flush()
}

/// Decode a pprof profile, gzipped (as written) or not.
pub fn decode_pprof(bytes: &[u8]) -> Result<proto::Profile, PprofError> {
    let (gzipped, data) = inflate(bytes)?;
    check_decoded(gzipped, proto::Profile::decode(data.as_ref()))
}

/// The message of a pprof file, and whether it was gzipped.
fn inflate(bytes: &[u8]) -> Result<(bool, std::borrow::Cow<'_, [u8]>), PprofError> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok((false, std::borrow::Cow::Borrowed(bytes)));
    }
    let mut inflated = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut inflated)
        .map_err(|e| PprofError::NotPprof(format!("bad gzip data: {e}")))?;
    Ok((true, std::borrow::Cow::Owned(inflated)))
}

fn check_decoded(
    gzipped: bool,
    decoded: Result<proto::Profile, prost::DecodeError>,
) -> Result<proto::Profile, PprofError> {
    let why = |detail: String| {
        PprofError::NotPprof(if gzipped {
            detail
        } else {
            "no gzip header".into()
        })
    };
    let p = decoded.map_err(|e| why(format!("the data is not a profile.proto message: {e}")))?;
    if p.string_table.first().map(String::as_str) != Some("") || p.sample_type.is_empty() {
        return Err(why("no string table or sample types".into()));
    }
    Ok(p)
}

/// A pprof message decoded but for its samples, which are left encoded
/// (byte ranges of `data`, in order): the reader decodes them one at a
/// time into one `proto::Sample`, so that a million samples cost no
/// million allocations.
struct LazyProfile<'a> {
    profile: proto::Profile,
    data: std::borrow::Cow<'a, [u8]>,
    samples: Vec<(usize, usize)>,
}

fn decode_lazily(bytes: &[u8]) -> Result<LazyProfile<'_>, PprofError> {
    let (gzipped, data) = inflate(bytes)?;
    let corrupt = || {
        PprofError::NotPprof(if gzipped {
            "the data is not a profile.proto message: a field runs past its end".into()
        } else {
            "no gzip header".into()
        })
    };
    let mut rest: Vec<u8> = Vec::new();
    let mut samples = Vec::new();
    let mut buf: &[u8] = &data;
    let total = data.len();
    while !buf.is_empty() {
        let start = total - buf.len();
        let (tag, wire) = enc::decode_key(&mut buf).map_err(|_| corrupt())?;
        match wire {
            enc::WireType::Varint => {
                enc::decode_varint(&mut buf).map_err(|_| corrupt())?;
            }
            enc::WireType::SixtyFourBit | enc::WireType::ThirtyTwoBit => {
                let n = if wire == enc::WireType::SixtyFourBit {
                    8
                } else {
                    4
                };
                buf = buf.get(n..).ok_or_else(corrupt)?;
            }
            enc::WireType::LengthDelimited => {
                let len = enc::decode_varint(&mut buf).map_err(|_| corrupt())?;
                let len = usize::try_from(len).map_err(|_| corrupt())?;
                if len > buf.len() {
                    return Err(corrupt());
                }
                if tag == 2 {
                    let at = total - buf.len();
                    samples.push((at, at + len));
                    buf = &buf[len..];
                    continue;
                }
                buf = &buf[len..];
            }
            _ => return Err(corrupt()),
        }
        rest.extend_from_slice(&data[start..total - buf.len()]);
    }
    let profile = check_decoded(gzipped, proto::Profile::decode(rest.as_slice()))?;
    Ok(LazyProfile {
        profile,
        data,
        samples,
    })
}

/// One sample of the file, resolved.
struct Parsed<'a> {
    /// Index in the distinct stacks.
    stack: usize,
    thread: ThreadKey,
    state: ThreadState,
    endpoint: Option<&'a str>,
    category: Option<&'a str>,
    count: u64,
}

/// Rebuild a [`Profile`] from a pprof file (gzipped or not): pyrometer's
/// own, with its labels and comments, or another tool's (threads and
/// states then default to one thread running Python).
pub fn read_pprof(bytes: &[u8]) -> Result<Profile, PprofError> {
    let lazy = decode_lazily(bytes)?;
    let p = &lazy.profile;
    let s = |i: i64| -> Result<&str, PprofError> {
        usize::try_from(i)
            .ok()
            .and_then(|i| p.string_table.get(i))
            .map(String::as_str)
            .ok_or_else(|| PprofError::Corrupt(format!("string index {i} out of range")))
    };
    let mut profile = Profile::new();

    // Which value is the sample count, and what to divide it by.
    let mut count_index = None;
    for (i, t) in p.sample_type.iter().enumerate() {
        if s(t.r#type)? == "samples" && s(t.unit)? == "count" {
            count_index = Some(i);
        }
    }
    let (value_index, divisor) = match count_index {
        Some(i) => (i, 1.0),
        None => {
            let default = s(p.default_sample_type)?;
            let i = p
                .sample_type
                .iter()
                .position(|t| !default.is_empty() && s(t.r#type).ok() == Some(default))
                .unwrap_or(p.sample_type.len() - 1);
            let t = &p.sample_type[i];
            let same_unit = match &p.period_type {
                Some(pt) => s(pt.unit)? == s(t.unit)?,
                None => false,
            };
            if same_unit && p.period > 0 {
                (i, p.period as f64)
            } else {
                (i, 1.0)
            }
        }
    };

    let type_names = p
        .sample_type
        .iter()
        .map(|t| Ok((s(t.r#type)?, s(t.unit)?)))
        .collect::<Result<Vec<_>, PprofError>>()?;
    let alloc_indices = memory::value_indices(&type_names);

    // Facts from the comments.
    let mut facts: BTreeMap<String, String> = BTreeMap::new();
    for c in &p.comment {
        if let Some((k, v)) = s(*c)?
            .strip_prefix(COMMENT_PREFIX)
            .and_then(|kv| kv.split_once('='))
        {
            facts.insert(k.to_string(), unescape(v));
        }
    }
    let num = |k: &str| facts.get(k).and_then(|v| v.parse::<u64>().ok());
    let meta = &mut profile.meta;
    meta.target = facts.get("target").cloned().unwrap_or_default();
    meta.python_version = facts.get("python_version").cloned().unwrap_or_default();
    meta.rate = match facts.get("rate").and_then(|v| v.parse::<f64>().ok()) {
        Some(r) => r,
        None => match &p.period_type {
            Some(pt) if s(pt.unit)? == "nanoseconds" && p.period > 0 => 1e9 / p.period as f64,
            _ => 0.0,
        },
    };
    meta.duration = match num("duration_ns") {
        Some(ns) => Duration::from_nanos(ns),
        None => Duration::from_nanos(p.duration_nanos.max(0) as u64),
    };
    meta.ticks = num("ticks").unwrap_or(0);
    meta.late_ticks = num("late_ticks").unwrap_or(0);
    meta.errors = num("errors").unwrap_or(0);
    if p.time_nanos > 0 {
        meta.start_time = Some(UNIX_EPOCH + Duration::from_nanos(p.time_nanos as u64));
    }
    profile.truncated_samples = num("truncated_samples").unwrap_or(0);
    for (k, v) in &facts {
        if let Some(pid) = k.strip_prefix("process.").and_then(|p| p.parse().ok()) {
            profile.set_process(pid, v);
        }
    }
    restore_extras(&mut profile, &facts);

    // Functions and locations.
    let mut functions = FxMap::default();
    for f in &p.function {
        if f.id == 0 {
            return Err(PprofError::Corrupt("function id 0".into()));
        }
        let name = profile.intern(s(f.name)?);
        let filename = profile.intern(s(f.filename)?);
        functions.insert(f.id, (name, filename, f.start_line as i32));
    }
    let mut locations: FxMap<u64, Vec<FrameInfo>> = FxMap::default();
    for l in &p.location {
        if l.id == 0 {
            return Err(PprofError::Corrupt("location id 0".into()));
        }
        let mut lines = Vec::new();
        for line in &l.line {
            let (name, filename, first_line) =
                *functions.get(&line.function_id).ok_or_else(|| {
                    PprofError::Corrupt(format!(
                        "location {} refers to function {}, which does not exist",
                        l.id, line.function_id
                    ))
                })?;
            lines.push(FrameInfo {
                name,
                filename,
                line: line.line as i32,
                first_line,
            });
        }
        if lines.is_empty() {
            // An unsymbolized address: show it as such.
            let name = profile.intern(&format!("{:#x}", l.address));
            let filename = profile.intern("");
            lines.push(FrameInfo {
                name,
                filename,
                line: 0,
                first_line: 0,
            });
        }
        locations.insert(l.id, lines);
    }

    // Samples, in file order; threads interned in order of appearance.
    // Samples with the same locations share one resolved stack (`stacks`),
    // and the same thread labels one thread key: a file of a million
    // samples has a few tens of thousands of each.
    let mut parsed = Vec::with_capacity(p.sample.len());
    let mut stacks: Vec<Vec<FrameInfo>> = Vec::new();
    // rustc-hash: the crate's own Fx mixes long keys too weakly.
    let mut stack_of: rustc_hash::FxHashMap<Vec<u64>, usize> = Default::default();
    let mut last_stack: (Vec<u64>, usize) = (Vec::new(), usize::MAX);
    let mut sample = proto::Sample::default();
    // (pid, thread id, native id, name) → thread.
    type ThreadLabels<'a> = (i32, u64, Option<i32>, Option<&'a str>);
    let mut thread_of: FxMap<ThreadLabels, ThreadKey> = FxMap::default();
    let mut timeline = Vec::new();
    let mut saved_memory: Vec<SavedMemory> = Vec::new();
    let mut saved_sites: Vec<memory::SavedSite> = Vec::new();
    let mut labels = Labels::default();
    // The key code of every string of the table, once.
    let key_codes: Vec<u8> = p.string_table.iter().map(|k| key::of(k)).collect();
    for &(from, to) in &lazy.samples {
        sample.clear();
        let encoded = lazy.data.get(from..to).unwrap_or_default();
        sample
            .merge(encoded)
            .map_err(|e| PprofError::Corrupt(format!("a sample does not decode: {e}")))?;
        let Some(v) = sample.value.get(value_index) else {
            return Err(PprofError::Corrupt(format!(
                "a sample has {} values for {} sample types",
                sample.value.len(),
                p.sample_type.len()
            )));
        };
        let count = (*v as f64 / divisor).round();
        labels.clear();
        for l in &sample.label {
            let code = usize::try_from(l.key)
                .ok()
                .and_then(|i| key_codes.get(i))
                .copied()
                .unwrap_or(key::OTHER);
            labels.push(code, s(l.key)?, s(l.str)?, l.num);
        }
        let side = labels.side();
        if side.is_none() && count < 1.0 {
            continue;
        }
        let mut pid = 0;
        let mut thread_id = 0;
        let mut native_id = None;
        let mut thread_name = None;
        let mut state = ThreadState::Python;
        let mut cmdline = None;
        let mut role = None;
        for (code, text, num) in labels.iter() {
            // Numbers may come as strings from other tools.
            let number = || {
                if text.is_empty() {
                    Some(num)
                } else {
                    text.parse::<i64>().ok()
                }
            };
            match code {
                key::THREAD_NAME if !text.is_empty() => thread_name = Some(text),
                key::THREAD_ID => thread_id = number().unwrap_or(0) as u64,
                key::NATIVE_ID => native_id = number().map(|n| n as i32),
                key::PID => pid = number().unwrap_or(0) as i32,
                key::PROCESS => cmdline = Some(text),
                key::PROCESS_ROLE if !text.is_empty() => role = Some(text),
                key::STATE => state = parse_state(text).unwrap_or(ThreadState::Python),
                _ => {}
            }
        }
        if let Some(cmd) = cmdline {
            if profile.process_cmdline(pid).is_none() {
                profile.set_process(pid, cmd);
            }
        }
        if let Some(r) = role {
            profile.set_process_role(pid, r);
        }
        let locations_here = sample.location_id.as_slice();
        // Samples are written by stack: the last one's is often the same.
        let known = if last_stack.1 != usize::MAX && last_stack.0 == locations_here {
            Some(last_stack.1)
        } else {
            stack_of.get(locations_here).copied()
        };
        let stack = match known {
            Some(i) => i,
            None => {
                let mut frames = Vec::new();
                for id in sample.location_id.iter().rev() {
                    let lines = locations.get(id).ok_or_else(|| {
                        PprofError::Corrupt(format!(
                            "a sample refers to location {id}, which does not exist"
                        ))
                    })?;
                    // Lines are innermost first: the caller is last.
                    frames.extend(lines.iter().rev().copied());
                }
                stacks.push(frames);
                stack_of.insert(locations_here.to_vec(), stacks.len() - 1);
                stacks.len() - 1
            }
        };
        last_stack.0.clear();
        last_stack.0.extend_from_slice(locations_here);
        last_stack.1 = stack;
        let endpoint = labels.str_of(key::ENDPOINT);
        let mut thread = || {
            *thread_of
                .entry((pid, thread_id, native_id, thread_name))
                .or_insert_with(|| {
                    profile.thread_key(ThreadInfo {
                        pid,
                        thread_id,
                        native_id,
                        name: thread_name.map(str::to_string),
                    })
                })
        };
        match side {
            Some(Side::Memory(kind)) => {
                let mut m = SavedMemory {
                    kind: kind.to_string(),
                    pid,
                    endpoint: endpoint.map(str::to_string),
                    frames: stacks[stack].clone(),
                    growth_estimate: labels
                        .str("growth_estimate")
                        .and_then(|v| v.parse::<f64>().ok()),
                    ..Default::default()
                };
                for key in [
                    "memory_time_ns",
                    "rss_bytes",
                    "heap_bytes",
                    "growth_bytes",
                    "peak_samples",
                ] {
                    if let Some(n) = labels.num(key) {
                        m.set(key, n);
                    }
                }
                saved_memory.push(m);
            }
            Some(Side::Allocation(kind)) => {
                saved_sites.push(memory::SavedSite::read(
                    kind,
                    &labels,
                    &sample.value,
                    &alloc_indices,
                    stacks[stack].clone(),
                ));
            }
            Some(Side::Timeline(ns)) => {
                timeline.push(TimelineSample {
                    stack,
                    thread: thread(),
                    state,
                    endpoint,
                    request: labels.num("request").map(|r| r as u64),
                    time: Duration::from_nanos(ns.max(0) as u64),
                });
            }
            None => parsed.push(Parsed {
                stack,
                thread: thread(),
                state,
                endpoint,
                category: labels.str_of(key::CATEGORY),
                count: count as u64,
            }),
        }
    }

    // Each sample's stack, interned once per distinct stack.
    let interned = intern_stacks_in_order(&mut profile, &stacks, &parsed);
    // Label values are strings of the file's table: interned once each
    // (by address: the table does not move).
    let mut interned_str: rustc_hash::FxHashMap<*const u8, pyrometer_profile::StrId> =
        Default::default();
    let mut intern = |profile: &mut Profile, s: &str| {
        *interned_str
            .entry(s.as_ptr())
            .or_insert_with(|| profile.intern(s))
    };
    for s in &parsed {
        let endpoint = s.endpoint.map(|e| intern(&mut profile, e));
        let category = s.category.map(|c| intern(&mut profile, c));
        profile.add(
            pyrometer_profile::SampleKey {
                stack: interned[s.stack],
                thread: s.thread,
                state: s.state,
                endpoint,
                category,
            },
            s.count,
        );
    }
    // The timeline keeps every sample the file has (its own limit was
    // applied when it was recorded).
    let kept = timeline.len();
    let limit = num("timeline_limit").map_or(kept, |l| (l as usize).max(kept));
    profile.timeline_mut().set_limit(limit);
    let mut timeline_stacks: Vec<Option<Option<StackId>>> = vec![None; stacks.len()];
    for t in timeline {
        let stack = match timeline_stacks[t.stack] {
            Some(s) => s,
            None => {
                let s = profile.intern_stack(&stacks[t.stack]);
                timeline_stacks[t.stack] = Some(s);
                s
            }
        };
        let endpoint = t.endpoint.map(|e| profile.intern(e));
        profile.timeline_mut().push(TimelineEntry {
            time: t.time,
            thread: t.thread,
            stack,
            state: t.state,
            endpoint,
            request: t.request,
        });
    }
    profile.timeline_mut().dropped = num("timeline_dropped").unwrap_or(0);
    restore_memory(&mut profile, saved_memory, &facts);
    memory::restore(&mut profile, saved_sites, &facts);
    Ok(profile)
}

/// The label whose value says what a memory sample is: `reading` (a point
/// of a process's series: `memory_time_ns`, `rss_bytes`, `heap_bytes`),
/// `growth` (estimated RSS growth attributed to the sample's stack and
/// endpoint: `growth_bytes`) or `peak` (a stack sampled just before the
/// process's peak RSS: `peak_samples`, with `memory_time_ns` and
/// `rss_bytes` of the peak). All values are 0: totals are unchanged, and
/// other pprof readers ignore them.
pub const MEMORY_LABEL: &str = "memory";

fn memory_samples(
    profile: &Profile,
    st: &mut Strings,
    location_of: &mut dyn FnMut(&mut Strings, FrameId) -> u64,
    n_values: usize,
) -> Vec<proto::Sample> {
    let m = profile.memory();
    let mut out = Vec::new();
    if m.is_empty() {
        return out;
    }
    let ns = |d: Duration| d.as_nanos().min(i64::MAX as u128) as i64;
    let b = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let mut locations = |st: &mut Strings, stack| -> Vec<u64> {
        profile
            .stack_frames(stack)
            .iter()
            .rev()
            .map(|f| location_of(st, *f))
            .collect()
    };
    for (pid, p) in m.processes() {
        for pt in p.points() {
            let mut side = SideSample::marked(st, MEMORY_LABEL, "reading");
            side.num(st, "pid", i64::from(pid), "").num(
                st,
                "memory_time_ns",
                ns(pt.time),
                "nanoseconds",
            );
            if let Some(r) = pt.rss {
                side.num(st, "rss_bytes", b(r), "bytes");
            }
            if let Some(h) = pt.heap {
                side.num(st, "heap_bytes", b(h), "bytes");
            }
            out.push(side.finish(Vec::new(), vec![0; n_values]));
        }
        if let Some((time, rss)) = p.peak_rss {
            for (stack, endpoint, n) in &p.peak_stacks {
                let location_id = locations(st, *stack);
                let mut side = SideSample::marked(st, MEMORY_LABEL, "peak");
                side.num(st, "pid", i64::from(pid), "")
                    .num(st, "memory_time_ns", ns(time), "nanoseconds")
                    .num(st, "rss_bytes", b(rss), "bytes")
                    .num(st, "peak_samples", b(*n), "");
                if let Some(e) = endpoint {
                    side.str(st, "endpoint", profile.str(*e));
                }
                out.push(side.finish(location_id, vec![0; n_values]));
            }
        }
    }
    for ((pid, stack, endpoint), bytes) in m.growth_by_stack() {
        let location_id = locations(st, stack);
        let mut side = SideSample::marked(st, MEMORY_LABEL, "growth");
        // Unrounded too, so that sums over stacks come out the same.
        let exact = m.growth_estimate(&(pid, stack, endpoint)).to_string();
        side.num(st, "pid", i64::from(pid), "")
            .num(st, "growth_bytes", b(bytes), "bytes")
            .str(st, "growth_estimate", &exact);
        if let Some(e) = endpoint {
            side.str(st, "endpoint", profile.str(e));
        }
        out.push(side.finish(location_id, vec![0; n_values]));
    }
    out
}

fn memory_comments(profile: &Profile) -> Vec<(String, String)> {
    let m = profile.memory();
    let mut out = Vec::new();
    if m.is_empty() {
        return out;
    }
    if let Some(d) = m.interval {
        out.push(("memory_interval_ms".into(), d.as_millis().to_string()));
    }
    out.push((
        "memory_unattributed".into(),
        m.unattributed_growth.to_string(),
    ));
    for (pid, p) in m.processes() {
        out.push((format!("memory_growth.{pid}"), p.growth.to_string()));
        if let Some(why) = &p.heap_unavailable {
            out.push((format!("heap_unavailable.{pid}"), why.clone()));
        }
    }
    out
}

/// A memory sample of the file.
#[derive(Debug, Default)]
struct SavedMemory {
    kind: String,
    pid: i32,
    time_ns: Option<i64>,
    rss: Option<i64>,
    heap: Option<i64>,
    growth: Option<i64>,
    /// `growth_estimate`: the growth unrounded.
    growth_estimate: Option<f64>,
    peak_samples: Option<i64>,
    endpoint: Option<String>,
    frames: Vec<FrameInfo>,
}

impl SavedMemory {
    fn set(&mut self, key: &str, v: i64) {
        match key {
            "memory_time_ns" => self.time_ns = Some(v),
            "rss_bytes" => self.rss = Some(v),
            "heap_bytes" => self.heap = Some(v),
            "growth_bytes" => self.growth = Some(v),
            "peak_samples" => self.peak_samples = Some(v),
            _ => {}
        }
    }
}

fn restore_memory(
    profile: &mut Profile,
    saved: Vec<SavedMemory>,
    facts: &BTreeMap<String, String>,
) {
    let u = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
    let mut peaks: BTreeMap<i32, (Duration, u64, Vec<pyrometer_profile::heap::StackShare>)> =
        BTreeMap::new();
    for m in saved {
        match m.kind.as_str() {
            "reading" => {
                let time = Duration::from_nanos(u(m.time_ns).unwrap_or(0));
                profile
                    .memory_mut()
                    .restore_reading(m.pid, time, u(m.rss), u(m.heap));
            }
            "growth" => {
                let stack = profile.intern_stack(&m.frames);
                let endpoint = m.endpoint.as_deref().map(|e| profile.intern(e));
                let exact = m.growth_estimate.filter(|b| b.is_finite() && *b >= 0.0);
                if let Some(bytes) = exact.or(u(m.growth).map(|b| b as f64)) {
                    profile
                        .memory_mut()
                        .add_growth(m.pid, stack, endpoint, bytes);
                }
            }
            "peak" => {
                let stack = profile.intern_stack(&m.frames);
                let endpoint = m.endpoint.as_deref().map(|e| profile.intern(e));
                let time = Duration::from_nanos(u(m.time_ns).unwrap_or(0));
                let entry = peaks
                    .entry(m.pid)
                    .or_insert((time, u(m.rss).unwrap_or(0), Vec::new()));
                if entry.2.len() < pyrometer_profile::heap::PEAK_STACKS_KEPT {
                    entry
                        .2
                        .push((stack, endpoint, u(m.peak_samples).unwrap_or(0)));
                }
            }
            _ => {}
        }
    }
    for (pid, (time, rss, stacks)) in peaks {
        profile.memory_mut().set_peak(pid, time, rss, stacks);
    }
    let m = profile.memory_mut();
    for (k, v) in facts {
        if let Some(pid) = k
            .strip_prefix("memory_growth.")
            .and_then(|p| p.parse().ok())
        {
            m.set_growth(pid, v.parse().unwrap_or(0));
        }
        if let Some(pid) = k
            .strip_prefix("heap_unavailable.")
            .and_then(|p| p.parse().ok())
        {
            m.restore_reading_note(pid, v);
        }
    }
    if let Some(ms) = facts.get("memory_interval_ms").and_then(|v| v.parse().ok()) {
        m.interval = Some(Duration::from_millis(ms));
    }
    if let Some(b) = facts
        .get("memory_unattributed")
        .and_then(|v| v.parse().ok())
    {
        m.unattributed_growth = b;
    }
}

/// A timeline sample of the file, resolved.
struct TimelineSample<'a> {
    /// Index in the distinct stacks.
    stack: usize,
    thread: ThreadKey,
    state: ThreadState,
    endpoint: Option<&'a str>,
    request: Option<u64>,
    time: Duration,
}

/// Intern the samples' stacks so that, within each thread, their order
/// follows the file's: the writer emits samples in `Profile::counts()`
/// order (by thread, then stack), so the rebuilt profile lists them the
/// same way and order-sensitive outputs (speedscope) come out identical.
///
/// Each distinct leaf must come after the one before it in the same
/// thread, and after any leaf that is a prefix of it (interning a stack
/// interns its prefixes). A topological order of these constraints
/// (smallest file position first; a cycle, possible only in a file
/// pyrometer did not write, is broken the same way) gives each leaf a new
/// stack id larger than those of the leaves before it.
/// Returns each distinct stack's id (`None` for those no sample uses).
fn intern_stacks_in_order(
    profile: &mut Profile,
    stacks: &[Vec<FrameInfo>],
    parsed: &[Parsed],
) -> Vec<Option<StackId>> {
    // A trie of the distinct stacks: node → (parent, frame).
    let mut trie: Vec<(Option<usize>, FrameInfo)> = Vec::new();
    let mut trie_ids: FxMap<(Option<usize>, FrameInfo), usize> = FxMap::default();
    let mut leaf_of_node: FxMap<usize, usize> = FxMap::default();
    let mut leaves: Vec<usize> = Vec::new(); // leaf index → trie node
                                             // Distinct stack → its leaf; only stacks that aggregated samples use
                                             // are placed (the others are interned later, as they were written).
    let mut stack_leaf: Vec<Option<Option<usize>>> = vec![None; stacks.len()];
    let mut sample_leaf: Vec<Option<usize>> = Vec::with_capacity(parsed.len());
    for s in parsed {
        if let Some(leaf) = stack_leaf[s.stack] {
            sample_leaf.push(leaf);
            continue;
        }
        let mut node = None;
        for f in &stacks[s.stack] {
            let next = trie.len();
            let id = *trie_ids.entry((node, *f)).or_insert(next);
            if id == next {
                trie.push((node, *f));
            }
            node = Some(id);
        }
        let leaf = node.map(|n| {
            *leaf_of_node.entry(n).or_insert_with(|| {
                leaves.push(n);
                leaves.len() - 1
            })
        });
        stack_leaf[s.stack] = Some(leaf);
        sample_leaf.push(leaf);
    }
    let n = leaves.len();
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut indegree = vec![0usize; n];
    let mut add_edge = |a: usize, b: usize, edges: &mut Vec<Vec<usize>>| {
        if a != b && !edges[a].contains(&b) {
            edges[a].push(b);
            indegree[b] += 1;
        }
    };
    let mut last_in_thread: FxMap<ThreadKey, usize> = FxMap::default();
    for (s, leaf) in parsed.iter().zip(&sample_leaf) {
        if let Some(leaf) = *leaf {
            if let Some(prev) = last_in_thread.insert(s.thread, leaf) {
                add_edge(prev, leaf, &mut edges);
            }
        }
    }
    for (leaf, &node) in leaves.iter().enumerate() {
        let mut up = trie[node].0;
        while let Some(a) = up {
            if let Some(&anc) = leaf_of_node.get(&a) {
                add_edge(anc, leaf, &mut edges);
                break;
            }
            up = trie[a].0;
        }
    }
    let mut ready: BinaryHeap<std::cmp::Reverse<usize>> = (0..n)
        .filter(|&i| indegree[i] == 0)
        .map(std::cmp::Reverse)
        .collect();
    let mut done = vec![false; n];
    let mut order = Vec::with_capacity(n);
    let mut next_unseen = 0;
    while order.len() < n {
        let leaf = match ready.pop() {
            Some(std::cmp::Reverse(i)) => i,
            None => {
                // A cycle: take the first leaf not yet placed.
                while done[next_unseen] {
                    next_unseen += 1;
                }
                next_unseen
            }
        };
        if done[leaf] {
            continue;
        }
        done[leaf] = true;
        order.push(leaf);
        for &b in &edges[leaf] {
            indegree[b] = indegree[b].saturating_sub(1);
            if indegree[b] == 0 && !done[b] {
                ready.push(std::cmp::Reverse(b));
            }
        }
    }
    let mut leaf_stack: Vec<Option<StackId>> = vec![None; n];
    for leaf in order {
        let mut path = Vec::new();
        let mut cur = Some(leaves[leaf]);
        while let Some(c) = cur {
            path.push(trie[c].1);
            cur = trie[c].0;
        }
        let mut parent = None;
        for f in path.iter().rev() {
            let frame = profile.frame_id(*f);
            parent = Some(profile.stack_id(StackNode { parent, frame }));
        }
        leaf_stack[leaf] = parent;
    }
    stack_leaf
        .into_iter()
        .map(|l| l.flatten().and_then(|l| leaf_stack[l]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_round_trip() {
        for s in ["", "a=b", "x\\ny\nz\t\r\\", "python3 -c 'print(1)'"] {
            assert_eq!(unescape(&escape(s)), s);
            assert!(!escape(s).contains('\n'));
        }
    }

    #[test]
    fn rejects_what_is_not_pprof() {
        for bad in [&b""[..], b"main;f 3\n", b"\x1f\x8bnot gzip", b"{\"a\": 1}"] {
            let e = read_pprof(bad).unwrap_err();
            assert!(
                e.to_string().starts_with("not a gzipped pprof profile"),
                "{e}"
            );
        }
    }
}
