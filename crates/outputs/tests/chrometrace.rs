//! Chrome trace from a profile's timeline: slices merge consecutive samples
//! that share a stack prefix, requests are slices around their frames,
//! gaps (idle samples left out, a thread not sampled) end the slices one
//! period after the last sample, every track is named, slices nest, a cut
//! timeline says so, and a pprof round trip renders the same trace.

use std::sync::Arc;
use std::time::Duration;

use pyrometer_outputs::{read_pprof, write_chrometrace, write_pprof, StackOptions};
use pyrometer_profile::Profile;
use pyrometer_sampler::{Sample, SampledFrame, SampledRequest, ThreadState};
use pyrometer_testsupport::chrometrace::{validate_trace, Trace};

const MS: u64 = 1000; // microseconds

fn sample(pid: i32, tid: i32, ms: u64, stack: &[(&str, i32)], request: Option<u64>) -> Sample {
    Sample {
        time: Duration::from_millis(ms),
        pid,
        thread_id: tid as u64 * 1000,
        native_id: Some(tid),
        thread_name: Some(Arc::from(if tid == 11 { "MainThread" } else { "worker" })),
        state: ThreadState::Python,
        holds_gil: true,
        // Innermost first, as the sampler gives them.
        frames: stack
            .iter()
            .rev()
            .map(|(n, l)| SampledFrame {
                name: Arc::from(*n),
                filename: Arc::from("/srv/app.py"),
                line: *l,
                first_line: 1,
                code_key: 0,
            })
            .collect(),
        truncated: false,
        walked: true,
        request: request.map(|key| SampledRequest {
            key,
            method: Arc::from("GET"),
            path: Arc::from("/view/1"),
            endpoint: Arc::from("GET app.view"),
        }),
        category: None,
    }
}

fn profile() -> Profile {
    let mut p = Profile::new();
    p.meta.rate = 100.0;
    p.meta.start_time = Some(std::time::UNIX_EPOCH + Duration::from_secs(1_790_000_000));
    p.set_process(1, "python3 app.py");
    p.set_process(2, "python3 worker.py");
    let main_a = [("main", 1), ("a", 2)];
    for s in [
        sample(1, 11, 0, &main_a, Some(7)),
        sample(2, 21, 0, &[("loop", 5)], None),
        sample(1, 11, 10, &[("main", 1), ("a", 2), ("b", 3)], Some(7)),
        sample(2, 21, 10, &[("loop", 5)], None),
        sample(1, 11, 20, &main_a, Some(7)),
        sample(1, 11, 30, &[("main", 1), ("c", 4)], None),
        {
            let mut idle = sample(1, 11, 40, &[("main", 1), ("c", 4)], None);
            idle.state = ThreadState::Idle;
            idle
        },
        sample(1, 11, 50, &[("main", 1), ("c", 4)], None),
        // 50 ms later: a gap.
        sample(1, 11, 100, &[("main", 1), ("c", 9)], None),
        // A request that goes on across an idle sample stays one slice.
        sample(1, 11, 200, &main_a, Some(8)),
        {
            let mut idle = sample(1, 11, 210, &main_a, Some(8));
            idle.state = ThreadState::Idle;
            idle
        },
        sample(1, 11, 220, &main_a, Some(8)),
    ] {
        p.add_sample(&s);
    }
    p.finish();
    p
}

fn render(p: &Profile, opts: &StackOptions) -> String {
    let mut out = Vec::new();
    write_chrometrace(p, opts, "test", &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn trace(text: &str) -> Trace {
    validate_trace(text).unwrap_or_else(|e| panic!("invalid trace: {e:#?}\n{text}"))
}

fn slices(t: &Trace, track: (i64, i64)) -> Vec<(String, u64, u64, usize)> {
    t.tracks[&track]
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                s.ts.round() as u64,
                s.dur.round() as u64,
                s.depth,
            )
        })
        .collect()
}

fn owned(v: &[(&str, u64, u64, usize)]) -> Vec<(String, u64, u64, usize)> {
    v.iter()
        .map(|(n, a, b, d)| (n.to_string(), *a, *b, *d))
        .collect()
}

#[test]
fn slices_merge_prefixes_and_nest_requests() {
    let p = profile();
    let t = trace(&render(&p, &StackOptions::new()));
    assert_eq!(
        slices(&t, (1, 11)),
        owned(&[
            ("GET app.view", 0, 30 * MS, 0),
            ("main (app.py:1)", 0, 30 * MS, 1),
            ("a (app.py:2)", 0, 30 * MS, 2),
            ("b (app.py:3)", 10 * MS, 10 * MS, 3),
            ("main (app.py:1)", 30 * MS, 10 * MS, 0),
            ("c (app.py:4)", 30 * MS, 10 * MS, 1),
            ("main (app.py:1)", 50 * MS, 10 * MS, 0),
            ("c (app.py:4)", 50 * MS, 10 * MS, 1),
            ("main (app.py:1)", 100 * MS, 10 * MS, 0),
            ("c (app.py:9)", 100 * MS, 10 * MS, 1),
            ("GET app.view", 200 * MS, 30 * MS, 0),
            ("main (app.py:1)", 200 * MS, 10 * MS, 1),
            ("a (app.py:2)", 200 * MS, 10 * MS, 2),
            ("main (app.py:1)", 220 * MS, 10 * MS, 1),
            ("a (app.py:2)", 220 * MS, 10 * MS, 2),
        ])
    );
    let request = &t.tracks[&(1, 11)][0];
    assert_eq!(request.cat, "request");
    assert_eq!(
        slices(&t, (2, 21)),
        owned(&[("loop (app.py:5)", 0, 20 * MS, 0)])
    );
    assert_eq!(t.thread_names[&(1, 11)], "MainThread");
    assert_eq!(t.thread_names[&(2, 21)], "worker");
    assert!(t.process_names[&1].contains("python3 app.py"));
    assert!(t.process_names[&2].contains("python3 worker.py"));
    // 8 non-idle samples of thread 11 at 10 ms each, plus the idle 10 ms
    // the second request spans; 2 samples of thread 21.
    assert!((t.root_seconds((1, 11)) - 0.090).abs() < 1e-9);
    assert!((t.root_seconds((2, 21)) - 0.020).abs() < 1e-9);
    assert_eq!(t.other["timeline_cut"], false);
    assert_eq!(t.other["timeline_samples"], 12);
}

#[test]
fn idle_samples_shown_with_idle_and_lines_merged_without_line_numbers() {
    let p = profile();
    let mut opts = StackOptions::new();
    opts.include_idle = true;
    opts.no_line_numbers = true;
    let t = trace(&render(&p, &opts));
    let s = slices(&t, (1, 11));
    // With idle samples kept and lines ignored, 30..60 ms is one `c` slice.
    assert!(
        s.contains(&("c (app.py)".to_string(), 30 * MS, 30 * MS, 1)),
        "{s:?}"
    );
    assert!(
        s.contains(&("c (app.py)".to_string(), 100 * MS, 10 * MS, 1)),
        "{s:?}"
    );
    assert!(
        s.contains(&("a (app.py)".to_string(), 200 * MS, 30 * MS, 2)),
        "{s:?}"
    );
}

#[test]
fn a_cut_timeline_says_so() {
    let mut p = Profile::new();
    p.meta.rate = 100.0;
    p.timeline_mut().set_limit(3);
    for i in 0..10 {
        p.add_sample(&sample(1, 11, i * 10, &[("main", 1)], None));
    }
    assert_eq!(p.total_samples(), 10, "aggregation keeps every sample");
    let t = trace(&render(&p, &StackOptions::new()));
    assert_eq!(t.other["timeline_cut"], true);
    assert_eq!(t.other["timeline_samples"], 3);
    assert_eq!(t.other["timeline_dropped"], 7);
    assert!(t.other["note"]
        .as_str()
        .unwrap()
        .contains("first 3 samples"));
    assert_eq!(
        slices(&t, (1, 11)),
        owned(&[("main (app.py:1)", 0, 30 * MS, 0)])
    );
}

#[test]
fn pprof_round_trip_gives_the_same_trace() {
    let p = profile();
    let mut bytes = Vec::new();
    write_pprof(&p, &mut bytes).unwrap();
    let q = read_pprof(&bytes).unwrap();
    assert_eq!(q.total_samples(), p.total_samples());
    assert_eq!(q.timeline().entries().len(), p.timeline().entries().len());
    for opts in [StackOptions::new(), {
        let mut o = StackOptions::new();
        o.include_idle = true;
        o
    }] {
        let (a, b) = (render(&p, &opts), render(&q, &opts));
        assert_eq!(a, b);
    }
    // A cut timeline stays cut.
    let mut c = profile();
    c.timeline_mut().set_limit(4);
    let mut bytes = Vec::new();
    write_pprof(&c, &mut bytes).unwrap();
    let q = read_pprof(&bytes).unwrap();
    assert_eq!(q.timeline().entries().len(), 4);
    assert_eq!(q.timeline().dropped, 8);
}
