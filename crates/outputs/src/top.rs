//! The live view of `pyrometer top`: the same [`Profile`] `record` fills,
//! kept twice (since the last reset, and over the last refresh interval),
//! and the table rows each view shows, computed by pure functions so they
//! can be tested without a terminal.
//!
//! Every string that comes from the target (function and file names,
//! endpoints, command lines) passes through [`terminal_text`]: a name
//! holding an escape sequence must not drive the user's terminal.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use pyrometer_profile::{Profile, StrId};
use pyrometer_sampler::{Sample, ThreadState};

use crate::display_filename;

/// The views of `top`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Functions by own time.
    Functions,
    /// Source lines by own time.
    Lines,
    /// Web endpoints.
    Endpoints,
    /// Sampled processes.
    Processes,
}

impl View {
    /// Every view, in Tab order.
    pub const ALL: [View; 4] = [
        View::Functions,
        View::Lines,
        View::Endpoints,
        View::Processes,
    ];

    /// The view's name as the tab bar shows it.
    pub fn title(&self) -> &'static str {
        match self {
            View::Functions => "functions",
            View::Lines => "lines",
            View::Endpoints => "endpoints",
            View::Processes => "processes",
        }
    }

    /// The next view (Tab).
    pub fn next(&self) -> View {
        let i = View::ALL.iter().position(|v| v == self).unwrap_or(0);
        View::ALL[(i + 1) % View::ALL.len()]
    }

    /// The columns of the view.
    pub fn columns(&self) -> &'static [Column] {
        match self {
            View::Functions => FUNCTION_COLUMNS,
            View::Lines => LINE_COLUMNS,
            View::Endpoints => ENDPOINT_COLUMNS,
            View::Processes => PROCESS_COLUMNS,
        }
    }

    /// The column a view is sorted by when first shown.
    pub fn default_sort(&self) -> usize {
        match self {
            View::Functions | View::Lines => 0,
            View::Endpoints => 4,
            View::Processes => 2,
        }
    }
}

/// A column of a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Header.
    pub title: &'static str,
    /// Width in cells (the least width, for text columns).
    pub width: u16,
    /// Numbers are right-aligned and sort descending first.
    pub numeric: bool,
    /// Lower is kept longer when the terminal is narrow.
    pub priority: u8,
    /// Takes a share of the width left over (names, files, commands).
    pub grow: bool,
}

const fn num(title: &'static str, width: u16, priority: u8) -> Column {
    Column {
        title,
        width,
        numeric: true,
        priority,
        grow: false,
    }
}

const fn text(title: &'static str, width: u16, priority: u8) -> Column {
    Column {
        title,
        width,
        numeric: false,
        priority,
        grow: true,
    }
}

const fn label(title: &'static str, width: u16, priority: u8) -> Column {
    Column {
        grow: false,
        ..text(title, width, priority)
    }
}

// Widths leave room for the sort mark (one cell) after a title.
const FUNCTION_COLUMNS: &[Column] = &[
    num("OWN%", 6, 0),
    num("TOTAL%", 7, 1),
    num("OWN s", 6, 3),
    num("TOTAL s", 7, 4),
    num("PY", 3, 5),
    num("NAT", 4, 5),
    num("GIL", 4, 6),
    num("IDLE", 5, 6),
    text("FUNCTION", 13, 0),
    text("FILE:LINE", 13, 2),
];

const LINE_COLUMNS: &[Column] = &[
    num("OWN%", 6, 0),
    num("TOTAL%", 7, 1),
    num("OWN s", 7, 3),
    num("TOTAL s", 8, 4),
    text("FILE:LINE", 16, 0),
    text("FUNCTION", 14, 2),
];

const ENDPOINT_COLUMNS: &[Column] = &[
    num("REQ/s", 7, 1),
    num("REQS", 7, 4),
    num("P50 ms", 8, 2),
    num("P95 ms", 8, 3),
    num("CPU%", 6, 0),
    num("WALL s", 7, 5),
    text("ENDPOINT", 16, 0),
];

const PROCESS_COLUMNS: &[Column] = &[
    num("PID", 8, 0),
    label("ROLE", 7, 3),
    num("CPU%", 6, 0),
    num("RSS", 10, 2),
    num("SAMP/s", 7, 1),
    num("THREADS", 8, 4),
    num("ERRORS", 7, 2),
    text("COMMAND", 12, 0),
];

/// What a cell sorts by.
#[derive(Debug, Clone, PartialEq)]
pub enum SortKey {
    /// A number.
    Num(f64),
    /// A text, compared case-insensitively.
    Text(String),
}

/// One cell: what is shown and what it sorts by.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// The text shown (already terminal-safe).
    pub text: String,
    /// The sort key.
    pub key: SortKey,
}

impl Cell {
    fn num(value: f64, shown: String) -> Cell {
        Cell {
            text: shown,
            key: SortKey::Num(value),
        }
    }

    fn text(shown: String) -> Cell {
        Cell {
            key: SortKey::Text(shown.to_lowercase()),
            text: shown,
        }
    }
}

/// The rows of one view.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The view's columns.
    pub columns: &'static [Column],
    /// Rows, one cell per column.
    pub rows: Vec<Vec<Cell>>,
}

/// A process as the sampler sees it (errors are not in the profile).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessStatus {
    /// Process id.
    pub pid: i32,
    /// Failed or torn reads of the process.
    pub errors: u64,
    /// Still being sampled.
    pub alive: bool,
    /// Resident set size at the last memory reading, bytes.
    pub rss: Option<u64>,
}

/// Everything a view is computed from.
#[derive(Debug, Clone, Copy)]
pub struct ViewInput<'a> {
    /// The samples shown (the last interval, or everything since the reset).
    pub profile: &'a Profile,
    /// Requests finished in that window, per endpoint.
    pub requests: &'a HashMap<String, u64>,
    /// Request durations come from here (everything since the reset: a
    /// one-second window holds too few requests for percentiles).
    pub latency: &'a Profile,
    /// Wall-clock time the window covers.
    pub span: Duration,
    /// Seconds of thread time one sample stands for (the achieved period).
    pub sample_seconds: f64,
    /// Keep idle samples in the functions and lines views (`--idle`).
    pub include_idle: bool,
    /// Per-process sampler status.
    pub processes: &'a [ProcessStatus],
}

/// Replace every control character (ESC, CR, BEL, C1 controls, ...) so
/// that text from the target cannot move the cursor or change the terminal.
pub fn terminal_text(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

fn pct_cell(value: f64) -> Cell {
    Cell::num(value, format!("{value:.1}"))
}

fn secs_cell(value: f64) -> Cell {
    Cell::num(value, format!("{value:.2}"))
}

#[derive(Default)]
struct Acc {
    own: u64,
    total: u64,
    states: [u64; 4],
}

fn state_index(s: ThreadState) -> usize {
    match s {
        ThreadState::Python => 0,
        ThreadState::Native => 1,
        ThreadState::GilWait => 2,
        ThreadState::Idle => 3,
    }
}

/// Own and total samples per key of the innermost frame / of every frame
/// (each key counted once per stack), with the own samples' state split.
fn accumulate<K: std::hash::Hash + Eq + Copy + Ord>(
    input: &ViewInput,
    key_of: impl Fn(&pyrometer_profile::FrameInfo) -> K,
) -> (BTreeMap<K, Acc>, u64) {
    let p = input.profile;
    let mut acc: BTreeMap<K, Acc> = BTreeMap::new();
    let mut all = 0u64;
    let mut seen = HashSet::new();
    for (k, count) in p.counts() {
        if k.state == ThreadState::Idle && !input.include_idle {
            continue;
        }
        all += count;
        let frames = p.stack_frames(k.stack);
        if let Some(leaf) = frames.last() {
            let a = acc.entry(key_of(p.frame(*leaf))).or_default();
            a.own += count;
            a.states[state_index(k.state)] += count;
        }
        seen.clear();
        for id in frames {
            let key = key_of(p.frame(id));
            if seen.insert(key) {
                acc.entry(key).or_default().total += count;
            }
        }
    }
    (acc, all)
}

fn location(p: &Profile, file: StrId, line: i32) -> String {
    let file = terminal_text(display_filename(p.str(file), false));
    if line > 0 {
        format!("{file}:{line}")
    } else {
        file
    }
}

fn function_rows(input: &ViewInput) -> Vec<Vec<Cell>> {
    let p = input.profile;
    let (acc, all) = accumulate(input, |f| (f.name, f.filename, f.first_line));
    acc.into_iter()
        .map(|((name, file, first_line), a)| {
            let mut row = vec![
                pct_cell(pct(a.own, all)),
                pct_cell(pct(a.total, all)),
                secs_cell(a.own as f64 * input.sample_seconds),
                secs_cell(a.total as f64 * input.sample_seconds),
            ];
            for s in a.states {
                let v = pct(s, a.own);
                row.push(Cell::num(v, format!("{v:.0}")));
            }
            row.push(Cell::text(terminal_text(p.str(name))));
            row.push(Cell::text(location(p, file, first_line)));
            row
        })
        .collect()
}

fn line_rows(input: &ViewInput) -> Vec<Vec<Cell>> {
    let p = input.profile;
    // The function is part of the key: one line of a file belongs to one
    // function, and a line with no number must not merge functions.
    let (acc, all) = accumulate(input, |f| (f.filename, f.line, f.name));
    acc.into_iter()
        .map(|((file, line, name), a)| {
            vec![
                pct_cell(pct(a.own, all)),
                pct_cell(pct(a.total, all)),
                secs_cell(a.own as f64 * input.sample_seconds),
                secs_cell(a.total as f64 * input.sample_seconds),
                Cell::text(location(p, file, line)),
                Cell::text(terminal_text(p.str(name))),
            ]
        })
        .collect()
}

fn ms_cell(d: Option<Duration>) -> Cell {
    match d {
        Some(d) => {
            let ms = d.as_secs_f64() * 1e3;
            Cell::num(ms, format!("{ms:.1}"))
        }
        None => Cell::num(-1.0, "-".into()),
    }
}

fn endpoint_rows(input: &ViewInput) -> Vec<Vec<Cell>> {
    #[derive(Default)]
    struct Row {
        wall: u64,
        cpu: u64,
    }
    let p = input.profile;
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for (k, count) in p.counts() {
        let Some(e) = k.endpoint else { continue };
        let r = rows.entry(p.str(e).to_string()).or_default();
        r.wall += count;
        if k.state.is_active() {
            r.cpu += count;
        }
    }
    for name in input.requests.keys() {
        rows.entry(name.clone()).or_default();
    }
    let latency: HashMap<&str, &pyrometer_profile::EndpointRequests> = input
        .latency
        .requests()
        .endpoints()
        .map(|(e, r)| (input.latency.str(e), r))
        .collect();
    let span = input.span.as_secs_f64();
    rows.into_iter()
        .map(|(name, r)| {
            let done = input.requests.get(&name).copied().unwrap_or(0);
            let rate = if span > 0.0 { done as f64 / span } else { 0.0 };
            let l = latency.get(name.as_str());
            let cpu_secs = r.cpu as f64 * input.sample_seconds;
            let cpu = if span > 0.0 {
                100.0 * cpu_secs / span
            } else {
                0.0
            };
            vec![
                Cell::num(rate, format!("{rate:.1}")),
                Cell::num(done as f64, done.to_string()),
                ms_cell(l.and_then(|l| l.quantile(0.5))),
                ms_cell(l.and_then(|l| l.quantile(0.95))),
                pct_cell(cpu),
                secs_cell(r.wall as f64 * input.sample_seconds),
                Cell::text(terminal_text(&name)),
            ]
        })
        .collect()
}

fn process_rows(input: &ViewInput) -> Vec<Vec<Cell>> {
    #[derive(Default)]
    struct Row {
        samples: u64,
        cpu: u64,
        threads: HashSet<u32>,
    }
    let p = input.profile;
    // Live processes, and those that exited but have samples in the window
    // (recycled workers would otherwise pile up).
    let mut rows: BTreeMap<i32, Row> = BTreeMap::new();
    for s in input.processes.iter().filter(|s| s.alive) {
        rows.entry(s.pid).or_default();
    }
    for (k, count) in p.counts() {
        let r = rows.entry(p.thread(k.thread).pid).or_default();
        r.samples += count;
        if k.state.is_active() {
            r.cpu += count;
        }
        r.threads.insert(k.thread.0);
    }
    let span = input.span.as_secs_f64();
    rows.into_iter()
        .map(|(pid, r)| {
            let status = input.processes.iter().find(|s| s.pid == pid);
            let alive = status.is_some_and(|s| s.alive);
            let role = p.process_role(pid).unwrap_or("");
            let role = if alive {
                terminal_text(role)
            } else {
                "exited".to_string()
            };
            let per_sec = |n: u64| if span > 0.0 { n as f64 / span } else { 0.0 };
            let cpu = 100.0 * per_sec(r.cpu) * input.sample_seconds;
            let rate = per_sec(r.samples);
            let errors = status.map(|s| s.errors).unwrap_or(0);
            vec![
                Cell::num(pid as f64, pid.to_string()),
                Cell::text(role),
                pct_cell(cpu),
                match status.and_then(|s| s.rss) {
                    Some(b) => Cell::num(b as f64, crate::memory::format_bytes(b)),
                    None => Cell::num(-1.0, "-".into()),
                },
                Cell::num(rate, format!("{rate:.0}")),
                Cell::num(r.threads.len() as f64, r.threads.len().to_string()),
                Cell::num(errors as f64, errors.to_string()),
                Cell::text(terminal_text(p.process_cmdline(pid).unwrap_or(""))),
            ]
        })
        .collect()
}

/// The rows of `view`, unsorted.
pub fn table(view: View, input: &ViewInput) -> Table {
    let rows = match view {
        View::Functions => function_rows(input),
        View::Lines => line_rows(input),
        View::Endpoints => endpoint_rows(input),
        View::Processes => process_rows(input),
    };
    Table {
        columns: view.columns(),
        rows,
    }
}

impl Table {
    /// Sort by `column`: numbers largest first, texts A to Z; `reverse`
    /// flips it. Ties keep the order of the other columns, left to right.
    pub fn sort(&mut self, column: usize, reverse: bool) {
        let column = column.min(self.columns.len().saturating_sub(1));
        let cmp_key = |a: &SortKey, b: &SortKey| match (a, b) {
            (SortKey::Num(x), SortKey::Num(y)) => y.total_cmp(x),
            (SortKey::Text(x), SortKey::Text(y)) => x.cmp(y),
            (SortKey::Num(_), SortKey::Text(_)) => std::cmp::Ordering::Less,
            (SortKey::Text(_), SortKey::Num(_)) => std::cmp::Ordering::Greater,
        };
        self.rows.sort_by(|a, b| {
            let primary = match (a.get(column), b.get(column)) {
                (Some(x), Some(y)) => cmp_key(&x.key, &y.key),
                _ => std::cmp::Ordering::Equal,
            };
            let primary = if reverse { primary.reverse() } else { primary };
            primary.then_with(|| {
                a.iter()
                    .zip(b.iter())
                    .map(|(x, y)| cmp_key(&x.key, &y.key))
                    .find(|o| o.is_ne())
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
        });
    }

    /// Keep the rows one of whose text cells contains `needle` (case
    /// insensitive); an empty needle keeps everything.
    pub fn filter(&mut self, needle: &str) {
        let needle = needle.to_lowercase();
        if needle.is_empty() {
            return;
        }
        let text_columns: Vec<usize> = (0..self.columns.len())
            .filter(|&i| !self.columns[i].numeric)
            .collect();
        self.rows.retain(|row| {
            text_columns.iter().any(|&i| {
                row.get(i)
                    .is_some_and(|c| c.text.to_lowercase().contains(&needle))
            })
        });
    }
}

/// The columns that fit in `width` cells (one separating space each), in
/// their order: the least important go first when it is narrow; at least
/// one column is always kept.
pub fn fit_columns(columns: &[Column], width: u16) -> Vec<usize> {
    let mut order: Vec<usize> = (0..columns.len()).collect();
    order.sort_by_key(|&i| (columns[i].priority, i));
    let mut kept = Vec::new();
    let mut used: u32 = 0;
    for i in order {
        let need = u32::from(columns[i].width) + u32::from(!kept.is_empty());
        if kept.is_empty() || used + need <= u32::from(width) {
            used += need;
            kept.push(i);
        }
    }
    kept.sort_unstable();
    kept
}

/// The profile `top` fills from the sampler: everything since the start
/// (or the last reset), and the current refresh interval. Both are plain
/// [`Profile`]s, filled by the same `add_sample` as `record`'s.
#[derive(Debug)]
pub struct LiveProfile {
    cumulative: Profile,
    current: Profile,
    last: Profile,
    period: Duration,
    since_reset: Duration,
    current_start: Duration,
    last_span: Duration,
    ticks_current: u64,
    ticks_last: u64,
    ticks_total: u64,
    requests_at_roll: HashMap<String, u64>,
    requests_last: HashMap<String, u64>,
}

fn request_counts(p: &Profile) -> HashMap<String, u64> {
    p.requests()
        .endpoints()
        .map(|(e, r)| (p.str(e).to_string(), r.count))
        .collect()
}

impl LiveProfile {
    /// An empty live profile sampled every `period`, starting at session
    /// time `now`.
    pub fn new(template: Profile, period: Duration, now: Duration) -> Self {
        let mut cumulative = template;
        cumulative.set_period(period);
        let current = Self::empty_like(&cumulative, period);
        let last = Self::empty_like(&cumulative, period);
        LiveProfile {
            cumulative,
            current,
            last,
            period,
            since_reset: now,
            current_start: now,
            last_span: Duration::ZERO,
            ticks_current: 0,
            ticks_last: 0,
            ticks_total: 0,
            requests_at_roll: HashMap::new(),
            requests_last: HashMap::new(),
        }
    }

    fn empty_like(p: &Profile, period: Duration) -> Profile {
        let mut fresh = Profile::new();
        fresh.meta = p.meta.clone();
        fresh.set_period(period);
        for (pid, cmd) in p.processes() {
            fresh.set_process(pid, cmd);
            if let Some(role) = p.process_role(pid) {
                fresh.set_process_role(pid, role);
            }
        }
        fresh
    }

    /// A process exited: drop its per-process caches in every window (see
    /// [`Profile::process_exited`]), as `record` does.
    pub fn process_exited(&mut self, pid: i32) {
        for p in [&mut self.cumulative, &mut self.current, &mut self.last] {
            p.process_exited(pid);
        }
    }

    /// Record a process's command line and role in every window.
    pub fn set_process(&mut self, pid: i32, cmdline: &str, role: Option<&str>) {
        for p in [&mut self.cumulative, &mut self.current, &mut self.last] {
            p.set_process(pid, cmdline);
            if let Some(r) = role {
                p.set_process_role(pid, r);
            }
        }
    }

    /// The target's Python version, when it is learnt late (a launched
    /// shell whose Python children attach later).
    pub fn set_python_version(&mut self, version: &str) {
        for p in [&mut self.cumulative, &mut self.current, &mut self.last] {
            p.meta.python_version = version.to_string();
        }
    }

    /// One tick of the clock was sampled.
    pub fn add_tick(&mut self) {
        self.ticks_current += 1;
        self.ticks_total += 1;
    }

    /// One sample.
    pub fn add_sample(&mut self, s: &Sample) {
        self.cumulative.add_sample(s);
        self.current.add_sample(s);
    }

    /// Close the current interval at session time `now`: it becomes the
    /// "last interval" the view shows.
    pub fn roll(&mut self, now: Duration) {
        let fresh = Self::empty_like(&self.cumulative, self.period);
        self.last = std::mem::replace(&mut self.current, fresh);
        self.last_span = now.saturating_sub(self.current_start);
        self.current_start = now;
        self.ticks_last = std::mem::take(&mut self.ticks_current);
        let counts = request_counts(&self.cumulative);
        self.requests_last = counts
            .iter()
            .map(|(e, n)| {
                let before = self.requests_at_roll.get(e).copied().unwrap_or(0);
                (e.clone(), n.saturating_sub(before))
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        self.requests_at_roll = counts;
    }

    /// Forget everything sampled so far (the `0` key).
    pub fn reset(&mut self, now: Duration) {
        let fresh = Self::empty_like(&self.cumulative, self.period);
        *self = LiveProfile::new(fresh, self.period, now);
    }

    /// Everything since the start or the last reset.
    pub fn cumulative(&self) -> &Profile {
        &self.cumulative
    }

    /// Samples in the interval not yet closed by [`LiveProfile::roll`].
    pub fn current_samples(&self) -> u64 {
        self.current.total_samples()
    }

    /// Ticks sampled since the start or the last reset.
    pub fn ticks(&self) -> u64 {
        self.ticks_total
    }

    /// The window shown and its request counts, span and achieved seconds
    /// per sample.
    pub fn window(
        &self,
        cumulative: bool,
        now: Duration,
    ) -> (&Profile, &HashMap<String, u64>, Duration, f64) {
        if cumulative {
            let span = now.saturating_sub(self.since_reset);
            // Requests finished since the reset are the tracker's counts;
            // kept in the "at roll" map up to the last roll, which is what
            // the view shows between refreshes.
            (
                &self.cumulative,
                &self.requests_at_roll,
                span,
                seconds_per_sample(span, self.ticks_total, self.period),
            )
        } else {
            (
                &self.last,
                &self.requests_last,
                self.last_span,
                seconds_per_sample(self.last_span, self.ticks_last, self.period),
            )
        }
    }
}

/// Wall time per tick actually achieved (late ticks skipped make each
/// sample stand for more time); the nominal period before any tick.
fn seconds_per_sample(span: Duration, ticks: u64, period: Duration) -> f64 {
    if ticks == 0 || span.is_zero() {
        period.as_secs_f64()
    } else {
        span.as_secs_f64() / ticks as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyrometer_sampler::{SampledFrame, SampledRequest};
    use std::sync::Arc;

    fn sample(pid: i32, frames: &[(&str, &str, i32)], state: ThreadState) -> Sample {
        Sample {
            time: Duration::ZERO,
            pid,
            thread_id: 7,
            native_id: Some(7),
            thread_name: Some(Arc::from("MainThread")),
            state,
            holds_gil: state == ThreadState::Python,
            frames: frames
                .iter()
                .map(|(n, f, l)| SampledFrame {
                    name: Arc::from(*n),
                    filename: Arc::from(*f),
                    line: *l,
                    // One first line per function, as a real code object has.
                    first_line: if *n == "main" { 19 } else { *l - 1 },
                    code_key: 0,
                })
                .collect(),
            truncated: false,
            walked: true,
            request: None,
            category: None,
        }
    }

    fn input<'a>(
        p: &'a Profile,
        req: &'a HashMap<String, u64>,
        procs: &'a [ProcessStatus],
    ) -> ViewInput<'a> {
        ViewInput {
            profile: p,
            requests: req,
            latency: p,
            span: Duration::from_secs(1),
            sample_seconds: 0.01,
            include_idle: false,
            processes: procs,
        }
    }

    fn names(t: &Table, col: usize) -> Vec<String> {
        t.rows.iter().map(|r| r[col].text.clone()).collect()
    }

    fn busy_profile() -> Profile {
        let mut p = Profile::new();
        for _ in 0..3 {
            p.add_sample(&sample(
                1,
                &[("hot", "/a/x.py", 5), ("main", "/a/x.py", 20)],
                ThreadState::Python,
            ));
        }
        p.add_sample(&sample(
            1,
            &[("warm", "/a/x.py", 9), ("main", "/a/x.py", 21)],
            ThreadState::Native,
        ));
        p.add_sample(&sample(
            1,
            &[("sleepy", "/a/x.py", 30), ("main", "/a/x.py", 22)],
            ThreadState::Idle,
        ));
        p
    }

    #[test]
    fn functions_have_own_total_seconds_and_state_split() {
        let p = busy_profile();
        let req = HashMap::new();
        let mut t = table(View::Functions, &input(&p, &req, &[]));
        t.sort(0, false);
        assert_eq!(names(&t, 8), ["hot", "warm", "main"]);
        let hot = &t.rows[0];
        assert_eq!(hot[0].text, "75.0");
        assert_eq!(hot[1].text, "75.0");
        assert_eq!(hot[2].text, "0.03");
        assert_eq!(hot[4].text, "100"); // python
        assert_eq!(hot[9].text, "x.py:4"); // first line of the function
        let warm = &t.rows[1];
        assert_eq!(warm[5].text, "100"); // native
        let main = &t.rows[2];
        assert_eq!(main[0].text, "0.0");
        assert_eq!(main[1].text, "100.0");
    }

    #[test]
    fn idle_samples_are_kept_only_when_asked() {
        let p = busy_profile();
        let req = HashMap::new();
        let mut i = input(&p, &req, &[]);
        i.include_idle = true;
        let mut t = table(View::Functions, &i);
        t.sort(0, false);
        assert_eq!(names(&t, 8), ["hot", "warm", "sleepy", "main"]);
        assert_eq!(t.rows[0][0].text, "60.0");
        assert_eq!(t.rows[2][7].text, "100"); // idle split
    }

    #[test]
    fn sorting_by_another_column_and_reversing_change_the_order() {
        let p = busy_profile();
        let req = HashMap::new();
        let mut t = table(View::Functions, &input(&p, &req, &[]));
        t.sort(8, false);
        assert_eq!(names(&t, 8), ["hot", "main", "warm"]);
        t.sort(8, true);
        assert_eq!(names(&t, 8), ["warm", "main", "hot"]);
        t.sort(1, false);
        assert_eq!(names(&t, 8)[0], "main");
        t.sort(0, true);
        assert_eq!(names(&t, 8)[0], "main");
    }

    #[test]
    fn filtering_keeps_matching_text_only() {
        let p = busy_profile();
        let req = HashMap::new();
        let mut t = table(View::Functions, &input(&p, &req, &[]));
        t.filter("WAR");
        assert_eq!(names(&t, 8), ["warm"]);
        let mut t = table(View::Functions, &input(&p, &req, &[]));
        t.filter("x.py:19");
        assert_eq!(names(&t, 8), ["main"]);
        t.filter("");
        assert_eq!(t.rows.len(), 1);
    }

    #[test]
    fn lines_are_per_file_and_line() {
        let p = busy_profile();
        let req = HashMap::new();
        let mut t = table(View::Lines, &input(&p, &req, &[]));
        t.sort(0, false);
        assert_eq!(names(&t, 4), ["x.py:5", "x.py:9", "x.py:20", "x.py:21"]);
        assert_eq!(t.rows[2][1].text, "75.0");
        assert_eq!(t.rows[2][5].text, "main");
    }

    #[test]
    fn target_strings_cannot_inject_escape_sequences() {
        let mut p = Profile::new();
        p.add_sample(&sample(
            1,
            &[("evil\x1b]0;pwned\x07\x1b[2J", "/a/\x1b[31mred.py\r", 3)],
            ThreadState::Python,
        ));
        p.set_process(1, "python\x1b[H\u{9b}1m");
        let req = HashMap::new();
        for view in View::ALL {
            let t = table(view, &input(&p, &req, &[]));
            for row in &t.rows {
                for c in row {
                    assert!(
                        !c.text.chars().any(|c| c.is_control()),
                        "{view:?}: {:?}",
                        c.text
                    );
                }
            }
        }
        assert_eq!(terminal_text("a\x1b[2Jb\n"), "a?[2Jb?");
    }

    #[test]
    fn endpoints_show_rate_latency_and_cpu() {
        let mut live = LiveProfile::new(Profile::new(), Duration::from_millis(10), Duration::ZERO);
        let mut t = Duration::ZERO;
        // Four requests of 5 samples each, then a different endpoint.
        for key in 0..4u64 {
            for _ in 0..5 {
                let mut s = sample(1, &[("view", "/app.py", 3)], ThreadState::Python);
                s.time = t;
                s.request = Some(SampledRequest {
                    key: key + 1,
                    method: "GET".into(),
                    endpoint: "GET app.view".into(),
                    path: "/v".into(),
                });
                live.add_tick();
                live.add_sample(&s);
                t += Duration::from_millis(10);
            }
        }
        let mut s = sample(1, &[("idle", "/app.py", 3)], ThreadState::Idle);
        s.time = t;
        live.add_sample(&s);
        live.add_tick();
        t += Duration::from_millis(10);
        // The last request counts once its grace (5 periods, in which the
        // same request seen again would be the same request) is over.
        for _ in 0..6 {
            let mut s = sample(1, &[("idle", "/app.py", 3)], ThreadState::Idle);
            s.time = t;
            live.add_sample(&s);
            t += Duration::from_millis(10);
        }
        live.roll(t);
        let (p, req, span, per) = live.window(false, t);
        assert_eq!(req.get("GET app.view"), Some(&4));
        let i = ViewInput {
            profile: p,
            requests: req,
            latency: live.cumulative(),
            span,
            sample_seconds: per,
            include_idle: false,
            processes: &[],
        };
        let table = table(View::Endpoints, &i);
        assert_eq!(table.rows.len(), 1);
        let row = &table.rows[0];
        assert_eq!(row[6].text, "GET app.view");
        assert_eq!(row[1].text, "4");
        // 4 requests in 0.27 s.
        assert_eq!(row[0].text, format!("{:.1}", 4.0 / 0.27));
        // 40 ms from first to last sample, plus one period.
        assert_eq!(row[2].text, "50.0");
        // 20 of 21 ticks on a CPU for this endpoint.
        assert_eq!(row[4].text, format!("{:.1}", 100.0 * 20.0 / 21.0));
    }

    #[test]
    fn intervals_roll_and_reset_forgets() {
        let mut live = LiveProfile::new(Profile::new(), Duration::from_millis(10), Duration::ZERO);
        let hot = sample(1, &[("hot", "/x.py", 2)], ThreadState::Python);
        let cold = sample(1, &[("cold", "/x.py", 2)], ThreadState::Python);
        live.add_tick();
        live.add_sample(&hot);
        live.roll(Duration::from_secs(1));
        live.add_tick();
        live.add_sample(&cold);
        live.roll(Duration::from_secs(2));
        let req = HashMap::new();
        let (last, ..) = live.window(false, Duration::from_secs(2));
        let t = table(View::Functions, &input(last, &req, &[]));
        assert_eq!(names(&t, 8), ["cold"]);
        let (all, ..) = live.window(true, Duration::from_secs(2));
        let mut t = table(View::Functions, &input(all, &req, &[]));
        t.sort(8, false);
        assert_eq!(names(&t, 8), ["cold", "hot"]);
        live.reset(Duration::from_secs(2));
        let (all, ..) = live.window(true, Duration::from_secs(3));
        assert_eq!(all.total_samples(), 0);
    }

    #[test]
    fn processes_have_cpu_rate_and_errors() {
        let mut p = Profile::new();
        p.set_process(10, "gunicorn: master");
        p.set_process_role(10, "master");
        p.set_process(11, "gunicorn: worker");
        p.set_process_role(11, "worker");
        for _ in 0..50 {
            p.add_sample(&sample(11, &[("work", "/w.py", 2)], ThreadState::Python));
        }
        for _ in 0..100 {
            p.add_sample(&sample(10, &[("sleep", "/m.py", 2)], ThreadState::Idle));
        }
        let status = [
            ProcessStatus {
                pid: 10,
                errors: 0,
                alive: true,
                rss: Some(64 << 20),
            },
            ProcessStatus {
                pid: 11,
                errors: 3,
                alive: false,
                rss: None,
            },
        ];
        let req = HashMap::new();
        let mut t = table(View::Processes, &input(&p, &req, &status));
        t.sort(View::Processes.default_sort(), false);
        assert_eq!(names(&t, 0), ["11", "10"]);
        assert_eq!(t.rows[0][1].text, "exited");
        assert_eq!(t.rows[0][2].text, "50.0");
        assert_eq!(t.rows[0][3].text, "-");
        assert_eq!(t.rows[0][6].text, "3");
        assert_eq!(t.rows[1][1].text, "master");
        assert_eq!(t.rows[1][3].text, "64.0 MiB");
        assert_eq!(t.rows[1][4].text, "100");
    }

    #[test]
    fn exited_processes_without_samples_are_left_out() {
        let mut p = Profile::new();
        p.set_process(10, "gunicorn: master");
        p.set_process(12, "gunicorn: old worker");
        p.add_sample(&sample(10, &[("sleep", "/m.py", 2)], ThreadState::Idle));
        let status = [
            ProcessStatus {
                pid: 10,
                errors: 0,
                alive: true,
                rss: None,
            },
            ProcessStatus {
                pid: 12,
                errors: 0,
                alive: false,
                rss: None,
            },
            ProcessStatus {
                pid: 13,
                errors: 0,
                alive: true,
                rss: None,
            },
        ];
        let req = HashMap::new();
        let t = table(View::Processes, &input(&p, &req, &status));
        assert_eq!(names(&t, 0), ["10", "13"]);
    }

    #[test]
    fn narrow_terminals_drop_the_least_important_columns() {
        let cols = View::Functions.columns();
        let all: u16 = cols.iter().map(|c| c.width + 1).sum();
        assert_eq!(fit_columns(cols, all).len(), cols.len());
        let narrow = fit_columns(cols, 40);
        assert!(narrow.contains(&0) && narrow.contains(&8), "{narrow:?}");
        assert!(!narrow.contains(&7), "{narrow:?}");
        let width: u16 =
            narrow.iter().map(|&i| cols[i].width).sum::<u16>() + narrow.len() as u16 - 1;
        assert!(width <= 40);
        assert_eq!(fit_columns(cols, 3).len(), 1);
        assert_eq!(fit_columns(cols, 0).len(), 1);
    }
}
