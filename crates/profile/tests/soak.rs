//! Long runs: the aggregated profile is bounded by what it keeps (interned
//! stacks, request reservoirs, the bounded timeline), not by samples taken.
//! A CI-sized version of bench/soak.py; no timing is asserted.

use std::sync::Arc;
use std::time::Duration;

use pyrometer_profile::{Profile, TableSizes, DEFAULT_TIMELINE_LIMIT, MAX_PATHS_KEPT};
use pyrometer_sampler::{Sample, SampledFrame, SampledRequest, ThreadState};

#[path = "../examples/soak_replay/synthetic.rs"]
#[allow(dead_code)]
mod synthetic;

/// Feeds samples until `until` samples were added; returns the paths the
/// stream generated so far.
fn feed(
    stream: &mut synthetic::ServiceStream,
    profile: &mut Profile,
    done: &mut u64,
    until: u64,
) -> u64 {
    let period = Duration::from_micros(50);
    let mut tick = Vec::new();
    while *done < until {
        stream.next_tick(period, &mut tick);
        for s in &tick {
            profile.add_sample(s);
        }
        *done += tick.len() as u64;
    }
    stream.paths_generated
}

#[test]
fn five_million_service_samples_stop_growing_the_tables_after_warm_up() {
    const WARM_UP: u64 = 1_000_000;
    const HALF: u64 = 2_500_000;
    const TOTAL: u64 = 5_000_000;
    let mut stream = synthetic::ServiceStream::new(0x5eed);
    let mut profile = Profile::new();
    profile.set_period(Duration::from_micros(50));
    let mut done = 0;
    let paths_at_warm_up = feed(&mut stream, &mut profile, &mut done, WARM_UP);
    let warm: TableSizes = profile.table_sizes();
    feed(&mut stream, &mut profile, &mut done, HALF);
    let half = profile.table_sizes();
    let paths_at_end = feed(&mut stream, &mut profile, &mut done, TOTAL);
    let end = profile.table_sizes();
    eprintln!("after warm-up: {warm:?}\nat half: {half:?}\nat the end: {end:?}");
    assert_eq!(profile.total_samples(), done);

    // The interned tables stopped growing: the code, its lines and the
    // stacks through it were all seen during warm-up.
    assert_eq!(end.frames, warm.frames);
    assert_eq!(end.frames_by_code, warm.frames_by_code);
    assert_eq!(end.stacks, warm.stacks);
    assert_eq!(end.endpoints, synthetic::VIEWS);
    // Threads come and go on reused idents: bounded by the idents.
    let idents = synthetic::PROCESSES as usize * synthetic::THREAD_IDENTS as usize;
    assert!(end.threads <= idents && end.last_paths <= idents, "{end:?}");
    // Raw paths are high-cardinality; only kept (slowest) requests' paths are
    // interned, so strings grow by a handful while tens of thousands of new
    // paths go by.
    assert!(
        paths_at_end - paths_at_warm_up > 50_000,
        "the stream varies its paths"
    );
    assert!(
        end.strings - warm.strings < 100,
        "strings grew from {} to {} over {} new raw paths",
        warm.strings,
        end.strings,
        paths_at_end - paths_at_warm_up
    );
    // Requests: a bounded reservoir of durations and the slowest few per endpoint.
    assert!(end.requests_kept <= synthetic::VIEWS * (4096 + pyrometer_profile::SLOWEST_KEPT));
    assert!(end.open_requests <= idents);
    // Counts saturate (bounded by stacks × threads × states × endpoint ×
    // category): the second half adds far fewer keys than the first.
    assert!(
        (end.counts - half.counts) * 4 < half.counts,
        "counts {} at half, {} at the end",
        half.counts,
        end.counts
    );
    assert_eq!(end.timeline, DEFAULT_TIMELINE_LIMIT);
    assert!(end.activity_buckets <= pyrometer_profile::MAX_BUCKETS * synthetic::PROCESSES as usize);
}

fn request_sample(time: Duration, key: u64, path: &str) -> Sample {
    Sample {
        time,
        pid: 1,
        thread_id: 1,
        native_id: Some(1),
        thread_name: None,
        state: ThreadState::Python,
        holds_gil: true,
        frames: vec![SampledFrame {
            name: Arc::from("view"),
            filename: Arc::from("app.py"),
            line: 3,
            first_line: 1,
            code_key: 0x1000,
        }],
        truncated: false,
        walked: true,
        request: Some(SampledRequest {
            key,
            method: Arc::from("GET"),
            path: Arc::from(path),
            endpoint: Arc::from("GET app.view"),
        }),
        category: None,
    }
}

#[test]
fn requests_that_keep_getting_slower_intern_a_bounded_number_of_paths() {
    // Each request is slower than every one before, so each enters the
    // slowest kept: the worst case for interning their raw paths.
    let requests = MAX_PATHS_KEPT as u64 + 3000;
    let mut profile = Profile::new();
    let mut time = Duration::ZERO;
    for key in 1..=requests {
        let path = format!("/items/{key}");
        profile.add_sample(&request_sample(time, key, &path));
        profile.add_sample(&request_sample(
            time + Duration::from_micros(key),
            key,
            &path,
        ));
        time += Duration::from_micros(key + 1);
    }
    profile.finish();
    let sizes = profile.table_sizes();
    assert!(
        sizes.strings <= MAX_PATHS_KEPT + 10,
        "{} strings for {requests} distinct paths",
        sizes.strings
    );
    let (_, stats) = profile
        .requests()
        .endpoints()
        .next()
        .expect("the endpoint has statistics");
    assert_eq!(stats.count, requests);
    // The slowest are the last requests, kept with the placeholder path.
    let slowest = &stats.slowest[0];
    assert_eq!(slowest.duration, Duration::from_micros(requests));
    assert_eq!(profile.str(slowest.path), pyrometer_profile::PATH_NOT_KEPT);
}

#[test]
fn recycled_workers_leave_no_per_process_caches_behind() {
    // A service whose workers are recycled: 300 generations of a worker,
    // each a new pid running the same code, each sampled then exiting.
    let mut profile = Profile::new();
    let mut time = Duration::ZERO;
    let mut key = 0;
    for generation in 0..300 {
        let pid = 10_000 + generation;
        for n in 0..20u64 {
            key += 1;
            let mut s = request_sample(time, key, "/items/1");
            s.pid = pid;
            s.frames[0].line = 3 + (n % 5) as i32;
            profile.add_sample(&s);
            time += Duration::from_millis(1);
        }
        let open = profile.table_sizes().open_requests;
        // Its last request is open, and the few before it may still be
        // within their grace (a request seen again within 5 periods is the
        // same request).
        assert!(
            (1..=6).contains(&open),
            "{open} requests open while the worker lives"
        );
        profile.process_exited(pid);
    }
    let sizes = profile.table_sizes();
    assert_eq!(sizes.frames_by_code, 0, "{sizes:?}");
    assert_eq!(sizes.last_paths, 0, "{sizes:?}");
    assert_eq!(sizes.open_requests, 0, "{sizes:?}");
    // The profile itself keeps what it measured: one frame per line, every
    // worker, every request.
    assert_eq!(sizes.frames, 5);
    assert_eq!(sizes.threads, 300);
    assert_eq!(profile.total_samples(), 300 * 20);
    let (_, stats) = profile
        .requests()
        .endpoints()
        .next()
        .expect("the endpoint has statistics");
    assert_eq!(stats.count, key);
}
