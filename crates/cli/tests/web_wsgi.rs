//! Request attribution on every interpreter of the matrix, with no third-
//! party package: tests/targets/wsgi_app.py serves WSGI on the standard
//! library's wsgiref server and drives itself with a client thread. Its
//! /slow/<n> requests burn 50 ms of CPU in `slow_view`; /fast returns JSON.
//! `record --group-by endpoint` must name the endpoints by their view
//! (`GET wsgi_app.slow_view`, not the raw path), give the slow one the bulk
//! of the CPU, and estimate its latency within 20 % of 50 ms.

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
            "3",
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
        let share = |endpoint: &str| -> u64 {
            folded
                .iter()
                .filter(|(stack, _)| {
                    stack.first().map(String::as_str) == Some(&format!("endpoint ({endpoint})"))
                })
                .map(|(_, n)| *n)
                .sum()
        };
        let total: u64 = folded.iter().map(|(_, n)| n).sum();
        let slow = share(SLOW);
        c.check("endpoints", slow as f64 > 0.5 * total as f64, || {
            format!("{SLOW} has {slow} of {total} samples:\n{text}")
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
        c.check(
            "latency",
            p50.is_some_and(|p| (40.0..=60.0).contains(&p)),
            || format!("p50 of {SLOW} should be 50 ms ± 20 %, summary:\n{stderr}"),
        );
        let requests = row.and_then(|l| l.split_whitespace().nth(4)?.parse::<u64>().ok());
        c.check("latency", requests.is_some_and(|r| r >= 20), || {
            format!("too few {SLOW} requests seen:\n{stderr}")
        });
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
