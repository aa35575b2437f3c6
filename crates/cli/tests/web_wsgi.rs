//! Request attribution on every interpreter of the matrix, with no third-
//! party package: tests/targets/wsgi_app.py serves WSGI on the standard
//! library's wsgiref server and drives itself with a client thread. Its
//! /slow/<n> requests burn 50 ms of CPU in `slow_view`; /fast returns JSON.
//! `record --group-by endpoint` must name the endpoints by their view
//! (`GET wsgi_app.slow_view`, not the raw path), give the slow one the bulk
//! of the CPU, see every slow request once, and estimate their median
//! latency within 20 % of the app's own measurement (50 ms on a quiet
//! machine, more on a loaded one, where the loop overshoots and the rest of
//! the request waits for a CPU).

mod common;

use common::*;

const SLOW: &str = "GET wsgi_app.slow_view";

#[test]
fn endpoints_and_latencies_from_wsgi_environ() {
    let interps = require_all();
    let script = target("wsgi_app.py");
    let rows = par_map(&interps, 2, |interp| {
        let mut c = Checks::new(interp);
        let _cpu = cpu_lock();
        let scratch = Scratch::new(&format!("web-wsgi-{}", interp.label));
        let out_file = scratch.file("out.txt");
        let python = interp.path.to_string_lossy().into_owned();
        let out = pyrometer(&[
            "record",
            "-r",
            "500",
            "-f",
            "raw",
            "--group-by",
            "endpoint",
            "-o",
            out_file.to_str().unwrap(),
            "--",
            &python,
            script.to_str().unwrap(),
            // 3 s, and at least 30 slow requests however slow they get.
            "3",
            "30",
        ]);
        let stderr = stderr_of(&out);
        if !c.check("record", out.status.success(), || {
            format!("record failed: {stderr}")
        }) {
            return c;
        }
        let text = std::fs::read_to_string(&out_file).unwrap_or_default();
        let folded = match parse_folded(&text) {
            Ok(f) => f,
            Err(e) => {
                c.fail("record", e);
                return c;
            }
        };
        // The app's own measurement of the time in `app` (its last line,
        // through pyrometer's stdout).
        let stdout = stdout_of(&out);
        let own: Value = stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or(Value::Null);
        c.note(format!(
            "the app's own measurement: {own}; load average {}",
            load::loadavg()
        ));
        let (Some(own_requests), Some(own_p50), Some(slow_ms), Some(fast_ms)) = (
            own["slow_requests"].as_u64(),
            own["slow_p50_ms"].as_f64(),
            own["slow_ms"].as_f64(),
            own["fast_ms"].as_f64(),
        ) else {
            c.fail(
                "record",
                format!("no measurement from the app on stdout: {stdout:?}"),
            );
            return c;
        };
        let samples_of = |endpoint: &str| -> u64 {
            folded
                .iter()
                .filter(|(stack, _)| {
                    stack.first().map(String::as_str) == Some(&format!("endpoint ({endpoint})"))
                })
                .map(|(_, n)| *n)
                .sum()
        };
        let in_requests: u64 = folded
            .iter()
            .filter(|(stack, _)| {
                stack
                    .first()
                    .is_some_and(|f| f.starts_with("endpoint (") && f != "endpoint (none)")
            })
            .map(|(_, n)| n)
            .sum();
        let slow = samples_of(SLOW);
        // The slow view's share of the samples in requests is its share of
        // the time the app spent serving (on a quiet machine ~95 %; a
        // loaded one stretches the CPU-bound /fast requests more than the
        // 50 ms loop): within 8 points, which a request attributed to the
        // wrong endpoint, or samples of the view to none, exceeds.
        let want = slow_ms / (slow_ms + fast_ms).max(1e-9);
        let got = slow as f64 / in_requests.max(1) as f64;
        c.check("endpoints", (got - want).abs() <= 0.08, || {
            format!(
                "{SLOW} has {slow} of {in_requests} samples in requests ({:.1} %), the app spent {:.1} % of its time in /slow:\n{text}",
                100.0 * got,
                100.0 * want
            )
        });
        // Before the view is on the stack a request is named by its path,
        // with ids taken out: never one endpoint per raw path.
        let raw = (0..10).any(|d| text.contains(&format!("endpoint (GET /slow/{d}")));
        c.check("endpoints", !raw, || {
            format!("raw paths used as endpoint names:\n{text}")
        });
        // The summary table: `GET wsgi_app.slow_view  CPU% wall requests p50 p95 max ...`.
        let row = stderr.lines().find(|l| l.trim_start().starts_with(SLOW));
        let p50 = row.and_then(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.get(5).and_then(|v| v.parse::<f64>().ok())
        });
        // The view burns 50 ms of wall time by construction, so the app's
        // median is at least that; pyrometer's estimate (first to last
        // sample, plus a period) must be within 20 % of the app's (a wrong
        // request boundary, or one request cut in two, fails).
        c.check("latency", own_p50 >= 50.0, || {
            format!("the app's median /slow time {own_p50:.1} ms is under the 50 ms it burns")
        });
        c.check(
            "latency",
            p50.is_some_and(|p| (p - own_p50).abs() <= 0.2 * own_p50),
            || {
                format!(
                    "p50 of {SLOW} should be the app's {own_p50:.1} ms ± 20 %, summary:\n{stderr}"
                )
            },
        );
        // Every slow request is seen, once: all but the few served before
        // pyrometer attached, and none split into several.
        let requests = row.and_then(|l| l.split_whitespace().nth(4)?.parse::<u64>().ok());
        c.note(format!(
            "pyrometer: {requests:?} slow requests, p50 {p50:?} ms; {slow} of {in_requests} samples in requests"
        ));
        c.check(
            "latency",
            own_requests >= 30
                && requests.is_some_and(|r| {
                    r * 10 >= own_requests * 8 && r * 10 <= own_requests * 11
                }),
            || format!("{requests:?} {SLOW} requests seen, the app served {own_requests} (at least 30):\n{stderr}"),
        );
        // slow_view's time is the application's own.
        c.check(
            "categories",
            row.is_some_and(|l| l.contains("app 9") || l.contains("app 100")),
            || format!("{SLOW} should be ~all `app`:\n{stderr}"),
        );
        c
    });
    finish(
        "request attribution (wsgiref)",
        &["record", "endpoints", "latency", "categories"],
        &rows,
    );
}
