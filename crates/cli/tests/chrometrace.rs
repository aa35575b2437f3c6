//! `-f chrometrace` on every interpreter of the matrix, against
//! tests/targets/wsgi_app.py (a wsgiref service driving itself: /slow
//! burns 50 ms of CPU in `slow_view`, /fast returns at once):
//!
//! * `record -f pprof` then `report -f chrometrace` (the timeline carried
//!   by the pprof), and `record -f chrometrace` directly: each trace
//!   parses, every event has its fields, slices nest on every track,
//!   threads and processes are named;
//! * the outermost frame slices of each thread last about as long as its
//!   samples × the sampling interval (counts from the pprof);
//! * requests are slices of category `request` named by endpoint, with the
//!   view's frame nested inside, and slow requests last about 50 ms.

mod common;

use std::collections::BTreeMap;

use common::*;
use pyrometer_sampler::ThreadState;
use pyrometer_testsupport::chrometrace::{validate_trace, Trace};

const SLOW: &str = "GET wsgi_app.slow_view";
const RATE: f64 = 100.0;

fn load_trace(path: &std::path::Path) -> Result<Trace, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    validate_trace(&text).map_err(|e| format!("{}: {}", path.display(), e.join("\n  ")))
}

/// Seconds covered by a track's outermost frame slices (those at the root,
/// or right inside a request slice, which may span idle gaps).
fn outermost_frame_seconds(trace: &Trace, track: (i64, i64)) -> f64 {
    let Some(slices) = trace.tracks.get(&track) else {
        return 0.0;
    };
    let mut in_request = false;
    let mut total = 0.0;
    for s in slices {
        if s.depth == 0 {
            in_request = s.cat == "request";
        }
        let outermost = s.cat == "python" && (s.depth == 0 || (s.depth == 1 && in_request));
        if outermost {
            total += s.dur;
        }
    }
    total / 1e6
}

#[test]
fn chrome_trace_of_a_wsgi_service() {
    let interps = require_all();
    let script = target("wsgi_app.py");
    let rows = par_map(&interps, 2, |interp| {
        let mut c = Checks::new(interp);
        let _cpu = cpu_lock();
        let scratch = Scratch::new(&format!("chrometrace-{}", interp.label));
        let pb = scratch.file("run.pb.gz");
        let trace_file = scratch.file("run.trace.json");
        let python = interp.path.to_string_lossy().into_owned();
        let script = script.to_string_lossy().into_owned();
        let args = [
            "record",
            "-r",
            "100",
            "-f",
            "pprof",
            "-o",
            pb.to_str().unwrap(),
            "--",
            &python,
            &script,
            "3",
        ];
        let out = pyrometer(&args);
        if !c.check("record", out.status.success(), || {
            format!("{} failed: {}", show(&args), stderr_of(&out))
        }) {
            return c;
        }
        let args = [
            "report",
            pb.to_str().unwrap(),
            "-f",
            "chrometrace",
            "-o",
            trace_file.to_str().unwrap(),
        ];
        let out = pyrometer(&args);
        if !c.check("report", out.status.success(), || {
            format!("{} failed: {}", show(&args), stderr_of(&out))
        }) {
            return c;
        }
        let trace = match load_trace(&trace_file) {
            Ok(t) => t,
            Err(e) => {
                c.fail("valid", e);
                return c;
            }
        };
        c.check("valid", !trace.tracks.is_empty(), || "no slices".into());
        c.eq(
            "valid",
            "timeline cut",
            trace.other["timeline_cut"].as_bool(),
            Some(false),
        );

        // Durations: non-idle samples per thread × interval.
        let profile = match std::fs::read(&pb)
            .map_err(|e| e.to_string())
            .and_then(|b| pyrometer_outputs::read_pprof(&b).map_err(|e| e.to_string()))
        {
            Ok(p) => p,
            Err(e) => {
                c.fail("durations", format!("cannot read the pprof: {e}"));
                return c;
            }
        };
        let mut per_thread: BTreeMap<(i64, i64), u64> = BTreeMap::new();
        for (key, count) in profile.counts() {
            if key.state == ThreadState::Idle || key.stack.is_none() {
                continue;
            }
            let t = profile.thread(key.thread);
            let tid = t.native_id.map(i64::from).unwrap_or(-1);
            *per_thread.entry((i64::from(t.pid), tid)).or_default() += count;
        }
        for (track, samples) in &per_thread {
            let want = *samples as f64 / RATE;
            let got = outermost_frame_seconds(&trace, *track);
            // Late ticks stretch a slice up to the gap threshold; a loaded
            // machine has a few.
            c.check("durations", got >= 0.95 * want && got <= 1.6 * want, || {
                format!(
                    "thread {track:?}: slices last {got:.3} s for {samples} samples ({want:.3} s)"
                )
            });
            c.check("names", trace.thread_names.contains_key(track), || {
                format!("thread {track:?} has no thread_name")
            });
        }
        c.check(
            "names",
            trace.thread_names.values().any(|n| n == "client"),
            || format!("no `client` thread: {:?}", trace.thread_names),
        );

        // Requests: slices around the view's frames, about 50 ms each.
        let mut slow = Vec::new();
        for slices in trace.tracks.values() {
            for (i, s) in slices.iter().enumerate() {
                if s.cat != "request" {
                    continue;
                }
                let end = s.ts + s.dur;
                let inside: Vec<_> = slices[i + 1..]
                    .iter()
                    .take_while(|x| x.ts < end)
                    .filter(|x| x.depth > s.depth)
                    .collect();
                if s.name == SLOW {
                    let has_view = inside.iter().any(|x| x.name.starts_with("slow_view ("));
                    c.check("requests", has_view, || {
                        format!("request slice at {} µs has no slow_view frame inside", s.ts)
                    });
                    slow.push(s.dur / 1e3);
                }
            }
        }
        slow.sort_by(f64::total_cmp);
        if c.check("requests", slow.len() >= 5, || {
            format!("{} slow request slices", slow.len())
        }) {
            let median = slow[slow.len() / 2];
            c.check("requests", (35.0..=80.0).contains(&median), || {
                format!("median slow request slice {median:.1} ms, expected about 50")
            });
            c.note(format!(
                "{} slow requests, median slice {median:.1} ms",
                slow.len()
            ));
        }

        // Written directly by record.
        let direct = scratch.file("direct.trace.json");
        let args = [
            "record",
            "-r",
            "100",
            "-f",
            "chrometrace",
            "-o",
            direct.to_str().unwrap(),
            "--",
            &python,
            &script,
            "1.5",
        ];
        let out = pyrometer(&args);
        if c.check("record", out.status.success(), || {
            format!("{} failed: {}", show(&args), stderr_of(&out))
        }) {
            match load_trace(&direct) {
                Ok(t) => {
                    let requests = t
                        .tracks
                        .values()
                        .flatten()
                        .filter(|s| s.cat == "request")
                        .count();
                    c.check("valid", requests > 0, || {
                        "record -f chrometrace: no request slices".into()
                    });
                }
                Err(e) => c.fail("valid", e),
            }
        }
        c
    });
    finish(
        "chrometrace",
        &[
            "record",
            "report",
            "valid",
            "durations",
            "names",
            "requests",
        ],
        &rows,
    );
}

#[test]
fn a_pprof_without_timeline_gives_a_warning_and_an_empty_valid_trace() {
    use pyrometer_profile::{FrameInfo, Profile, ThreadInfo};
    let scratch = Scratch::new("chrometrace-no-timeline");
    // Aggregated samples only, as another tool or --timeline-samples 0 writes.
    let mut p = Profile::new();
    p.meta.rate = 100.0;
    let thread = p.thread_key(ThreadInfo {
        pid: 5,
        thread_id: 9,
        native_id: Some(9),
        name: Some("MainThread".into()),
    });
    let frame = FrameInfo {
        name: p.intern("main"),
        filename: p.intern("/app.py"),
        line: 3,
        first_line: 1,
    };
    p.add_stack(&[frame], thread, ThreadState::Python, 40);
    let pb = scratch.file("old.pb.gz");
    let mut bytes = Vec::new();
    pyrometer_outputs::write_pprof(&p, &mut bytes).unwrap();
    std::fs::write(&pb, bytes).unwrap();
    let trace_file = scratch.file("old.trace.json");
    let args = [
        "report",
        pb.to_str().unwrap(),
        "-f",
        "chrometrace",
        "-o",
        trace_file.to_str().unwrap(),
    ];
    let out = pyrometer(&args);
    let stderr = stderr_of(&out);
    assert!(out.status.success(), "{}: {stderr}", show(&args));
    assert!(stderr.contains("holds no timeline"), "{stderr}");
    let trace = load_trace(&trace_file).unwrap();
    assert!(trace.tracks.is_empty());
    assert_eq!(trace.other["timeline_samples"], 0);
}
