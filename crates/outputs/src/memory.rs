//! Memory in attach mode as text: peak RSS per process with the stack at
//! the peak, growth, pymalloc heap in use, and growth per endpoint and per
//! function, labelled as the estimates they are. Shared by the end-of-run
//! summary and the HTML report.

use pyrometer_profile::{Profile, StackId};

use crate::{frame_label, sanitize_text, StackOptions};

/// `12.3 MiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    if v < 1024.0 {
        return format!("{bytes} B");
    }
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// One process's memory, as the summary and the report show it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessMemoryRow {
    /// Process id.
    pub pid: i32,
    /// `master`, `worker` or empty.
    pub role: String,
    /// Peak RSS and when (seconds since the start).
    pub peak: Option<(f64, u64)>,
    /// The innermost frame of the stack sampled most just before the peak.
    pub peak_stack: Option<String>,
    /// Sum of RSS increases between readings.
    pub growth: u64,
    /// Last RSS minus first RSS (what stayed).
    pub net: i64,
    /// The last pymalloc heap reading, or why there is none.
    pub heap: Result<u64, String>,
}

impl ProcessMemoryRow {
    /// ` (master)`, ` (worker)` or nothing: what follows the pid.
    pub fn role_suffix(&self) -> String {
        if self.role.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.role)
        }
    }

    /// `peak RSS 57 MiB at 10.60 s`, or that RSS could not be read.
    pub fn peak_text(&self) -> String {
        match self.peak {
            Some((t, b)) => format!("peak RSS {} at {t:.2} s", format_bytes(b)),
            None => "RSS unreadable".to_string(),
        }
    }
}

/// A row of a growth table: what, bytes, share of the attributed growth.
#[derive(Debug, Clone, PartialEq)]
pub struct GrowthRow {
    /// Endpoint or function.
    pub name: String,
    /// Bytes attributed (estimate).
    pub bytes: u64,
    /// Share of all attributed growth, 0–1.
    pub share: f64,
}

fn leaf_label(profile: &Profile, stack: Option<StackId>, opts: &StackOptions) -> String {
    match stack.map(|s| profile.stack(s).frame) {
        Some(f) => sanitize_text(&frame_label(profile, profile.frame(f), opts)),
        None => "(no Python frames)".to_string(),
    }
}

/// The innermost `depth` frames, innermost first, joined by ` ← `.
fn stack_label(
    profile: &Profile,
    stack: Option<StackId>,
    opts: &StackOptions,
    depth: usize,
) -> String {
    let frames = profile.stack_frames(stack);
    if frames.is_empty() {
        return "(no Python frames)".to_string();
    }
    let mut parts: Vec<String> = frames
        .iter()
        .rev()
        .take(depth)
        .map(|f| sanitize_text(&frame_label(profile, profile.frame(*f), opts)))
        .collect();
    if frames.len() > depth {
        parts.push("…".into());
    }
    parts.join(" ← ")
}

/// `+1.0 MiB` / `-512 B`.
pub fn format_signed_bytes(v: i64) -> String {
    let sign = if v < 0 { '-' } else { '+' };
    format!("{sign}{}", format_bytes(v.unsigned_abs()))
}

/// Per-process rows, by pid.
pub fn process_rows(profile: &Profile, opts: &StackOptions) -> Vec<ProcessMemoryRow> {
    profile
        .memory()
        .processes()
        .map(|(pid, p)| ProcessMemoryRow {
            pid,
            role: profile.process_role(pid).unwrap_or("").to_string(),
            peak: p.peak_rss.map(|(t, b)| (t.as_secs_f64(), b)),
            peak_stack: p
                .peak_stacks
                .first()
                .map(|(s, _, _)| stack_label(profile, *s, opts, 4)),
            growth: p.growth,
            net: match (p.first_rss, p.last_rss) {
                (Some(a), Some(b)) => {
                    i64::try_from(b).unwrap_or(i64::MAX) - i64::try_from(a).unwrap_or(i64::MAX)
                }
                _ => 0,
            },
            heap: match (&p.heap_unavailable, p.last_heap) {
                (_, Some(h)) => Ok(h),
                (Some(why), None) => Err(why.clone()),
                (None, None) => Err("no reading succeeded".into()),
            },
        })
        .collect()
}

fn rows(list: Vec<(String, u64)>, total: u64) -> Vec<GrowthRow> {
    let mut merged: std::collections::BTreeMap<String, u64> = Default::default();
    for (name, b) in list {
        *merged.entry(name).or_insert(0) += b;
    }
    let mut v: Vec<GrowthRow> = merged
        .into_iter()
        .map(|(name, bytes)| GrowthRow {
            name,
            bytes,
            share: bytes as f64 / total.max(1) as f64,
        })
        .collect();
    v.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.name.cmp(&b.name)));
    v
}

/// Estimated growth per endpoint (`(no request)` for the rest).
pub fn growth_by_endpoint(profile: &Profile) -> Vec<GrowthRow> {
    let m = profile.memory();
    let list = m
        .growth_by_endpoint()
        .into_iter()
        .map(|(e, b)| {
            let name = e
                .map(|e| sanitize_text(profile.str(e)))
                .unwrap_or_else(|| "(no request)".into());
            (name, b)
        })
        .collect();
    rows(list, m.attributed_growth())
}

/// Estimated growth per function (the innermost frame of the stacks
/// sampled while RSS grew).
pub fn growth_by_function(profile: &Profile, opts: &StackOptions) -> Vec<GrowthRow> {
    let m = profile.memory();
    let opts = StackOptions {
        no_line_numbers: true,
        ..opts.clone()
    };
    let list = m
        .growth_by_stack()
        .into_iter()
        .map(|((_, s, _), b)| (leaf_label(profile, s, &opts), b))
        .collect();
    rows(list, m.attributed_growth())
}

/// The summary's memory lines (empty when memory was not read).
pub fn summary_lines(profile: &Profile, opts: &StackOptions) -> Vec<String> {
    let m = profile.memory();
    if m.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let every = m
        .interval
        .map(|d| format!(" every {} ms", d.as_millis()))
        .unwrap_or_default();
    out.push(format!(
        "memory (RSS and pymalloc heap read from outside{every}):"
    ));
    for r in process_rows(profile, opts) {
        let (role, peak) = (r.role_suffix(), r.peak_text());
        let heap = match &r.heap {
            Ok(h) => format!("pymalloc heap in use {}", format_bytes(*h)),
            Err(why) => format!("pymalloc heap unavailable ({why})"),
        };
        out.push(format!(
            "  pid {}{role}: {peak}, grew {} (net {}), {heap}",
            r.pid,
            format_bytes(r.growth),
            format_signed_bytes(r.net)
        ));
        if let Some(s) = r.peak_stack {
            out.push(format!("    running at the peak: {s}"));
        }
    }
    let attributed = m.attributed_growth();
    if attributed > 0 {
        let endpoints = growth_by_endpoint(profile);
        if endpoints.iter().any(|r| r.name != "(no request)") {
            out.push("memory growth by endpoint (estimate: RSS growth split by the samples taken while it grew):".into());
            for r in endpoints.iter().take(10) {
                out.push(format!(
                    "  {:<40} {:>10} {:>5.1} %",
                    r.name,
                    format_bytes(r.bytes),
                    100.0 * r.share
                ));
            }
        }
        out.push("memory growth by function (estimate: RSS growth split by the samples taken while it grew):".into());
        for r in growth_by_function(profile, opts).iter().take(10) {
            out.push(format!(
                "  {:<60} {:>10} {:>5.1} %",
                r.name,
                format_bytes(r.bytes),
                100.0 * r.share
            ));
        }
    }
    if m.unattributed_growth > 0 {
        out.push(format!(
            "  {} of growth happened with no thread on a CPU and is not attributed",
            format_bytes(m.unattributed_growth)
        ));
    }
    out
}

/// Text for HTML (the memory section is drawn here, not by the script).
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

const CHART_W: f64 = 640.0;
const CHART_H: f64 = 140.0;
const PAD: f64 = 4.0;

/// One process's chart: RSS (and the pymalloc heap when known) over time.
fn chart(points: &[pyrometer_profile::heap::MemoryPoint], duration: f64) -> String {
    let top = points
        .iter()
        .flat_map(|p| [p.rss, p.heap])
        .flatten()
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let span = duration
        .max(points.last().map_or(0.0, |p| p.time.as_secs_f64()))
        .max(1e-3);
    let line = |pick: &dyn Fn(&pyrometer_profile::heap::MemoryPoint) -> Option<u64>| {
        points
            .iter()
            .filter_map(|p| {
                let v = pick(p)? as f64;
                let x = PAD + (CHART_W - 2.0 * PAD) * p.time.as_secs_f64() / span;
                let y = CHART_H - PAD - (CHART_H - 2.0 * PAD) * v / top;
                Some(format!("{x:.1},{y:.1}"))
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let rss = line(&|p| p.rss);
    let heap = line(&|p| p.heap);
    let mut svg = format!(
        "<svg class=\"memory-chart\" width=\"{CHART_W}\" height=\"{CHART_H}\" viewBox=\"0 0 {CHART_W} {CHART_H}\" role=\"img\">\
         <rect x=\"0\" y=\"0\" width=\"{CHART_W}\" height=\"{CHART_H}\" fill=\"none\" stroke=\"#ccc\"/>\
         <polyline class=\"rss\" points=\"{rss}\" fill=\"none\" stroke=\"#c0392b\" stroke-width=\"1.5\"/>"
    );
    if !heap.is_empty() {
        svg.push_str(&format!(
            "<polyline class=\"heap\" points=\"{heap}\" fill=\"none\" stroke=\"#2471a3\" stroke-width=\"1.5\"/>"
        ));
    }
    svg.push_str(&format!(
        "<text x=\"{x}\" y=\"14\" font-size=\"11\" text-anchor=\"end\">{}</text>\
         <text x=\"{x}\" y=\"{y}\" font-size=\"11\" text-anchor=\"end\">{span:.1} s</text></svg>",
        esc(&format_bytes(top as u64)),
        x = CHART_W - 6.0,
        y = CHART_H - 8.0,
    ));
    svg
}

fn growth_table(title: &str, rows: &[GrowthRow]) -> String {
    let mut h =
        format!(
        "<h3>{}</h3><table class=\"data\"><thead><tr><th class=\"nosort\">{}</th><th class=\"nosort num\">grown</th><th class=\"nosort num\">share</th></tr></thead><tbody>",
        esc(title),
        if title.contains("endpoint") { "endpoint" } else { "function" }
    );
    for r in rows.iter().take(20) {
        h.push_str(&format!(
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1} %</td></tr>",
            esc(&r.name),
            esc(&format_bytes(r.bytes)),
            100.0 * r.share
        ));
    }
    if rows.is_empty() {
        h.push_str("<tr><td colspan=\"3\">no growth was seen while threads ran</td></tr>");
    }
    h.push_str("</tbody></table>");
    h
}

/// The HTML report's memory section (empty when memory was not read):
/// a chart per process, the peaks, and growth by endpoint and by function,
/// labelled as estimates.
pub fn html_section(profile: &Profile, opts: &StackOptions) -> String {
    let m = profile.memory();
    if m.is_empty() {
        return String::new();
    }
    let duration = profile.meta.duration.as_secs_f64();
    let mut h = String::from(
        "<section id=\"memory\"><h2>Memory</h2><p>RSS (red) and the pymalloc heap in use \
         (blue: arenas × arena size, where the interpreter lets it be read), read from \
         outside the process. Growth is attributed to the code sampled on a CPU while RSS \
         grew, in proportion to its samples: an <strong>estimate</strong>.</p>",
    );
    let rows = process_rows(profile, opts);
    for r in &rows {
        let Some(p) = m.process_memory(r.pid) else {
            continue;
        };
        let (role, peak) = (r.role_suffix(), r.peak_text());
        let heap = match &r.heap {
            Ok(b) => format!("pymalloc heap in use {}", format_bytes(*b)),
            Err(why) => format!("pymalloc heap unavailable: {why}"),
        };
        h.push_str(&format!(
            "<h3>pid {}{}</h3><p>{}, grew {} (net {}), {}</p>",
            r.pid,
            esc(&role),
            esc(&peak),
            esc(&format_bytes(r.growth)),
            esc(&format_signed_bytes(r.net)),
            esc(&heap)
        ));
        if let Some(s) = &r.peak_stack {
            h.push_str(&format!(
                "<p>running at the peak: <code>{}</code></p>",
                esc(s)
            ));
        }
        h.push_str(&chart(p.points(), duration));
    }
    h.push_str(&growth_table(
        "memory growth by endpoint (estimate)",
        &growth_by_endpoint(profile),
    ));
    h.push_str(&growth_table(
        "memory growth by function (estimate)",
        &growth_by_function(profile, opts),
    ));
    if m.unattributed_growth > 0 {
        h.push_str(&format!(
            "<p>{} grew while no thread was on a CPU and is not attributed.</p>",
            esc(&format_bytes(m.unattributed_growth))
        ));
    }
    h.push_str("</section>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_as_people_write_them() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(3 << 30), "3.0 GiB");
        assert_eq!(format_signed_bytes(-512), "-512 B");
        assert_eq!(format_signed_bytes(1 << 20), "+1.0 MiB");
    }

    #[test]
    fn the_html_section_escapes_names_and_draws_the_series() {
        use pyrometer_profile::FrameInfo;
        use std::time::Duration;
        let mut p = Profile::new();
        let name = p.intern("<script>alert(1)</script>");
        let file = p.intern("/x.py");
        let stack = p.intern_stack(&[FrameInfo {
            name,
            filename: file,
            line: 3,
            first_line: 1,
        }]);
        let m = p.memory_mut();
        m.add_reading(1, Duration::ZERO, Some(10 << 20), Some(1 << 20), None);
        m.observe(1, stack, None, true);
        m.add_reading(1, Duration::from_millis(100), Some(20 << 20), None, None);
        let h = html_section(&p, &StackOptions::new());
        assert!(!h.contains("<script>"), "{h}");
        assert!(h.contains("&lt;script&gt;"));
        assert!(h.contains("class=\"rss\" points=\"4.0,"), "{h}");
        assert!(h.contains("memory growth by endpoint (estimate)"));
        assert!(html_section(&Profile::new(), &StackOptions::new()).is_empty());
    }

    #[test]
    fn pprof_carries_the_memory_so_report_shows_the_same() {
        use pyrometer_profile::{FrameInfo, ThreadInfo};
        use pyrometer_sampler::ThreadState;
        use std::time::Duration;
        let mut p = Profile::new();
        let name = p.intern("grow");
        let file = p.intern("/x.py");
        let frames = [FrameInfo {
            name,
            filename: file,
            line: 3,
            first_line: 1,
        }];
        let thread = p.thread_key(ThreadInfo {
            pid: 1,
            thread_id: 9,
            native_id: Some(9),
            name: None,
        });
        let stack = p.add_stack(&frames, thread, ThreadState::Python, 5);
        let ep = p.intern("GET app.leak");
        p.set_process(1, "python x.py");
        p.set_process(2, "python y.py");
        let m = p.memory_mut();
        m.interval = Some(Duration::from_millis(100));
        m.add_reading(1, Duration::ZERO, Some(10 << 20), Some(1 << 20), None);
        m.observe(1, stack, Some(ep), true);
        m.add_reading(
            1,
            Duration::from_millis(100),
            Some(30 << 20),
            Some(2 << 20),
            None,
        );
        m.add_reading(2, Duration::ZERO, Some(5 << 20), None, Some("stripped"));
        m.add_reading(2, Duration::from_millis(100), Some(6 << 20), None, None);
        let mut bytes = Vec::new();
        crate::write_pprof(&p, &mut bytes).unwrap();
        let back = crate::read_pprof(&bytes).unwrap();
        let opts = StackOptions::new();
        let want = summary_lines(&p, &opts);
        assert!(want.iter().any(|l| l.contains("GET app.leak")), "{want:#?}");
        assert_eq!(summary_lines(&back, &opts), want);
        assert_eq!(html_section(&back, &opts), html_section(&p, &opts));
        // Memory samples are zero-valued: totals are unchanged.
        assert_eq!(back.total_samples(), 5);
    }
}
