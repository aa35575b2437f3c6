//! Memory in attach mode on every interpreter of the matrix: `record
//! --pid` of tests/targets/grow.py, whose RSS grows by 1 MiB every 20 ms
//! that `grow` runs and not at all while `steady` runs, until it keeps
//! 48 MiB and exits (so a loaded machine makes the run longer, not the
//! growth smaller).
//!
//! * RSS: the summary's per-process line shows a peak and growth of at
//!   least 20 MiB, and the stack running at the peak;
//! * attribution: at least 70 % of the estimated growth goes to `grow`;
//! * pymalloc heap: in use (a size) where the binary lets it be found,
//!   "unavailable" on Debian's python3.11 (stripped of .symtab);
//! * the HTML report draws a memory timeline that rises.

mod common;

use common::*;

const GROUPS: &[&str] = &["rss", "attribution", "heap", "html"];
const MIB: f64 = 1024.0 * 1024.0;

/// `12.3 MiB` → bytes.
fn parse_bytes(text: &str) -> Option<f64> {
    let mut it = text.split_whitespace();
    let v: f64 = it.next()?.parse().ok()?;
    let unit = match it.next()? {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => MIB,
        "GiB" => MIB * 1024.0,
        _ => return None,
    };
    Some(v * unit)
}

fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.find(marker).map(|i| &line[i + marker.len()..])
}

fn check(interp: &Interp) -> Checks {
    let mut c = Checks::new(interp);
    let scratch = Scratch::new(&format!("memory-{}", interp.label));
    let (child, _) = match start_target(interp, "grow.py", &["48"]) {
        Ok(t) => t,
        Err(e) => {
            c.fail("rss", e);
            return c;
        }
    };
    let html = scratch.file("memory.html");
    let pid = child.pid().to_string();
    let args = [
        "record",
        "--pid",
        &pid,
        "-d",
        "45",
        "-f",
        "html",
        "-o",
        html.to_str().unwrap_or_default(),
    ];
    let out = pyrometer(&args);
    let stderr = stderr_of(&out);
    if !c.check("rss", out.status.success(), || {
        format!("{} failed: {stderr}", show(&args))
    }) {
        return c;
    }
    let line = stderr
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("pid {pid}")) && l.contains("peak RSS"));
    let Some(line) = line else {
        c.fail("rss", format!("no memory line for pid {pid}: {stderr}"));
        return c;
    };
    let grew = after(line, "grew ").and_then(|s| parse_bytes(s.split(',').next()?));
    c.check("rss", grew.is_some_and(|g| g >= 20.0 * MIB), || {
        format!("growth of at least 20 MiB expected: {line}")
    });
    c.check(
        "rss",
        stderr.lines().any(|l| l.contains("running at the peak: ")),
        || format!("no stack at the peak: {stderr}"),
    );
    if interp.label.starts_with("debian") {
        c.check("heap", line.contains("pymalloc heap unavailable"), || {
            format!("stripped 3.11 must say unavailable: {line}")
        });
    } else {
        let heap = after(line, "pymalloc heap in use ").and_then(parse_bytes);
        c.check("heap", heap.is_some_and(|h| h >= 256.0 * 1024.0), || {
            format!("pymalloc heap in use expected: {line}")
        });
    }
    // The function table: `  grow (grow.py)   12.3 MiB  95.0 %`.
    let table = stderr
        .split("memory growth by function (estimate")
        .nth(1)
        .unwrap_or("");
    let grow_share = table
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .find(|l| l.trim_start().starts_with("grow ("))
        .and_then(|l| l.trim_end().strip_suffix('%'))
        .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok());
    c.check("attribution", grow_share.is_some_and(|s| s >= 70.0), || {
        format!("grow should have at least 70 % of the growth: {table}")
    });
    c.note(format!("{line}; grow {grow_share:?} %"));
    match std::fs::read_to_string(&html) {
        Ok(text) => {
            let section = text.split("id=\"memory\"").nth(1).unwrap_or("");
            c.check(
                "html",
                section.contains("memory growth by endpoint (estimate)"),
                || "the report has no memory section with its growth table".into(),
            );
            // The chart's RSS polyline: y falls (the line rises) from the
            // first point to the highest by more than a third of the chart.
            let ys: Vec<f64> = section
                .split("class=\"rss\" points=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap_or("")
                .split_whitespace()
                .filter_map(|p| p.split(',').nth(1)?.parse().ok())
                .collect();
            let first = ys.first().copied().unwrap_or(0.0);
            let highest = ys.iter().copied().fold(f64::INFINITY, f64::min);
            c.check("html", ys.len() >= 10 && first - highest > 45.0, || {
                format!("the RSS line should rise over {} points: {ys:?}", ys.len())
            });
        }
        Err(e) => c.fail("html", format!("cannot read the report: {e}")),
    }
    c
}

#[test]
fn memory_is_read_and_growth_attributed_on_every_interpreter() {
    let interps = require_all();
    let _cpu = cpu_lock();
    let rows = par_map(&interps, 2, check);
    finish("record: memory in attach mode", GROUPS, &rows);
}

/// The image-service under gunicorn with 2 sync workers, under load:
/// `record --subprocesses` gives a memory line with a peak RSS for the
/// master and for each worker, and the HTML report a chart for each.
#[test]
fn gunicorn_workers_each_have_an_rss_row() {
    use common::web::*;
    let scratch = Scratch::new("memory-gunicorn");
    venv("image-service");
    let _turn = web_lock();
    let (server, workers) = image_service(&scratch, 2, "sync");
    let load = start_load(
        &scratch,
        server.port,
        6.0,
        4,
        "process:thumbnail=2,health=1",
        &[],
    );
    let html = scratch.file("gunicorn.html");
    let master = server.master().to_string();
    let args = [
        "record",
        "--pid",
        &master,
        "--subprocesses",
        "-d",
        "3",
        "--quiet",
        "-f",
        "html",
        "-o",
        html.to_str().unwrap_or_default(),
    ];
    let stderr = pyrometer_ok(&args);
    let _ = load.finish();
    let row = |pid: i32, role: &str| {
        stderr.lines().any(|l| {
            l.trim_start()
                .starts_with(&format!("pid {pid} ({role}): peak RSS "))
                && l.contains(" MiB at ")
        })
    };
    assert!(
        row(server.master(), "master"),
        "no master RSS row: {stderr}"
    );
    for w in &workers {
        assert!(row(*w, "worker"), "no RSS row for worker {w}: {stderr}");
    }
    let report = std::fs::read_to_string(&html).expect("the HTML report");
    let charts = report.matches("class=\"memory-chart\"").count();
    assert!(
        charts > workers.len(),
        "{charts} memory charts for a master and {} workers",
        workers.len()
    );
    drop(server);
}

/// `--memory-interval 0` reads no memory: no memory lines, no section.
#[test]
fn memory_interval_zero_reads_nothing() {
    let interp = one_interp();
    let scratch = Scratch::new("memory-off");
    let (child, _) = start_target(&interp, "grow.py", &["2000"]).expect("grow.py");
    let html = scratch.file("off.html");
    let pid = child.pid().to_string();
    let args = [
        "record",
        "--pid",
        &pid,
        "-d",
        "1",
        "--memory-interval",
        "0",
        "-f",
        "html",
        "-o",
        html.to_str().unwrap_or_default(),
    ];
    let stderr = pyrometer_ok(&args);
    assert!(stderr.contains("samples:"), "no summary: {stderr}");
    assert!(!stderr.contains("peak RSS"), "{stderr}");
    let report = std::fs::read_to_string(&html).expect("the HTML report");
    assert!(!report.contains("id=\"memory\""));
}

/// `record --pid -f pprof` then `report -f html`: the memory section (the
/// process's RSS chart, its peak, the growth tables with `grow` in them)
/// comes through the saved profile.
#[test]
fn report_of_a_saved_pprof_has_the_memory_section() {
    let _cpu = cpu_lock();
    let interp = one_interp();
    let scratch = Scratch::new("memory-report");
    let (child, _) = start_target(&interp, "grow.py", &["24"]).expect("grow.py starts");
    let pid = child.pid().to_string();
    let pb = scratch.file("memory.pb.gz");
    let out = pyrometer(&[
        "record",
        "--pid",
        &pid,
        "-d",
        "8",
        "-f",
        "pprof",
        "-o",
        pb.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let html = scratch.file("memory.html");
    let out = pyrometer(&[
        "report",
        pb.to_str().unwrap(),
        "-f",
        "html",
        "-o",
        html.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = std::fs::read_to_string(&html).expect("the report");
    let section = text
        .split(r#"<section id="memory">"#)
        .nth(1)
        .expect("a memory section");
    let section = section.split("</section>").next().unwrap_or("");
    assert!(section.contains(&format!("pid {pid}")), "{section:.3000}");
    assert!(section.contains("peak RSS"), "{section:.3000}");
    assert!(
        section.contains("class=\"rss\" points=\""),
        "no RSS chart: {section:.3000}"
    );
    let functions = section
        .split("memory growth by function (estimate)")
        .nth(1)
        .expect("a growth-by-function table");
    assert!(functions.contains("grow (grow.py"), "{functions:.3000}");
}
