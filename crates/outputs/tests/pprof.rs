//! pprof round trip: Profile → gzipped pprof → Profile renders the same
//! folded stacks, flame graph, speedscope document and HTML report
//! (endpoint request statistics and timeline included), under every stack
//! option; and the pprof itself has the layout pyrometer promises.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use pyrometer_outputs::{
    decode_pprof, folded_lines, read_pprof, write_flamegraph, write_folded, write_html,
    write_pprof, write_speedscope, StackOptions,
};
use pyrometer_profile::Profile;
use pyrometer_sampler::{Category, Sample, SampledFrame, SampledRequest, ThreadState};

/// A tiny deterministic generator (no dependency needed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

const FUNCS: [(&str, &str, i32); 7] = [
    ("main", "/srv/app/main.py", 1),
    ("<module>", "/srv/app/main.py", 1),
    ("handle", "/srv/app/views.py", 20),
    (
        "Model.save",
        "/usr/lib/python3.11/site-packages/orm/model.py",
        300,
    ),
    ("<lambda>", "/srv/app/views.py", 44),
    ("wait", "/usr/lib/python3.11/threading.py", 320),
    ("semi;colon\nname", "/weird dir/ünï.py", 5),
];

fn frame(i: usize, line: i32) -> SampledFrame {
    let (name, file, first) = FUNCS[i];
    SampledFrame {
        name: Arc::from(name),
        filename: Arc::from(file),
        line,
        first_line: first,
        code_key: 0,
    }
}

/// Many samples over three threads of two processes, interleaved, with
/// every state, shared prefixes, empty stacks and thread names that
/// arrive late.
fn sample_profile(seed: u64) -> Profile {
    let mut rng = Lcg(seed);
    let mut p = Profile::new();
    p.set_process(100, "python3 app.py --workers 2");
    p.set_process(101, "python3 worker.py");
    p.set_process_role(100, "master");
    p.set_process_role(101, "worker");
    p.set_process(102, "never sampled");
    let threads: [(i32, u64, Option<i32>, Option<&str>); 4] = [
        (100, 0x7f00_0000_1000, Some(100), Some("MainThread")),
        (100, 0x7f00_0000_2000, Some(105), Some("cruncher")),
        (101, 0x7f00_0000_3000, None, None),
        (101, u64::MAX - 5, Some(2_000_000), Some("Thread-1 (x)")),
    ];
    let mut step = 0u64;
    for _ in 0..400 {
        let t = rng.next(threads.len() as u64) as usize;
        let (pid, tid, native, name) = threads[t];
        let depth = rng.next(6) as usize;
        let mut frames: Vec<SampledFrame> = (0..depth)
            .map(|_| {
                let f = rng.next(FUNCS.len() as u64) as usize;
                frame(f, FUNCS[f].2 + rng.next(4) as i32)
            })
            .collect();
        frames.reverse();
        let state = match rng.next(4) {
            0 => ThreadState::Python,
            1 => ThreadState::Native,
            2 => ThreadState::GilWait,
            _ => ThreadState::Idle,
        };
        let late_name = name.filter(|_| rng.next(3) != 0);
        let count = 1 + rng.next(3);
        // Some threads serve requests: endpoints, categories, latencies.
        let request = (depth > 1 && t < 2).then(|| {
            let view = ["GET app.index", "POST app.save", "GET /users/{id}"][rng.next(3) as usize];
            SampledRequest {
                key: rng.next(4),
                method: Arc::from(&view[..view.find(' ').unwrap()]),
                path: Arc::from("/x"),
                endpoint: Arc::from(view),
            }
        });
        let category = request
            .as_ref()
            .map(|_| [Category::App, Category::Database][rng.next(2) as usize]);
        for _ in 0..count {
            step += 1;
            p.add_sample(&Sample {
                time: Duration::from_millis(step * 7),
                pid,
                thread_id: tid,
                native_id: native,
                thread_name: late_name.map(Arc::from),
                state,
                holds_gil: state == ThreadState::Python,
                frames: frames.clone(),
                truncated: depth == 5,
                walked: true,
                request: request.clone(),
                category,
            });
        }
    }
    p.finish();
    p.meta.target = "python3 app.py --workers 2\n(and \\ a tab\t)".into();
    p.meta.python_version = "3.11.2".into();
    p.meta.rate = 97.0;
    p.meta.duration = Duration::from_nanos(4_123_456_789);
    p.meta.ticks = 400;
    p.meta.late_ticks = 3;
    p.meta.errors = 2;
    p.meta.start_time = Some(UNIX_EPOCH + Duration::from_nanos(1_790_000_000_123_456_789));
    p
}

fn pprof_bytes(p: &Profile) -> Vec<u8> {
    let mut out = Vec::new();
    write_pprof(p, &mut out).unwrap();
    out
}

fn all_options() -> Vec<StackOptions> {
    let mut v = Vec::new();
    for bits in 0..128u32 {
        let mut o = StackOptions::new();
        o.threads = bits & 1 != 0;
        o.include_idle = bits & 2 != 0;
        o.no_line_numbers = bits & 4 != 0;
        o.function_lines = bits & 8 != 0;
        o.full_filenames = bits & 16 != 0;
        o.processes = bits & 32 != 0;
        o.endpoints = bits & 64 != 0;
        v.push(o);
    }
    v
}

fn html(p: &Profile, o: &StackOptions) -> String {
    let mut out = Vec::new();
    write_html(p, o, "t", &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn speedscope(p: &Profile, o: &StackOptions) -> String {
    let mut out = Vec::new();
    write_speedscope(p, o, "t", &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// The flame graph without its random colours.
fn flamegraph_shape(p: &Profile, o: &StackOptions) -> String {
    let mut out = Vec::new();
    write_flamegraph(p, o, "t", &mut out).unwrap();
    let svg = String::from_utf8(out).unwrap();
    let mut shape = String::new();
    let mut rest = svg.as_str();
    while let Some(i) = rest.find("fill=\"rgb(") {
        shape.push_str(&rest[..i]);
        let after = &rest[i + "fill=\"rgb(".len()..];
        let j = after.find('"').unwrap();
        rest = &after[j + 1..];
    }
    shape.push_str(rest);
    shape
}

#[test]
fn round_trip_renders_the_same() {
    for seed in [1, 2, 3, 42, 1234] {
        let p = sample_profile(seed);
        let q = read_pprof(&pprof_bytes(&p)).unwrap();
        assert_eq!(q.total_samples(), p.total_samples());
        assert_eq!(q.by_state(), p.by_state());
        assert_eq!(q.top_functions(100), p.top_functions(100));
        assert_eq!(q.counts().len(), p.counts().len());
        assert_eq!(q.truncated_samples, p.truncated_samples);
        assert_eq!(
            q.processes().collect::<Vec<_>>(),
            p.processes().collect::<Vec<_>>()
        );
        for o in all_options() {
            assert_eq!(folded_lines(&q, &o), folded_lines(&p, &o), "{o:?}");
            assert_eq!(speedscope(&q, &o), speedscope(&p, &o), "seed {seed} {o:?}");
            assert_eq!(html(&q, &o), html(&p, &o), "seed {seed} {o:?}");
        }
        // The HTML report's endpoint table (requests, latencies,
        // categories, flame graphs) and timeline came through.
        let page = html(&p, &StackOptions::new());
        assert!(
            page.contains("\"p50_ms\":") && page.contains("POST app.save"),
            "no endpoints"
        );
        assert!(
            page.contains("\"timeline\":{\"processes\":[{"),
            "no timeline"
        );
        let mut o = StackOptions::new();
        assert_eq!(flamegraph_shape(&q, &o), flamegraph_shape(&p, &o));
        o.threads = true;
        o.include_idle = true;
        assert_eq!(flamegraph_shape(&q, &o), flamegraph_shape(&p, &o));
        // A second round trip changes nothing either.
        let r = read_pprof(&pprof_bytes(&q)).unwrap();
        assert_eq!(pprof_bytes_plain(&r), pprof_bytes_plain(&q));
    }
}

/// The uncompressed message (gzip output is not compared byte for byte).
fn pprof_bytes_plain(p: &Profile) -> Vec<u8> {
    use prost::Message;
    pyrometer_outputs::pprof_message(p).encode_to_vec()
}

#[test]
fn meta_round_trips() {
    let p = sample_profile(7);
    let q = read_pprof(&pprof_bytes(&p)).unwrap();
    assert_eq!(q.meta.target, p.meta.target);
    assert_eq!(q.meta.python_version, p.meta.python_version);
    assert_eq!(q.meta.rate, p.meta.rate);
    assert_eq!(q.meta.duration, p.meta.duration);
    assert_eq!(q.meta.ticks, p.meta.ticks);
    assert_eq!(q.meta.late_ticks, p.meta.late_ticks);
    assert_eq!(q.meta.errors, p.meta.errors);
    assert_eq!(q.meta.start_time, p.meta.start_time);
    let thread_labels = |p: &Profile| {
        let mut v: Vec<_> = p
            .counts()
            .iter()
            .map(|(k, _)| p.thread(k.thread).clone())
            .map(|t| (t.pid, t.thread_id, t.native_id, t.name))
            .collect();
        v.dedup();
        v
    };
    assert_eq!(thread_labels(&q), thread_labels(&p));
    for pid in [100, 101] {
        if p.counts()
            .iter()
            .any(|(k, _)| p.thread(k.thread).pid == pid)
        {
            assert_eq!(q.process_role(pid), p.process_role(pid), "role of {pid}");
        }
    }
}

#[test]
fn endpoint_and_category_labels_round_trip() {
    use pyrometer_profile::FrameInfo;
    let mut p = Profile::new();
    p.meta.rate = 100.0;
    let thread = p.thread_key(pyrometer_profile::ThreadInfo {
        pid: 1,
        thread_id: 7,
        native_id: Some(7),
        name: None,
    });
    let name = p.intern("view");
    let file = p.intern("/srv/app.py");
    let frame = FrameInfo {
        name,
        filename: file,
        line: 3,
        first_line: 1,
    };
    p.add_stack_labelled(
        &[frame],
        thread,
        ThreadState::Python,
        Some("GET app.view"),
        Some("app"),
        5,
    );
    let q = read_pprof(&pprof_bytes(&p)).unwrap();
    let labels: Vec<_> = q
        .counts()
        .iter()
        .map(|(k, c)| {
            (
                k.endpoint.map(|e| q.str(e).to_string()),
                k.category.map(|c| q.str(c).to_string()),
                *c,
            )
        })
        .collect();
    assert_eq!(
        labels,
        vec![(Some("GET app.view".to_string()), Some("app".to_string()), 5)]
    );
}

#[test]
fn layout() {
    let p = sample_profile(9);
    let bytes = pprof_bytes(&p);
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzipped");
    let m = decode_pprof(&bytes).unwrap();
    let s = |i: i64| m.string_table[i as usize].as_str();
    assert_eq!(s(0), "");
    let types: Vec<_> = m
        .sample_type
        .iter()
        .map(|t| format!("{}/{}", s(t.r#type), s(t.unit)))
        .collect();
    assert_eq!(
        types,
        ["samples/count", "wall/nanoseconds", "cpu/nanoseconds"]
    );
    let pt = m.period_type.as_ref().unwrap();
    assert_eq!((s(pt.r#type), s(pt.unit)), ("wall", "nanoseconds"));
    let period = (1e9f64 / 97.0).round() as i64;
    assert_eq!(m.period, period);
    assert_eq!(m.duration_nanos, 4_123_456_789);
    assert_eq!(m.time_nanos, 1_790_000_000_123_456_789);
    assert_eq!(s(m.default_sample_type), "wall");
    let comments: Vec<&str> = m.comment.iter().map(|c| s(*c)).collect();
    for want in [
        "pyrometer.python_version=3.11.2",
        "pyrometer.rate=97",
        "pyrometer.ticks=400",
        "pyrometer.late_ticks=3",
        "pyrometer.errors=2",
        "pyrometer.target=python3 app.py --workers 2\\n(and \\\\ a tab\\t)",
    ] {
        assert!(comments.contains(&want), "{want} not in {comments:?}");
    }
    // One sample per (stack, thread, state); values consistent. The
    // timeline follows, one zero-valued sample per entry with its time.
    let is_timeline = |x: &&pyrometer_outputs::pprof_proto::Sample| {
        x.label.iter().any(|l| s(l.key) == "timestamp_ns")
    };
    let (timeline, aggregated): (Vec<_>, Vec<_>) = m.sample.iter().partition(is_timeline);
    assert_eq!(aggregated.len(), p.counts().len());
    assert_eq!(timeline.len(), p.timeline().entries().len());
    assert_eq!(timeline.len() as u64, p.total_samples());
    for (x, e) in timeline.iter().zip(p.timeline().entries()) {
        assert_eq!(x.value, [0, 0, 0]);
        let t = x.label.iter().find(|l| s(l.key) == "timestamp_ns").unwrap();
        assert_eq!(s(t.num_unit), "nanoseconds");
        assert_eq!(t.num as u128, e.time.as_nanos());
    }
    let total: i64 = m.sample.iter().map(|x| x.value[0]).sum();
    assert_eq!(total as u64, p.total_samples());
    for x in aggregated {
        assert_eq!(x.value.len(), 3);
        let state = x
            .label
            .iter()
            .find(|l| s(l.key) == "state")
            .map(|l| s(l.str))
            .unwrap();
        let wall = (x.value[0] as f64 * 1e9 / 97.0).round() as i64;
        assert_eq!(x.value[1], wall);
        let active = matches!(state, "python" | "native");
        assert_eq!(x.value[2], if active { wall } else { 0 }, "{state}");
        let keys: Vec<&str> = x.label.iter().map(|l| s(l.key)).collect();
        for k in ["thread_id", "pid", "process", "state"] {
            assert_eq!(keys.iter().filter(|x| **x == k).count(), 1, "{k}: {keys:?}");
        }
        let pid = x.label.iter().find(|l| s(l.key) == "pid").unwrap().num;
        assert!(pid == 100 || pid == 101);
    }
    // Functions: name, file as system name, start line; ids unique, non-zero.
    for f in &m.function {
        assert_ne!(f.id, 0);
        assert_eq!(f.system_name, f.filename);
        let (_, file, first) = FUNCS.iter().find(|x| x.0 == s(f.name)).unwrap();
        assert_eq!(s(f.filename), *file);
        assert_eq!(f.start_line, *first as i64);
    }
    for l in &m.location {
        assert_ne!(l.id, 0);
        assert_eq!(l.line.len(), 1);
        assert!(m.function.iter().any(|f| f.id == l.line[0].function_id));
    }
}

#[test]
fn empty_profile_round_trips() {
    let p = Profile::new();
    let q = read_pprof(&pprof_bytes(&p)).unwrap();
    assert_eq!(q.total_samples(), 0);
    let mut a = Vec::new();
    write_folded(&q, &StackOptions::new(), &mut a).unwrap();
    assert!(a.is_empty());
}

#[test]
fn not_pprof_is_refused_clearly() {
    let folded = b"main (a.py:1);f (a.py:2) 3\n";
    let e = read_pprof(folded).unwrap_err().to_string();
    assert!(e.starts_with("not a gzipped pprof profile"), "{e}");
    // Gzipped text is not a profile either.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, folded).unwrap();
    let e = read_pprof(&gz.finish().unwrap()).unwrap_err().to_string();
    assert!(e.starts_with("not a gzipped pprof profile"), "{e}");
    // A truncated file.
    let good = pprof_bytes(&sample_profile(3));
    let e = read_pprof(&good[..good.len() / 2]).unwrap_err().to_string();
    assert!(e.starts_with("not a gzipped pprof profile"), "{e}");
}

#[test]
fn reads_a_profile_pyrometer_did_not_write() {
    // pyroscope-rs's layout: one sample type cpu/nanoseconds, value =
    // count × period, no labels.
    use pyrometer_outputs::pprof_proto as pb;
    let strings: Vec<String> = ["", "cpu", "nanoseconds", "f", "g", "/a.py"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let m = pb::Profile {
        sample_type: vec![pb::ValueType { r#type: 1, unit: 2 }],
        period_type: Some(pb::ValueType { r#type: 1, unit: 2 }),
        period: 10_000_000,
        function: vec![
            pb::Function {
                id: 1,
                name: 3,
                filename: 5,
                start_line: 1,
                ..Default::default()
            },
            pb::Function {
                id: 2,
                name: 4,
                filename: 5,
                start_line: 9,
                ..Default::default()
            },
        ],
        location: vec![
            pb::Location {
                id: 1,
                line: vec![pb::Line {
                    function_id: 1,
                    line: 3,
                    column: 0,
                }],
                ..Default::default()
            },
            pb::Location {
                id: 2,
                line: vec![pb::Line {
                    function_id: 2,
                    line: 10,
                    column: 0,
                }],
                ..Default::default()
            },
        ],
        sample: vec![pb::Sample {
            location_id: vec![2, 1],
            value: vec![30_000_000],
            label: vec![],
        }],
        string_table: strings,
        ..Default::default()
    };
    use prost::Message;
    let q = read_pprof(&m.encode_to_vec()).unwrap();
    assert_eq!(q.meta.rate, 100.0);
    assert_eq!(
        folded_lines(&q, &StackOptions::new()),
        ["f (a.py:3);g (a.py:10) 3"]
    );
}

/// `sample_profile` plus memory: attach-mode readings (RSS, heap, growth
/// attributed to the stacks sampled between them, a peak) and `record
/// --memory` allocation sites (attributed, with endpoints, frees, and one
/// whose stack was not read).
fn memory_profile(seed: u64) -> Profile {
    use pyrometer_sampler::{MemoryEvent, MemoryReading};
    let mut p = sample_profile(seed);
    let mut rng = Lcg(seed ^ 0xabcdef);
    {
        let a = p.allocations_mut();
        a.enabled = true;
        a.mean_bytes = 4096;
    }
    let mut rss = 100 << 20;
    for step in 0..40u64 {
        let time = Duration::from_millis(step * 100);
        for pid in [100, 101] {
            rss = rss + rng.next(3 << 20) - (1 << 20);
            p.add_memory_reading(&MemoryReading {
                time,
                pid,
                rss: Some(rss),
                heap: (pid == 100).then_some(rss / 3),
                heap_unavailable: (pid == 101).then(|| Arc::from("no .symtab")),
            });
        }
        for k in 0..6u64 {
            let frames: Vec<SampledFrame> = (0..1 + rng.next(4))
                .map(|_| {
                    let f = rng.next(FUNCS.len() as u64) as usize;
                    frame(f, FUNCS[f].2 + rng.next(3) as i32)
                })
                .collect();
            let request = (k % 2 == 0).then(|| SampledRequest {
                key: step,
                method: Arc::from("GET"),
                path: Arc::from("/img"),
                endpoint: Arc::from("GET app.image"),
            });
            let sample = Sample {
                time,
                pid: 100,
                thread_id: 0x7f00_0000_1000,
                native_id: Some(100),
                thread_name: Some(Arc::from("MainThread")),
                state: ThreadState::Python,
                holds_gil: true,
                frames,
                truncated: false,
                walked: true,
                request,
                category: None,
            };
            p.add_sample(&sample);
            let addr = step * 16 + k;
            p.add_memory_event(&MemoryEvent::Alloc {
                time,
                pid: 100,
                addr,
                size: 100 + rng.next(5000),
                bytes: 4096.0 * (1.0 + rng.next(7) as f64 / 3.0),
                sample: (k != 5).then_some(sample),
            });
            if rng.next(3) == 0 {
                p.add_memory_event(&MemoryEvent::Free {
                    time,
                    pid: 100,
                    addr,
                });
            }
        }
    }
    p.allocations_mut().finish(Duration::from_secs(4));
    p.finish();
    p
}

#[test]
fn memory_round_trips_attach_and_launch_mode() {
    for seed in [3, 9] {
        let p = memory_profile(seed);
        assert!(!p.memory().is_empty() && p.allocations().enabled);
        let q = read_pprof(&pprof_bytes(&p)).unwrap();
        assert!(q.allocations().enabled, "allocation profile lost");
        assert_eq!(
            q.allocations().sites().count(),
            p.allocations().sites().count()
        );
        // Sums in hash order: equal up to rounding.
        let (a, b) = (q.allocations().total_bytes(), p.allocations().total_bytes());
        assert!((a - b).abs() <= 1e-9 * b, "{a} vs {b}");
        assert_eq!(
            q.allocations().leak_candidates().len(),
            p.allocations().leak_candidates().len()
        );
        assert_eq!(q.total_samples(), p.total_samples(), "totals unchanged");
        let mut with_idle = StackOptions::new();
        with_idle.include_idle = true;
        for o in [StackOptions::new(), with_idle] {
            let (direct, saved) = (html(&p, &o), html(&q, &o));
            assert!(
                direct.contains(r#"<section id="memory">"#),
                "no attach-mode section"
            );
            assert!(direct.contains("\"memory\":{"), "no allocation data");
            if saved != direct {
                let at = saved
                    .bytes()
                    .zip(direct.bytes())
                    .position(|(a, b)| a != b)
                    .unwrap_or(saved.len().min(direct.len()));
                let around = |t: &str| {
                    t.get(at.saturating_sub(150)..(at + 150).min(t.len()))
                        .unwrap_or("")
                        .to_string()
                };
                panic!(
                    "seed {seed}: the report differs after a round trip at byte {at}:\n saved: {}\ndirect: {}",
                    around(&saved),
                    around(&direct)
                );
            }
        }
        // Other pprof readers see the allocation values as before.
        let m = decode_pprof(&pprof_bytes(&p)).unwrap();
        let types: Vec<&str> = m
            .sample_type
            .iter()
            .map(|t| m.string_table[t.r#type as usize].as_str())
            .collect();
        assert_eq!(
            types,
            [
                "samples",
                "wall",
                "cpu",
                "alloc_objects",
                "alloc_space",
                "inuse_objects",
                "inuse_space"
            ]
        );
        let r = read_pprof(&pprof_bytes(&q)).unwrap();
        assert_eq!(pprof_bytes_plain(&r), pprof_bytes_plain(&q));
    }
}
