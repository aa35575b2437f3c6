//! `-f html`: one self-contained, offline report to read in a browser.
//!
//! The page is `assets/report.html` with `assets/report.css` and
//! `assets/report.js` inlined, and the report's data as one JSON document
//! inside `<script type="application/json" id="pyrometer-data">`. Nothing is
//! fetched: no fonts, scripts or images from anywhere; a Content Security
//! Policy (`default-src 'none'`, the inline script and style allowed by
//! their SHA-256 hashes) keeps it that way and stops any markup that got
//! into the page from running.
//!
//! Every string from the target (function, file and thread names, command
//! lines, source lines) only reaches the page as JSON: `<`, `>`, `&`,
//! U+2028 and U+2029 are written as `\uXXXX` escapes so that no string can
//! close the `<script>` element, and the script inserts text with
//! `textContent` and attributes with `setAttribute`, never as markup.
//!
//! # The JSON document (`version` 1)
//!
//! ```text
//! { version, title, generator,
//!   meta: { target, python_version, duration_s, rate_requested,
//!           rate_achieved, ticks, late_ticks, errors, samples,
//!           shown_samples, no_python_samples, truncated_samples,
//!           include_idle, threads_option, processes_option, endpoints_option,
//!           function_lines },
//!   states: ["python", "native", "gil-wait", "idle"],
//!   state_totals: [4 counts],                     // every sample
//!   lines: { total, rows: [{ path, short, line, src|null, own, total, split }] },
//!   functions: { total, rows: [{ name, path, short, first_line, own, total, split }] },
//!   threads: { total, rows: [{ pid, label, samples, split }] },
//!   processes: { total, rows: [{ pid, cmdline, threads, samples, split }] },
//!   flame: { total, threshold, pruned_nodes, labels: [..], p: [..], n: [..], v: [..] },
//!   endpoints: [{ name, samples, split, categories: [[name, samples]..],
//!                 requests|null, p50_ms|null, p95_ms|null, p99_ms|null, max_ms|null,
//!                 flame|null }],              // flame: as `flame`, busiest 30 only
//!   timeline: { width_s, states: [split per bucket],
//!               processes: [{ pid|null, cmdline, counts: [per bucket] }] } }
//!   memory: null | { .. },  // record --memory: see html/memory.rs
//! ```
//!
//! `split` is always four counts in the order of `states`. The line and
//! function tables and the flame graph count the samples that the other
//! outputs keep (`shown_samples`: idle ones only with `--idle`); a row's
//! `split` is the state split of its total (the samples whose stack holds
//! it). The flame graph is a pre-order list of nodes: `p` the parent's
//! index (-1 for the root), `n` the index of its label, `v` its samples;
//! nodes under `threshold` samples (0.05 % of the total, more if the graph
//! would be too large) are merged into one `[other]` node per parent.
//! An endpoint's flame graph holds only the samples of threads serving it
//! (its nodes under 0.2 % of them are merged, at most 3000 nodes). The
//! timeline counts every sample, idle ones included, per bucket of
//! `width_s` seconds (1 s, doubled as often as needed to stay within 1024
//! buckets); the 8 busiest processes have a series each, the rest one
//! series together (`pid` null).

mod memory;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, Write};
use std::sync::OnceLock;

use pyrometer_profile::{Profile, StackId, StrId, ThreadKey};
use pyrometer_sampler::ThreadState;
use serde_json::{json, Value};

use crate::{display_filename, frame_label, StackOptions};

const TEMPLATE: &str = include_str!("../assets/report.html");
const STYLE: &str = include_str!("../assets/report.css");
const SCRIPT: &str = include_str!("../assets/report.js");

/// The label of the node that stands for a parent's pruned children.
pub const OTHER_LABEL: &str = "[other: frames under the size threshold]";

/// How much of the profile the page carries.
#[derive(Debug, Clone)]
struct Limits {
    lines: usize,
    functions: usize,
    threads: usize,
    processes: usize,
    /// Flame graph nodes under this fraction of the samples are pruned.
    prune_fraction: f64,
    /// The flame graph keeps at most about this many nodes.
    flame_nodes: usize,
    source_file_bytes: u64,
    source_total_bytes: u64,
    source_line_chars: usize,
    /// Endpoints that get a flame graph of their own.
    endpoint_flames: usize,
    /// The node budget of each endpoint's flame graph.
    endpoint_flame_nodes: usize,
    /// Processes drawn on their own in the timeline; the rest are summed.
    timeline_processes: usize,
}

const LIMITS: Limits = Limits {
    lines: 500,
    functions: 300,
    threads: 500,
    processes: 200,
    prune_fraction: 0.0005,
    flame_nodes: 40_000,
    source_file_bytes: 4 << 20,
    source_total_bytes: 64 << 20,
    source_line_chars: 240,
    endpoint_flames: 30,
    endpoint_flame_nodes: 3_000,
    timeline_processes: 8,
};

const STATES: [ThreadState; 4] = [
    ThreadState::Python,
    ThreadState::Native,
    ThreadState::GilWait,
    ThreadState::Idle,
];

type Split = [u64; 4];

/// FxHash: the maps here are keyed by small integers, millions of times.
#[derive(Default, Clone, Copy)]
pub(crate) struct Fx(u64);

impl Fx {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_i32(&mut self, i: i32) {
        self.add(i as u32 as u64);
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

fn state_index(s: ThreadState) -> usize {
    match s {
        ThreadState::Python => 0,
        ThreadState::Native => 1,
        ThreadState::GilWait => 2,
        ThreadState::Idle => 3,
    }
}

fn add_split(a: &mut Split, b: &Split) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// Write the HTML report.
pub fn write_html(
    profile: &Profile,
    opts: &StackOptions,
    title: &str,
    out: &mut dyn Write,
) -> io::Result<()> {
    let data = report_data(profile, opts, title, &LIMITS);
    let json = script_safe_json(&data);
    let memory = crate::memory::html_section(profile, opts);
    render_page(title, &json, &memory, out)
}

/// JSON that can sit inside a `<script>` element: no `<`, `>` or `&` (so
/// no `</script>` or `<!--`), and no U+2028/U+2029.
fn script_safe_json(v: &Value) -> String {
    let raw = serde_json::to_string(v).expect("a JSON value serializes");
    let mut s = String::with_capacity(raw.len() + raw.len() / 16);
    for c in raw.chars() {
        match c {
            '<' => s.push_str("\\u003c"),
            '>' => s.push_str("\\u003e"),
            '&' => s.push_str("\\u0026"),
            '\u{2028}' => s.push_str("\\u2028"),
            '\u{2029}' => s.push_str("\\u2029"),
            c => s.push(c),
        }
    }
    s
}

/// Text for an HTML element or a quoted attribute.
fn escape_html(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

fn csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        format!(
            "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; \
             img-src data:; base-uri 'none'; form-action 'none'",
            base64(&sha256(SCRIPT.as_bytes())),
            base64(&sha256(STYLE.as_bytes()))
        )
    })
}

/// The template with its `{{NAME}}` slots filled, written piece by piece.
fn render_page(title: &str, json: &str, memory: &str, out: &mut dyn Write) -> io::Result<()> {
    let mut rest = TEMPLATE;
    while let Some(i) = rest.find("{{") {
        out.write_all(&rest.as_bytes()[..i])?;
        let after = &rest[i + 2..];
        let j = after.find("}}").expect("template slot is closed");
        let slot = &after[..j];
        match slot {
            "TITLE" => out.write_all(escape_html(title).as_bytes())?,
            "CSP" => out.write_all(csp().as_bytes())?,
            "STYLE" => out.write_all(STYLE.as_bytes())?,
            "SCRIPT" => out.write_all(SCRIPT.as_bytes())?,
            "DATA" => out.write_all(json.as_bytes())?,
            // Drawn here, with every string escaped (crate::memory).
            "MEMORY" => out.write_all(memory.as_bytes())?,
            other => panic!("unknown template slot {other}"),
        }
        rest = &after[j + 2..];
    }
    out.write_all(rest.as_bytes())
}

// ---------------------------------------------------------------------------
// The data

/// A line or function row being accumulated.
#[derive(Debug, Clone, Default)]
struct Acc {
    own: u64,
    total: u64,
    split: Split,
    /// The last stack that counted into `total` (a stack visiting the same
    /// line twice, in recursion, counts once).
    stamp: u32,
}

fn report_data(profile: &Profile, opts: &StackOptions, title: &str, limits: &Limits) -> Value {
    let mut all: Split = [0; 4];
    let mut per_thread: FxMap<ThreadKey, Split> = FxMap::default();
    let mut by_stack: FxMap<StackId, Split> = FxMap::default();
    // The flame graph's process and thread root frames, per thread.
    let mut prefixes: FxMap<(Option<StrId>, ThreadKey), u32> = FxMap::default();
    let mut shown = 0u64;
    let mut no_python = 0u64;
    // The order of the keys does not show in the report (every list in
    // it is sorted): no need to sort them all.
    let counts: Vec<(pyrometer_profile::SampleKey, u64)> =
        profile.counts_unordered().map(|(k, c)| (*k, c)).collect();
    // Stack ids grow from the root: the largest one bounds the node count.
    let stack_nodes = counts
        .iter()
        .filter_map(|(k, _)| k.stack)
        .map(|s| s.0 as usize + 1)
        .max()
        .unwrap_or(0);
    let mut tree = Tree::new(stack_nodes);
    tree.label_frames(profile, opts, stack_nodes);
    for (key, count) in &counts {
        let count = *count;
        let si = state_index(key.state);
        all[si] += count;
        per_thread.entry(key.thread).or_insert([0; 4])[si] += count;
        if key.state == ThreadState::Idle && !opts.include_idle {
            continue;
        }
        shown += count;
        let Some(stack) = key.stack else {
            no_python += count;
            continue;
        };
        by_stack.entry(stack).or_insert([0; 4])[si] += count;
        let endpoint = opts.endpoints.then_some(key.endpoint);
        let prefix = tree.thread_prefix(profile, opts, &mut prefixes, endpoint, key.thread);
        let node = tree.node_for(profile, opts, prefix, stack);
        tree.own[node as usize] += count;
    }
    let endpoints = endpoint_rows(profile, opts, &counts, &mut tree, limits);

    let (lines, functions) = line_and_function_rows(profile, &by_stack, limits);
    let threads = thread_rows(profile, &per_thread, limits);
    let processes = process_rows(profile, &per_thread, limits);
    let flame = tree.to_json(limits);

    let m = &profile.meta;
    let secs = m.duration.as_secs_f64();
    json!({
        "version": 1,
        "title": title,
        "generator": concat!("pyrometer ", env!("CARGO_PKG_VERSION")),
        "meta": {
            "target": m.target,
            "python_version": m.python_version,
            "duration_s": secs,
            "rate_requested": m.rate,
            "rate_achieved": if secs > 0.0 && m.ticks > 0 { json!(m.ticks as f64 / secs) } else { Value::Null },
            "ticks": m.ticks,
            "late_ticks": m.late_ticks,
            "errors": m.errors,
            "samples": all.iter().sum::<u64>(),
            "shown_samples": shown,
            "no_python_samples": no_python,
            "truncated_samples": profile.truncated_samples,
            "include_idle": opts.include_idle,
            "threads_option": opts.threads,
            "processes_option": opts.processes,
            "endpoints_option": opts.endpoints,
            "function_lines": opts.function_lines,
        },
        "states": STATES.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "state_totals": all,
        "lines": lines,
        "functions": functions,
        "threads": threads,
        "processes": processes,
        "flame": flame,
        "endpoints": endpoints,
        "memory": memory::report(profile),
        "timeline": timeline_data(profile, limits),
    })
}

/// One row per web endpoint: samples by thread state and by category,
/// the request statistics the profile's request tracker kept (counts,
/// estimated latency percentiles), and for the busiest ones a flame graph
/// of their own samples.
fn endpoint_rows(
    profile: &Profile,
    opts: &StackOptions,
    counts: &[(pyrometer_profile::SampleKey, u64)],
    main_tree: &mut Tree,
    limits: &Limits,
) -> Value {
    struct Row {
        split: Split,
        categories: FxMap<Option<StrId>, u64>,
    }
    let mut by: FxMap<StrId, Row> = FxMap::default();
    for (key, count) in counts {
        if let Some(e) = key.endpoint {
            let r = by.entry(e).or_insert_with(|| Row {
                split: [0; 4],
                categories: FxMap::default(),
            });
            r.split[state_index(key.state)] += count;
            *r.categories.entry(key.category).or_insert(0) += count;
        }
    }
    let requests: FxMap<StrId, &pyrometer_profile::EndpointRequests> =
        profile.requests().endpoints().collect();
    let mut order: Vec<(StrId, u64)> = by
        .iter()
        .map(|(e, r)| (*e, r.split.iter().sum::<u64>()))
        .collect();
    order.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then_with(|| profile.str(a.0).cmp(profile.str(b.0)))
    });
    order.truncate(300);
    let flamed: FxMap<StrId, usize> = order
        .iter()
        .take(limits.endpoint_flames)
        .enumerate()
        .map(|(i, (e, _))| (*e, i))
        .collect();
    // Each flamed endpoint's samples, then one tree at a time, borrowing
    // the main tree's labels (computed once for every frame).
    let mut groups: Vec<Vec<(ThreadKey, StackId, u64)>> = vec![Vec::new(); flamed.len()];
    for (key, count) in counts {
        let (Some(e), Some(stack)) = (key.endpoint, key.stack) else {
            continue;
        };
        if key.state == ThreadState::Idle && !opts.include_idle {
            continue;
        }
        if let Some(&t) = flamed.get(&e) {
            groups[t].push((key.thread, stack, *count));
        }
    }
    let flame_limits = Limits {
        flame_nodes: limits.endpoint_flame_nodes,
        prune_fraction: limits.prune_fraction * 4.0,
        ..limits.clone()
    };
    let mut flames: Vec<Option<Value>> = Vec::with_capacity(groups.len());
    for group in groups {
        let mut tree = Tree::new(0);
        tree.swap_labels(main_tree);
        let mut prefixes: FxMap<(Option<StrId>, ThreadKey), u32> = FxMap::default();
        for (thread, stack, count) in group {
            // An endpoint's own graph needs no endpoint root frame.
            let prefix = tree.thread_prefix(profile, opts, &mut prefixes, None, thread);
            let node = tree.node_for(profile, opts, prefix, stack);
            tree.own[node as usize] += count;
        }
        flames.push(Some(tree.to_json(&flame_limits)));
        tree.swap_labels(main_tree);
    }
    let ms =
        |d: Option<std::time::Duration>| d.map(|d| (d.as_secs_f64() * 1e3 * 10.0).round() / 10.0);
    let rows: Vec<Value> = order
        .into_iter()
        .map(|(e, samples)| {
            let row = &by[&e];
            let r = requests.get(&e);
            let mut categories: Vec<(&str, u64)> = row
                .categories
                .iter()
                .map(|(c, n)| (c.map_or("uncategorized", |c| profile.str(c)), *n))
                .collect();
            categories.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let flame = flamed
                .get(&e)
                .and_then(|&i| flames.get_mut(i).and_then(Option::take));
            json!({
                "name": profile.str(e),
                "samples": samples,
                "split": row.split,
                "categories": categories,
                "requests": r.map(|r| r.count),
                "p50_ms": ms(r.and_then(|r| r.quantile(0.5))),
                "p95_ms": ms(r.and_then(|r| r.quantile(0.95))),
                "p99_ms": ms(r.and_then(|r| r.quantile(0.99))),
                "max_ms": ms(r.map(|r| r.max)),
                "flame": flame,
            })
        })
        .collect();
    Value::Array(rows)
}

/// Samples per time bucket by state, and by process for the busiest
/// processes (the rest summed into one series).
fn timeline_data(profile: &Profile, limits: &Limits) -> Value {
    let t = profile.activity();
    let buckets = t.buckets();
    let states: Vec<Split> = buckets
        .iter()
        .map(|b| {
            let mut s: Split = [0; 4];
            for (_, c) in b {
                for (x, y) in s.iter_mut().zip(c) {
                    *x = x.saturating_add(*y);
                }
            }
            s
        })
        .collect();
    let mut per_pid: std::collections::BTreeMap<i32, u64> = std::collections::BTreeMap::new();
    for (pid, c) in buckets.iter().flatten() {
        let e = per_pid.entry(*pid).or_insert(0);
        *e = e.saturating_add(c.iter().sum());
    }
    let mut pids: Vec<(i32, u64)> = per_pid.into_iter().collect();
    pids.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let shown: Vec<i32> = pids
        .iter()
        .take(limits.timeline_processes)
        .map(|p| p.0)
        .collect();
    let mut series: Vec<Value> = shown
        .iter()
        .map(|&pid| {
            let counts: Vec<u64> = buckets
                .iter()
                .map(|b| {
                    b.iter()
                        .find(|e| e.0 == pid)
                        .map_or(0, |e| e.1.iter().sum())
                })
                .collect();
            json!({ "pid": pid, "cmdline": profile.process_cmdline(pid).unwrap_or(""), "counts": counts })
        })
        .collect();
    if pids.len() > shown.len() {
        let counts: Vec<u64> = buckets
            .iter()
            .map(|b| {
                b.iter()
                    .filter(|e| !shown.contains(&e.0))
                    .map(|e| e.1.iter().sum::<u64>())
                    .sum()
            })
            .collect();
        series.push(json!({
            "pid": Value::Null,
            "cmdline": format!("{} other processes", pids.len() - shown.len()),
            "counts": counts,
        }));
    }
    json!({
        "width_s": t.width().as_secs_f64(),
        "states": states,
        "processes": series,
    })
}

/// The rows to show: the `n * 3 / 5` with the most own samples, then the
/// ones with the most total samples (callers) up to `n`.
fn pick_rows<K: Copy>(
    rows: &[(K, Acc)],
    n: usize,
    order: impl Fn(&K, &K) -> std::cmp::Ordering,
) -> Vec<usize> {
    let mut by_own: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].1.own > 0).collect();
    by_own.sort_by(|&a, &b| {
        let (ka, ra) = &rows[a];
        let (kb, rb) = &rows[b];
        rb.own
            .cmp(&ra.own)
            .then(rb.total.cmp(&ra.total))
            .then_with(|| order(ka, kb))
    });
    by_own.truncate(n * 3 / 5);
    let mut chosen = vec![false; rows.len()];
    for &i in &by_own {
        chosen[i] = true;
    }
    let mut by_total: Vec<usize> = (0..rows.len()).filter(|&i| !chosen[i]).collect();
    by_total.sort_by(|&a, &b| {
        let (ka, ra) = &rows[a];
        let (kb, rb) = &rows[b];
        rb.total
            .cmp(&ra.total)
            .then(rb.own.cmp(&ra.own))
            .then_with(|| order(ka, kb))
    });
    by_total.truncate(n.saturating_sub(by_own.len()));
    by_own.extend(by_total);
    by_own
}

fn line_and_function_rows(
    profile: &Profile,
    by_stack: &FxMap<StackId, Split>,
    limits: &Limits,
) -> (Value, Value) {
    type LineKey = (StrId, i32);
    type FuncKey = (StrId, StrId, i32);
    let mut lines: Vec<(LineKey, Acc)> = Vec::new();
    let mut line_ids: FxMap<LineKey, u32> = FxMap::default();
    let mut funcs: Vec<(FuncKey, Acc)> = Vec::new();
    let mut func_ids: FxMap<FuncKey, u32> = FxMap::default();
    // FrameId → (line row, function row), filled as frames are met.
    let mut frame_rows: Vec<(u32, u32)> = Vec::new();
    let mut stamp = 0u32;
    // A stable order, so that ties come out the same on every run.
    let mut stacks: Vec<(&StackId, &Split)> = by_stack.iter().collect();
    stacks.sort_unstable_by_key(|(s, _)| **s);
    for (&stack, split) in stacks {
        stamp += 1;
        let n: u64 = split.iter().sum();
        let mut cur = Some(stack);
        let mut leaf = true;
        while let Some(s) = cur {
            let node = profile.stack(s);
            let fi = node.frame.0 as usize;
            if fi >= frame_rows.len() {
                frame_rows.resize(fi + 1, (u32::MAX, u32::MAX));
            }
            if frame_rows[fi].0 == u32::MAX {
                let f = profile.frame(node.frame);
                let lk = (f.filename, f.line);
                let l = *line_ids.entry(lk).or_insert_with(|| {
                    lines.push((lk, Acc::default()));
                    (lines.len() - 1) as u32
                });
                let fk = (f.name, f.filename, f.first_line);
                let g = *func_ids.entry(fk).or_insert_with(|| {
                    funcs.push((fk, Acc::default()));
                    (funcs.len() - 1) as u32
                });
                frame_rows[fi] = (l, g);
            }
            let (l, g) = frame_rows[fi];
            for acc in [&mut lines[l as usize].1, &mut funcs[g as usize].1] {
                if leaf {
                    acc.own += n;
                }
                if acc.stamp != stamp {
                    acc.stamp = stamp;
                    acc.total += n;
                    add_split(&mut acc.split, split);
                }
            }
            leaf = false;
            cur = node.parent;
        }
    }

    let mut sources = SourceCache::new(limits);
    let line_order =
        |a: &LineKey, b: &LineKey| profile.str(a.0).cmp(profile.str(b.0)).then(a.1.cmp(&b.1));
    let line_rows: Vec<Value> = pick_rows(&lines, limits.lines, line_order)
        .into_iter()
        .map(|i| {
            let ((file, line), acc) = &lines[i];
            let path = profile.str(*file);
            json!({
                "path": path,
                "short": display_filename(path, false),
                "line": line,
                "src": sources.line(path, *line),
                "own": acc.own,
                "total": acc.total,
                "split": acc.split,
            })
        })
        .collect();
    let func_order = |a: &FuncKey, b: &FuncKey| {
        profile
            .str(a.0)
            .cmp(profile.str(b.0))
            .then(profile.str(a.1).cmp(profile.str(b.1)))
            .then(a.2.cmp(&b.2))
    };
    let func_rows: Vec<Value> = pick_rows(&funcs, limits.functions, func_order)
        .into_iter()
        .map(|i| {
            let ((name, file, first), acc) = &funcs[i];
            let path = profile.str(*file);
            json!({
                "name": profile.str(*name),
                "path": path,
                "short": display_filename(path, false),
                "first_line": first,
                "own": acc.own,
                "total": acc.total,
                "split": acc.split,
            })
        })
        .collect();
    (
        json!({ "total": lines.len(), "rows": line_rows }),
        json!({ "total": funcs.len(), "rows": func_rows }),
    )
}

fn thread_rows(profile: &Profile, per_thread: &FxMap<ThreadKey, Split>, limits: &Limits) -> Value {
    let mut v: Vec<(ThreadKey, u64, &Split)> = per_thread
        .iter()
        .map(|(k, s)| (*k, s.iter().sum(), s))
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let total = v.len();
    let rows: Vec<Value> = v
        .into_iter()
        .take(limits.threads)
        .map(|(k, n, split)| {
            let t = profile.thread(k);
            json!({ "pid": t.pid, "label": t.label(), "samples": n, "split": split })
        })
        .collect();
    json!({ "total": total, "rows": rows })
}

fn process_rows(profile: &Profile, per_thread: &FxMap<ThreadKey, Split>, limits: &Limits) -> Value {
    let mut procs: std::collections::BTreeMap<i32, (usize, u64, Split)> = profile
        .processes()
        .map(|(p, _)| (p, (0, 0, [0; 4])))
        .collect();
    for (k, split) in per_thread {
        let e = procs
            .entry(profile.thread(*k).pid)
            .or_insert((0, 0, [0; 4]));
        e.0 += 1;
        e.1 += split.iter().sum::<u64>();
        add_split(&mut e.2, split);
    }
    let mut v: Vec<_> = procs.into_iter().collect();
    v.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then(a.0.cmp(&b.0)));
    let total = v.len();
    let rows: Vec<Value> = v
        .into_iter()
        .take(limits.processes)
        .map(|(pid, (threads, n, split))| {
            json!({
                "pid": pid,
                "cmdline": profile.process_cmdline(pid).unwrap_or(""),
                "threads": threads,
                "samples": n,
                "split": split,
            })
        })
        .collect();
    json!({ "total": total, "rows": rows })
}

// ---------------------------------------------------------------------------
// Source lines

/// Source files read from disk at report time, best effort: only `.py` and
/// `.pyw` regular files under a size cap, within a total budget, each read
/// once.
struct SourceCache<'a> {
    files: HashMap<String, Option<Vec<String>>>,
    budget: u64,
    limits: &'a Limits,
}

impl<'a> SourceCache<'a> {
    fn new(limits: &'a Limits) -> Self {
        SourceCache {
            files: HashMap::new(),
            budget: limits.source_total_bytes,
            limits,
        }
    }

    fn line(&mut self, path: &str, line: i32) -> Option<String> {
        if line <= 0 {
            return None;
        }
        if !self.files.contains_key(path) {
            let lines = self.read(path);
            self.files.insert(path.to_string(), lines);
        }
        let lines = self.files.get(path)?.as_ref()?;
        let text = lines.get(line as usize - 1)?;
        Some(clean_source_line(text, self.limits.source_line_chars))
    }

    fn read(&mut self, path: &str) -> Option<Vec<String>> {
        if !(path.ends_with(".py") || path.ends_with(".pyw")) {
            return None;
        }
        let meta = std::fs::metadata(path).ok()?;
        if !meta.is_file() || meta.len() > self.limits.source_file_bytes || meta.len() > self.budget
        {
            return None;
        }
        self.budget -= meta.len();
        let bytes = std::fs::read(path).ok()?;
        let text = String::from_utf8_lossy(&bytes);
        Some(text.lines().map(str::to_string).collect())
    }
}

/// A source line for display: no trailing blanks, no control characters
/// but tabs, at most `max` characters.
fn clean_source_line(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in s.trim_end().chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        out.push(if c.is_control() && c != '\t' {
            '\u{FFFD}'
        } else {
            c
        });
    }
    out
}

// ---------------------------------------------------------------------------
// The flame graph

/// The call tree, merged by frame label; node 0 is the root.
struct Tree {
    parent: Vec<u32>,
    label: Vec<u32>,
    /// Samples whose innermost frame is this node.
    own: Vec<u64>,
    children: FxMap<(u32, u32), u32>,
    labels: Vec<String>,
    label_ids: FxMap<String, u32>,
    /// FrameId → label, filled as frames are met.
    frame_labels: Vec<u32>,
    /// StackId → (prefix node, node) for the last prefix it was met
    /// under; other prefixes go to `memo`.
    memo_last: Vec<(u32, u32)>,
    /// (prefix node, stack) → node.
    memo: FxMap<(u32, StackId), u32>,
    pending: Vec<StackId>,
    /// No two frames share a label: then a (prefix, stack) pair is its
    /// own node and `children` need not be consulted for frames.
    injective: bool,
}

impl Tree {
    /// A tree for a profile of about `stack_nodes` stack nodes.
    fn new(stack_nodes: usize) -> Self {
        let mut t = Tree {
            parent: Vec::with_capacity(stack_nodes + 1),
            label: Vec::with_capacity(stack_nodes + 1),
            own: Vec::with_capacity(stack_nodes + 1),
            children: FxMap::default(),
            labels: Vec::new(),
            label_ids: FxMap::default(),
            frame_labels: Vec::new(),
            memo_last: vec![(0, u32::MAX); stack_nodes],
            memo: FxMap::default(),
            pending: Vec::new(),
            injective: false,
        };
        t.parent.push(u32::MAX);
        t.label.push(0);
        t.own.push(0);
        t.intern("all");
        t
    }

    /// Exchange labels (and what is known of frames' labels) with `other`.
    fn swap_labels(&mut self, other: &mut Tree) {
        std::mem::swap(&mut self.labels, &mut other.labels);
        std::mem::swap(&mut self.label_ids, &mut other.label_ids);
        std::mem::swap(&mut self.frame_labels, &mut other.frame_labels);
        std::mem::swap(&mut self.injective, &mut other.injective);
    }

    /// The node under which a thread's stacks go: its process and thread
    /// root frames, as the options ask.
    fn thread_prefix(
        &mut self,
        profile: &Profile,
        opts: &StackOptions,
        prefixes: &mut FxMap<(Option<StrId>, ThreadKey), u32>,
        endpoint: Option<Option<StrId>>,
        thread: ThreadKey,
    ) -> u32 {
        let key = (endpoint.flatten(), thread);
        if let Some(&p) = prefixes.get(&key) {
            return p;
        }
        let mut prefix = 0;
        // `--group-by endpoint`: an `endpoint (METHOD module.view)` root
        // frame, as the folded stacks have (`None`: not grouped).
        if let Some(e) = endpoint {
            let e = e.map_or("none", |e| profile.str(e));
            prefix = self.child_named(prefix, &format!("endpoint ({e})"));
        }
        if opts.processes {
            let pid = profile.thread(thread).pid;
            let cmd = profile.process_cmdline(pid).unwrap_or("");
            prefix = self.child_named(prefix, &format!("process {pid}:\"{cmd}\""));
        }
        if opts.threads {
            let label = format!("thread ({})", profile.thread(thread).label());
            prefix = self.child_named(prefix, &label);
        }
        prefixes.insert(key, prefix);
        prefix
    }

    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.label_ids.get(s) {
            return id;
        }
        let id = self.labels.len() as u32;
        self.labels.push(s.to_string());
        self.label_ids.insert(s.to_string(), id);
        id
    }

    fn child(&mut self, parent: u32, label: u32) -> u32 {
        if let Some(&c) = self.children.get(&(parent, label)) {
            return c;
        }
        let id = self.new_node(parent, label);
        self.children.insert((parent, label), id);
        id
    }

    /// Label every frame of stacks `0..stack_nodes` (stack ids are dense)
    /// and find out whether labels are one per frame.
    fn label_frames(&mut self, profile: &Profile, opts: &StackOptions, stack_nodes: usize) {
        let mut owner: FxMap<u32, u32> = FxMap::default();
        let mut injective = true;
        for i in 0..stack_nodes {
            let frame = profile.stack(StackId(i as u32)).frame;
            let fi = frame.0 as usize;
            if fi >= self.frame_labels.len() {
                self.frame_labels.resize(fi + 1, u32::MAX);
            }
            if self.frame_labels[fi] == u32::MAX {
                let text = frame_label(profile, profile.frame(frame), opts);
                let l = self.intern(&text);
                self.frame_labels[fi] = l;
                injective &= *owner.entry(l).or_insert(frame.0) == frame.0;
            }
        }
        self.injective = injective;
    }

    fn new_node(&mut self, parent: u32, label: u32) -> u32 {
        let id = self.parent.len() as u32;
        self.parent.push(parent);
        self.label.push(label);
        self.own.push(0);
        id
    }

    fn child_named(&mut self, parent: u32, label: &str) -> u32 {
        let l = self.intern(label);
        self.child(parent, l)
    }

    /// The node of `stack` under `prefix`, created as needed; iterative,
    /// as stacks may be many thousands of frames deep.
    fn node_for(
        &mut self,
        profile: &Profile,
        opts: &StackOptions,
        prefix: u32,
        stack: StackId,
    ) -> u32 {
        let mut pending = std::mem::take(&mut self.pending);
        pending.clear();
        let mut base = prefix;
        let mut cur = Some(stack);
        while let Some(s) = cur {
            if let Some(n) = self.memo_get(prefix, s) {
                base = n;
                break;
            }
            pending.push(s);
            cur = profile.stack(s).parent;
        }
        for &s in pending.iter().rev() {
            let frame = profile.stack(s).frame;
            let fi = frame.0 as usize;
            if fi >= self.frame_labels.len() {
                self.frame_labels.resize(fi + 1, u32::MAX);
            }
            if self.frame_labels[fi] == u32::MAX {
                let text = frame_label(profile, profile.frame(frame), opts);
                self.frame_labels[fi] = self.intern(&text);
            }
            let label = self.frame_labels[fi];
            base = if self.injective {
                self.new_node(base, label)
            } else {
                self.child(base, label)
            };
            self.memo_put(prefix, s, base);
        }
        self.pending = pending;
        base
    }

    fn memo_get(&self, prefix: u32, s: StackId) -> Option<u32> {
        match self.memo_last.get(s.0 as usize) {
            Some(&(p, n)) if p == prefix && n != u32::MAX => Some(n),
            Some(&(_, n)) if n == u32::MAX => None,
            _ => self.memo.get(&(prefix, s)).copied(),
        }
    }

    fn memo_put(&mut self, prefix: u32, s: StackId, node: u32) {
        let i = s.0 as usize;
        if i >= self.memo_last.len() {
            self.memo_last.resize(i + 1, (0, u32::MAX));
        }
        if self.memo_last[i].1 == u32::MAX {
            self.memo_last[i] = (prefix, node);
        } else {
            self.memo.insert((prefix, s), node);
        }
    }

    fn to_json(&self, limits: &Limits) -> Value {
        let n = self.parent.len();
        // Children are created after their parents: one backward pass sums.
        let mut total = self.own.clone();
        for i in (1..n).rev() {
            let p = self.parent[i] as usize;
            total[p] += total[i];
        }
        let root_total = total[0];
        let mut threshold = ((root_total as f64 * limits.prune_fraction).ceil() as u64).max(1);
        // Half the node budget for kept nodes, half for their [other] nodes.
        let cap = limits.flame_nodes / 2;
        if n > cap {
            let mut v = total.clone();
            v.select_nth_unstable_by(cap, |a, b| b.cmp(a));
            threshold = threshold.max(v[cap] + 1);
        }
        // Children lists of kept nodes only (a kept node's parent is kept:
        // totals shrink from parent to child); the rest only add to their
        // parent's [other].
        let mut kids: FxMap<u32, Vec<u32>> = FxMap::default();
        let mut other_sum: FxMap<u32, u64> = FxMap::default();
        let mut pruned_nodes = 0u64;
        for i in 1..n {
            let parent = self.parent[i];
            if total[i] >= threshold {
                kids.entry(parent).or_default().push(i as u32);
            } else if total[parent as usize] >= threshold {
                *other_sum.entry(parent).or_insert(0) += total[i];
                pruned_nodes += 1;
            }
        }
        let other_label = self.labels.len() as u32;
        let label_text = |l: u32| -> &str {
            if l == other_label {
                OTHER_LABEL
            } else {
                &self.labels[l as usize]
            }
        };
        enum Item {
            Node(u32, i64),
            Other(u64, i64),
        }
        let (mut p, mut names, mut v) = (Vec::new(), Vec::new(), Vec::new());
        let mut label_map: FxMap<u32, u32> = FxMap::default();
        let mut labels_out: Vec<&str> = Vec::new();
        let mut stack = vec![Item::Node(0, -1)];
        if root_total == 0 {
            stack.clear();
        }
        while let Some(item) = stack.pop() {
            let (label, value, parent, node) = match item {
                Item::Node(i, parent) => {
                    (self.label[i as usize], total[i as usize], parent, Some(i))
                }
                Item::Other(sum, parent) => (other_label, sum, parent, None),
            };
            let out_index = p.len() as i64;
            let next = labels_out.len() as u32;
            let li = *label_map.entry(label).or_insert_with(|| {
                labels_out.push(label_text(label));
                next
            });
            p.push(parent);
            names.push(li);
            v.push(value);
            let Some(i) = node else { continue };
            let mut kept = kids.remove(&i).unwrap_or_default();
            let other = other_sum.get(&i).copied().unwrap_or(0);
            kept.sort_by(|a, b| {
                label_text(self.label[*a as usize]).cmp(label_text(self.label[*b as usize]))
            });
            if other > 0 {
                stack.push(Item::Other(other, out_index));
            }
            for c in kept.into_iter().rev() {
                stack.push(Item::Node(c, out_index));
            }
        }
        json!({
            "total": root_total,
            "threshold": threshold,
            "pruned_nodes": pruned_nodes,
            "labels": labels_out,
            "p": p,
            "n": names,
            "v": v,
        })
    }
}

// ---------------------------------------------------------------------------
// SHA-256 and base64, for the Content Security Policy's hashes.

fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 32];
    for (i, x) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyrometer_profile::{FrameInfo, SampleKey, StackNode, ThreadInfo};
    use std::time::{Duration, Instant};

    fn frame(p: &mut Profile, name: &str, file: &str, line: i32) -> FrameInfo {
        FrameInfo {
            name: p.intern(name),
            filename: p.intern(file),
            line,
            first_line: 1,
        }
    }

    /// Add `count` samples of `frames` (root first).
    fn add(
        p: &mut Profile,
        thread: ThreadKey,
        frames: &[FrameInfo],
        state: ThreadState,
        count: u64,
    ) {
        let mut parent = None;
        for f in frames {
            let frame = p.frame_id(*f);
            parent = Some(p.stack_id(StackNode { parent, frame }));
        }
        p.add(
            SampleKey {
                stack: parent,
                thread,
                state,
                endpoint: None,
                category: None,
            },
            count,
        );
    }

    fn thread(p: &mut Profile, name: &str) -> ThreadKey {
        p.thread_key(ThreadInfo {
            pid: 42,
            thread_id: 7,
            native_id: Some(7),
            name: Some(name.to_string()),
        })
    }

    fn data_of(html: &str) -> Value {
        let open = r#"<script type="application/json" id="pyrometer-data">"#;
        let i = html.find(open).expect("data element") + open.len();
        let j = html[i..].find("</script>").expect("data element closes") + i;
        serde_json::from_str(&html[i..j]).expect("data is JSON")
    }

    fn html_of(p: &Profile, opts: &StackOptions) -> String {
        let mut out = Vec::new();
        write_html(p, opts, "t", &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    const HOSTILE: &str = "</script><script>alert(1)</script>\u{2028}<!--&amp;";

    #[test]
    fn hostile_strings_cannot_leave_the_data_element() {
        let mut p = Profile::new();
        let t = thread(&mut p, HOSTILE);
        p.set_process(42, HOSTILE);
        let f = frame(&mut p, HOSTILE, HOSTILE, 3);
        add(&mut p, t, &[f], ThreadState::Python, 5);
        p.meta.target = HOSTILE.to_string();
        let mut out = Vec::new();
        write_html(&p, &StackOptions::new(), HOSTILE, &mut out).unwrap();
        let html = String::from_utf8(out).unwrap();
        // The data element is the only one holding target strings, and they
        // are all escaped in it: exactly two scripts, no raw markup.
        assert_eq!(html.matches("<script").count(), 2, "{html}");
        assert_eq!(html.matches("</script>").count(), 2);
        assert!(!html.contains("alert(1)</"));
        assert!(!html.contains('\u{2028}'));
        assert!(!html.contains("<!--"));
        assert!(html.contains(r"\u003c/script\u003e\u003cscript\u003ealert(1)\u003c/script\u003e\u2028\u003c!--\u0026amp;"));
        // The title is HTML-escaped.
        assert!(html.contains(
            "<title>&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt; &lt;!--&amp;amp;</title>"
        ));
        // And the strings come back intact from the JSON.
        let d = data_of(&html);
        assert_eq!(d["title"], HOSTILE);
        assert_eq!(d["functions"]["rows"][0]["name"], HOSTILE);
        assert_eq!(d["threads"]["rows"][0]["label"], format!("{HOSTILE} 7"));
        assert_eq!(d["processes"]["rows"][0]["cmdline"], HOSTILE);
        assert_eq!(d["meta"]["target"], HOSTILE);
    }

    #[test]
    fn script_safe_json_escapes() {
        let s = script_safe_json(&json!({"a": "<>&\u{2028}\u{2029}é"}));
        assert_eq!(s, r#"{"a":"\u003c\u003e\u0026\u2028\u2029é"}"#);
        let back: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back["a"], "<>&\u{2028}\u{2029}é");
    }

    #[test]
    fn assets_cannot_close_their_elements_and_csp_hashes_them() {
        assert!(!SCRIPT.to_ascii_lowercase().contains("</script"));
        assert!(!STYLE.to_ascii_lowercase().contains("</style"));
        assert!(!SCRIPT.contains("innerHTML") && !SCRIPT.contains("outerHTML"));
        assert!(!SCRIPT.contains("insertAdjacentHTML") && !SCRIPT.contains("document.write"));
        assert!(!SCRIPT.contains("eval(") && !SCRIPT.contains("new Function"));
        // The script recognises the [other] node by its label.
        assert!(SCRIPT.contains(&format!("'{OTHER_LABEL}'")));
        let html = html_of(&Profile::new(), &StackOptions::new());
        assert!(html.contains(&format!("<script>{SCRIPT}</script>")));
        assert!(html.contains(&format!("<style>{STYLE}</style>")));
        assert!(html.contains(csp()));
        assert!(csp().starts_with("default-src 'none'; script-src 'sha256-"));
        // No reference to anything outside the file.
        for needle in ["http://", "https://", "src=\"", "@import", "url("] {
            let outside_csp = html.replace(csp(), "");
            let hits: Vec<_> = outside_csp
                .match_indices(needle)
                .map(|(i, _)| &outside_csp[i.saturating_sub(40)..(i + 40).min(outside_csp.len())])
                .filter(|ctx| !ctx.contains("http://www.w3.org/2000/svg"))
                .collect();
            assert!(hits.is_empty(), "{needle}: {hits:?}");
        }
    }

    #[test]
    fn sha256_and_base64() {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(
            hex(&sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&sha256(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn json_shape() {
        let mut p = Profile::new();
        let t = thread(&mut p, "MainThread");
        p.set_process(42, "python app.py");
        p.meta.rate = 100.0;
        p.meta.ticks = 90;
        p.meta.duration = Duration::from_secs(1);
        let main = frame(&mut p, "main", "/srv/app.py", 10);
        let a = frame(&mut p, "a", "/srv/app.py", 3);
        let b = frame(&mut p, "b", "/usr/lib/python3.11/json/decoder.py", 5);
        add(&mut p, t, &[main, a], ThreadState::Python, 6);
        add(&mut p, t, &[main, a, b], ThreadState::GilWait, 3);
        add(&mut p, t, &[main], ThreadState::Idle, 4);
        add(&mut p, t, &[], ThreadState::Native, 1);
        let d = data_of(&html_of(&p, &StackOptions::new()));
        assert_eq!(d["version"], 1);
        assert_eq!(
            d["endpoints"],
            json!([]),
            "no endpoints without web requests"
        );
        // Samples added without times (as readers of other tools' files do)
        // leave the timeline empty.
        assert_eq!(
            d["timeline"],
            json!({"width_s": 1.0, "states": [], "processes": []})
        );
        assert_eq!(d["states"], json!(["python", "native", "gil-wait", "idle"]));
        assert_eq!(d["state_totals"], json!([6, 1, 3, 4]));
        let m = &d["meta"];
        assert_eq!(m["samples"], 14);
        // Idle samples are left out of the tables (no --idle).
        assert_eq!(m["shown_samples"], 10);
        assert_eq!(m["no_python_samples"], 1);
        assert_eq!(m["rate_achieved"], 90.0);
        let lines = d["lines"]["rows"].as_array().unwrap();
        assert_eq!(d["lines"]["total"], 3);
        // Most own samples first: a (6), b (3), then main by total (9).
        assert_eq!(lines[0]["line"], 3);
        assert_eq!(lines[0]["own"], 6);
        assert_eq!(lines[0]["total"], 9);
        assert_eq!(lines[0]["split"], json!([6, 0, 3, 0]));
        assert_eq!(lines[1]["short"], "json/decoder.py");
        assert_eq!(lines[2]["line"], 10);
        assert_eq!(lines[2]["own"], 0);
        assert_eq!(lines[2]["total"], 9);
        assert_eq!(lines[2]["src"], Value::Null);
        let funcs = d["functions"]["rows"].as_array().unwrap();
        assert_eq!(funcs[0]["name"], "a");
        assert_eq!(funcs[0]["first_line"], 1);
        let th = &d["threads"]["rows"][0];
        assert_eq!(th["label"], "MainThread 7");
        assert_eq!(th["samples"], 14);
        assert_eq!(th["split"], json!([6, 1, 3, 4]));
        assert_eq!(d["processes"]["rows"][0]["threads"], 1);
        let f = &d["flame"];
        assert_eq!(f["total"], 9);
        let labels: Vec<&str> = f["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        let names: Vec<&str> = f["n"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| labels[n.as_u64().unwrap() as usize])
            .collect();
        assert_eq!(
            names,
            [
                "all",
                "main (app.py:10)",
                "a (app.py:3)",
                "b (json/decoder.py:5)"
            ]
        );
        assert_eq!(f["p"], json!([-1, 0, 1, 2]));
        assert_eq!(f["v"], json!([9, 9, 9, 3]));

        // --idle: idle samples count everywhere.
        let mut opts = StackOptions::new();
        opts.include_idle = true;
        opts.threads = true;
        let d = data_of(&html_of(&p, &opts));
        assert_eq!(d["meta"]["shown_samples"], 14);
        assert_eq!(d["flame"]["total"], 13);
        let labels = d["flame"]["labels"].as_array().unwrap();
        assert_eq!(
            labels[d["flame"]["n"][1].as_u64().unwrap() as usize],
            "thread (MainThread 7)"
        );
    }

    #[test]
    fn endpoints_have_their_own_flame_graphs_and_the_timeline_splits_processes() {
        use pyrometer_sampler::{Category, Sample, SampledFrame, SampledRequest};
        use std::sync::Arc;
        let mut p = Profile::new();
        p.set_process(10, "gunicorn: worker 1");
        p.set_process(11, "gunicorn: worker 2");
        let f = |name: &str| SampledFrame {
            name: Arc::from(name),
            filename: Arc::from("/srv/app.py"),
            line: 3,
            first_line: 1,
            code_key: 0,
        };
        // (time ms, pid, innermost-first frames, endpoint)
        let samples: Vec<(u64, i32, Vec<&str>, Option<&str>)> = vec![
            (
                100,
                10,
                vec!["slow_view", "serve"],
                Some("GET app.slow_view"),
            ),
            (
                200,
                10,
                vec!["slow_view", "serve"],
                Some("GET app.slow_view"),
            ),
            (
                300,
                10,
                vec!["query", "slow_view", "serve"],
                Some("GET app.slow_view"),
            ),
            (
                1100,
                11,
                vec!["fast_view", "serve"],
                Some("GET app.fast_view"),
            ),
            (1200, 11, vec!["accept"], None),
        ];
        for (i, (ms, pid, frames, endpoint)) in samples.into_iter().enumerate() {
            let request = endpoint.map(|e| SampledRequest {
                key: if e.contains("slow") { 1 } else { 2 },
                method: Arc::from("GET"),
                path: Arc::from("/"),
                endpoint: Arc::from(e),
            });
            let category = endpoint.map(|_| {
                if frames[0] == "query" {
                    Category::Database
                } else {
                    Category::App
                }
            });
            p.add_sample(&Sample {
                time: Duration::from_millis(ms),
                pid,
                thread_id: pid as u64,
                native_id: Some(pid),
                thread_name: Some(Arc::from("MainThread")),
                state: if i == 4 {
                    ThreadState::Idle
                } else {
                    ThreadState::Python
                },
                holds_gil: true,
                frames: frames.into_iter().map(f).collect(),
                truncated: false,
                walked: true,
                request,
                category,
            });
        }
        p.finish();
        let mut opts = StackOptions::new();
        opts.include_idle = true;
        let d = data_of(&html_of(&p, &opts));
        let e = d["endpoints"].as_array().unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0]["name"], "GET app.slow_view");
        assert_eq!(e[0]["samples"], 3);
        assert_eq!(e[0]["requests"], 1);
        assert_eq!(e[0]["categories"], json!([["app", 2], ["database", 1]]));
        let flame = &e[0]["flame"];
        assert_eq!(flame["total"], 3);
        let labels: Vec<&str> = flame["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        assert!(labels.contains(&"query (app.py:3)"), "{labels:?}");
        assert!(
            !labels
                .iter()
                .any(|l| l.starts_with("fast_view") || l.starts_with("accept")),
            "another endpoint's frames: {labels:?}"
        );
        assert_eq!(e[1]["flame"]["total"], 1);
        // The whole profile's flame graph still holds everything.
        assert_eq!(d["flame"]["total"], 5);
        let t = &d["timeline"];
        assert_eq!(t["width_s"], 1.0);
        assert_eq!(t["states"], json!([[3, 0, 0, 0], [1, 0, 0, 1]]));
        assert_eq!(t["processes"][0]["pid"], 10);
        assert_eq!(t["processes"][0]["counts"], json!([3, 0]));
        assert_eq!(t["processes"][1]["pid"], 11);
        assert_eq!(t["processes"][1]["counts"], json!([0, 2]));

        // `--group-by endpoint`: the flame graph's roots are the endpoints,
        // as in the folded stacks; the endpoints' own graphs are unchanged.
        let roots = |d: &Value| -> Vec<(String, u64)> {
            let f = &d["flame"];
            let (p, n, v) = (
                f["p"].as_array().unwrap(),
                f["n"].as_array().unwrap(),
                f["v"].as_array().unwrap(),
            );
            let mut out: Vec<(String, u64)> = (0..p.len())
                .filter(|&i| p[i] == 0)
                .map(|i| {
                    let label = &f["labels"][n[i].as_u64().unwrap() as usize];
                    (label.as_str().unwrap().to_string(), v[i].as_u64().unwrap())
                })
                .collect();
            out.sort();
            out
        };
        assert_eq!(
            roots(&d),
            vec![
                ("accept (app.py:3)".to_string(), 1),
                ("serve (app.py:3)".to_string(), 4)
            ]
        );
        opts.endpoints = true;
        let g = data_of(&html_of(&p, &opts));
        assert_eq!(g["meta"]["endpoints_option"], true);
        assert_eq!(
            roots(&g),
            vec![
                ("endpoint (GET app.fast_view)".to_string(), 1),
                ("endpoint (GET app.slow_view)".to_string(), 3),
                ("endpoint (none)".to_string(), 1),
            ]
        );
        assert_eq!(g["flame"]["total"], 5);
        assert_eq!(g["endpoints"][0]["flame"], e[0]["flame"]);
    }

    #[test]
    fn recursion_counts_once_in_totals() {
        let mut p = Profile::new();
        let t = thread(&mut p, "MainThread");
        let r = frame(&mut p, "rec", "/x.py", 2);
        add(&mut p, t, &[r, r, r], ThreadState::Python, 4);
        let d = data_of(&html_of(&p, &StackOptions::new()));
        assert_eq!(d["lines"]["rows"][0]["own"], 4);
        assert_eq!(d["lines"]["rows"][0]["total"], 4);
        assert_eq!(d["functions"]["rows"][0]["total"], 4);
        assert_eq!(d["flame"]["v"], json!([4, 4, 4, 4]));
    }

    #[test]
    fn frames_with_one_label_merge() {
        let mut p = Profile::new();
        let t = thread(&mut p, "MainThread");
        let main = frame(&mut p, "main", "/x.py", 1);
        let a3 = frame(&mut p, "a", "/x.py", 3);
        let a4 = frame(&mut p, "a", "/x.py", 4);
        let b = frame(&mut p, "b", "/x.py", 9);
        add(&mut p, t, &[main, a3, b], ThreadState::Python, 2);
        add(&mut p, t, &[main, a4, b], ThreadState::Python, 3);
        add(&mut p, t, &[main, a4], ThreadState::Python, 1);
        let mut opts = StackOptions::new();
        opts.no_line_numbers = true;
        let d = data_of(&html_of(&p, &opts));
        let f = &d["flame"];
        let labels: Vec<&str> = f["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        let names: Vec<&str> = f["n"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| labels[n.as_u64().unwrap() as usize])
            .collect();
        assert_eq!(names, ["all", "main (x.py)", "a (x.py)", "b (x.py)"]);
        assert_eq!(f["v"], json!([6, 6, 6, 5]));
        // The line table keeps lines apart.
        assert_eq!(d["lines"]["total"], 4);
        // Without --nolineno the two lines of `a` are two frames.
        let d = data_of(&html_of(&p, &StackOptions::new()));
        assert_eq!(d["flame"]["v"], json!([6, 6, 2, 2, 4, 3]));
    }

    #[test]
    fn small_nodes_are_pruned_into_other() {
        let mut p = Profile::new();
        let t = thread(&mut p, "MainThread");
        let main = frame(&mut p, "main", "/x.py", 1);
        let big = frame(&mut p, "big", "/x.py", 2);
        add(&mut p, t, &[main, big], ThreadState::Python, 100_000);
        for i in 0..30 {
            let f = frame(&mut p, &format!("tiny{i}"), "/x.py", 100 + i);
            let g = frame(&mut p, "below", "/x.py", 1000 + i);
            add(&mut p, t, &[main, f, g], ThreadState::Python, 1);
        }
        let d = data_of(&html_of(&p, &StackOptions::new()));
        let f = &d["flame"];
        // 0.05 % of 100030 samples: 51.
        assert_eq!(f["threshold"], 51);
        assert_eq!(f["pruned_nodes"], 30);
        let labels: Vec<&str> = f["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        let names: Vec<&str> = f["n"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| labels[n.as_u64().unwrap() as usize])
            .collect();
        assert_eq!(names, ["all", "main (x.py:1)", "big (x.py:2)", OTHER_LABEL]);
        assert_eq!(f["v"], json!([100_030, 100_030, 100_000, 30]));
        assert_eq!(f["p"], json!([-1, 0, 1, 1]));
        // The tables still hold every line.
        assert_eq!(d["lines"]["total"], 62);
    }

    #[test]
    fn tables_are_capped() {
        let mut p = Profile::new();
        let t = thread(&mut p, "MainThread");
        for i in 0..2000 {
            let f = frame(&mut p, &format!("f{i}"), &format!("/m{}.py", i % 50), i);
            add(&mut p, t, &[f], ThreadState::Python, 1 + i as u64 % 7);
        }
        let d = data_of(&html_of(&p, &StackOptions::new()));
        assert_eq!(d["lines"]["total"], 2000);
        assert_eq!(d["lines"]["rows"].as_array().unwrap().len(), LIMITS.lines);
        assert_eq!(
            d["functions"]["rows"].as_array().unwrap().len(),
            LIMITS.functions
        );
        // The hottest come first.
        assert_eq!(d["lines"]["rows"][0]["own"], 7);
    }

    #[test]
    fn source_lines_are_read_best_effort() {
        let dir = std::env::temp_dir().join(format!("pyrometer-html-src-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("mod.py");
        let long = "x".repeat(1000);
        std::fs::write(
            &file,
            format!("import os\r\n\tdef f():  # </script>\x07\n{long}\n"),
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let mut c = SourceCache::new(&LIMITS);
        assert_eq!(c.line(path, 1).as_deref(), Some("import os"));
        assert_eq!(
            c.line(path, 2).as_deref(),
            Some("\tdef f():  # </script>\u{FFFD}")
        );
        assert_eq!(
            c.line(path, 3).unwrap().chars().count(),
            LIMITS.source_line_chars + 1
        );
        assert_eq!(c.line(path, 4), None);
        assert_eq!(c.line(path, 0), None);
        assert_eq!(c.line("/nonexistent/x.py", 1), None);
        assert_eq!(c.line("<frozen importlib._bootstrap>", 1), None);
        // Not Python source: never read.
        let other = dir.join("secret.txt");
        std::fs::write(&other, "token\n").unwrap();
        assert_eq!(c.line(other.to_str().unwrap(), 1), None);
        // Over the budget: not read.
        let small = Limits {
            source_total_bytes: 5,
            ..LIMITS
        };
        let mut c = SourceCache::new(&small);
        assert_eq!(c.line(path, 1), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn empty_profile() {
        let d = data_of(&html_of(&Profile::new(), &StackOptions::new()));
        assert_eq!(d["flame"]["total"], 0);
        assert_eq!(d["flame"]["p"], json!([]));
        assert_eq!(d["lines"]["rows"], json!([]));
        assert_eq!(d["meta"]["rate_achieved"], Value::Null);
    }

    /// A deterministic pseudo-random sequence (xorshift64*).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A synthetic profile of `samples` samples over many distinct stacks:
    /// 2000 functions in 200 files, stacks 5–40 deep grown from a few
    /// hundred shared prefixes, 8 threads, every state.
    pub(crate) fn synthetic(samples: u64) -> Profile {
        let mut p = Profile::new();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let threads: Vec<ThreadKey> = (0..8)
            .map(|i| {
                p.thread_key(ThreadInfo {
                    pid: 1000 + i / 4,
                    thread_id: i as u64,
                    native_id: Some(2000 + i),
                    name: Some(format!("worker-{i}")),
                })
            })
            .collect();
        p.set_process(1000, "python app.py");
        p.set_process(1001, "python worker.py");
        let frames: Vec<FrameInfo> = (0..2000)
            .map(|i| {
                let file = format!("/srv/app/pkg{}/module{}.py", i % 20, i % 200);
                let f = frame(&mut p, &format!("function_{i}"), &file, 10 + (i % 300));
                FrameInfo {
                    first_line: f.line - 5,
                    ..f
                }
            })
            .collect();
        let prefixes: Vec<Vec<FrameInfo>> = (0..300)
            .map(|_| {
                let depth = 3 + rng.below(15) as usize;
                (0..depth)
                    .map(|_| frames[rng.below(200) as usize])
                    .collect()
            })
            .collect();
        let mut left = samples;
        while left > 0 {
            let mut stack = prefixes[rng.below(prefixes.len() as u64) as usize].clone();
            let extra = 2 + rng.below(25) as usize;
            for _ in 0..extra {
                stack.push(frames[rng.below(frames.len() as u64) as usize]);
            }
            let state = STATES[rng.below(4) as usize];
            let t = threads[rng.below(8) as usize];
            let n = (1 + rng.below(9)).min(left);
            add(&mut p, t, &stack, state, n);
            left -= n;
        }
        p.meta.rate = 1000.0;
        p.meta.ticks = samples / 8;
        p.meta.duration = Duration::from_secs_f64(samples as f64 / 8000.0);
        p.meta.target = "python app.py".into();
        p
    }

    /// Report generation for a profile of 1 million samples over ~200 000
    /// distinct stacks. Must take under a second in a release build (`cargo
    /// test --release -p pyrometer-outputs html_million -- --nocapture`
    /// prints the time). A debug build (the lib tests) renders a tenth of
    /// it, once per option set, with the same checks and a loose bound: the
    /// full size took a minute or two there, and proves nothing about speed.
    #[test]
    fn html_million_samples_report_time() {
        let (samples, runs) = if cfg!(debug_assertions) {
            (100_000, 1)
        } else {
            (1_000_000, 3)
        };
        let p = synthetic(samples);
        assert_eq!(p.total_samples(), samples);
        let distinct = p.counts().len();
        let mut by_line = StackOptions::new();
        by_line.include_idle = true;
        by_line.threads = true;
        // Labels shared by many frames: the tree merges through its map.
        let mut by_function = by_line.clone();
        by_function.no_line_numbers = true;
        for (what, opts) in [
            ("--idle --threads", by_line),
            ("--idle --threads --nolineno", by_function),
        ] {
            let mut best = Duration::MAX;
            let mut size = 0;
            for _ in 0..runs {
                let mut out = Vec::new();
                let t0 = Instant::now();
                write_html(&p, &opts, "bench", &mut out).unwrap();
                best = best.min(t0.elapsed());
                size = out.len();
            }
            println!(
                "html report ({what}): {samples} samples, {distinct} distinct (stack, thread, state) \
                 keys: {:.0} ms (best of {runs}), {:.2} MB",
                best.as_secs_f64() * 1000.0,
                size as f64 / 1e6
            );
            if let Some(path) = std::env::var_os("PYROMETER_HTML_BENCH_OUT") {
                // To look at the page: PYROMETER_HTML_BENCH_OUT=/tmp/big.html
                let mut out = Vec::new();
                write_html(&p, &opts, "bench", &mut out).unwrap();
                std::fs::write(path, out).unwrap();
            }
            let bound = if cfg!(debug_assertions) { 30.0 } else { 1.0 };
            assert!(
                best.as_secs_f64() < bound,
                "{what}: {best:?} (bound {bound} s)"
            );
            assert!(size < 4_000_000, "{what}: {size} bytes");
        }
    }
}
