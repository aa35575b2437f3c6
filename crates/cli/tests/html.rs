//! The HTML report (`-f html`) opened in headless Chromium (tests/browser):
//!
//! * tests/targets/hostile.py, whose function, file and thread names and
//!   hot source line are markup: the report renders them as text (they are
//!   in the tables' text, no element they describe exists, nothing they
//!   hold ran), with no console error, no request outside the file, the
//!   tables and flame graph drawn, sorting by a real click, the page's own
//!   self-test (#selftest: sorting, zoom, search, tooltips) passing;
//! * tests/targets/wsgi_app.py, a WSGI service on the standard library's
//!   server: the endpoint table names the view, with request counts and a
//!   latency estimate near the 50 ms its slow view burns; a real click on
//!   the endpoint shows its own flame graph (holding `slow_view`), another
//!   goes back; the timeline is drawn; screenshots are left in
//!   target/test-artifacts/.
//!
//! One interpreter each (the newest of the matrix): what is tested is the
//! page, the recording is tested on every interpreter elsewhere.

mod browser;
#[allow(unused)]
mod common;

use std::time::Duration;

use browser::{artifacts_dir, Browser, BROWSER_TIMEOUT};
use common::*;
use serde_json::Value;

fn newest() -> Interp {
    let mut interps = require_all();
    interps.sort_by_key(|i| i.minor());
    interps.pop().expect("require_all returns interpreters")
}

fn file_url(path: &std::path::Path, query: &str, hash: &str) -> String {
    let mut u = String::from("file://");
    for b in path.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            u.push(b as char);
        } else {
            u.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{u}{query}{hash}")
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Open the report with its self-test and wait until the page has run it.
fn open_with_selftest(b: &mut Browser, url: &str) -> Result<Value, String> {
    b.navigate(url)?;
    b.wait_for(
        "document.body && document.body.getAttribute('data-selftest')",
        BROWSER_TIMEOUT,
    )?;
    let text = b.eval("document.getElementById('selftest-result').textContent")?;
    serde_json::from_str(text.as_str().unwrap_or("")).map_err(|e| format!("self-test result: {e}"))
}

/// Values of one column of a table as the page holds them (data-v).
fn column(b: &mut Browser, table: &str, col: usize) -> Vec<Value> {
    let v = b
        .eval(&format!(
            "Array.from(document.querySelectorAll('#{table} tbody tr')).map(tr => JSON.parse(tr.children[{col}].getAttribute('data-v')))"
        ))
        .unwrap_or(Value::Null);
    v.as_array().cloned().unwrap_or_default()
}

fn sorted_desc(v: &[Value]) -> bool {
    v.windows(2)
        .all(|w| w[0].as_f64().unwrap_or(0.0) >= w[1].as_f64().unwrap_or(0.0))
}

fn sorted_asc(v: &[Value]) -> bool {
    v.windows(2)
        .all(|w| w[0].as_f64().unwrap_or(0.0) <= w[1].as_f64().unwrap_or(0.0))
}

/// Sort a table by a real click on a column header; the rows must follow.
fn check_sort_by_click(
    b: &mut Browser,
    table: &str,
    col: usize,
    min_rows: usize,
) -> Result<(), String> {
    b.click(&format!("#{table} th[data-col=\"{col}\"] button"))?;
    b.wait_for(
        &format!("document.getElementById('{table}').getAttribute('data-sort') === '{col}:desc'"),
        Duration::from_secs(10),
    )?;
    let v = column(b, table, col);
    if v.len() < min_rows || !sorted_desc(&v) {
        return Err(format!(
            "{table} not sorted descending by column {col}: {v:?}"
        ));
    }
    b.click(&format!("#{table} th[data-col=\"{col}\"] button"))?;
    b.wait_for(
        &format!("document.getElementById('{table}').getAttribute('data-sort') === '{col}:asc'"),
        Duration::from_secs(10),
    )?;
    let v = column(b, table, col);
    if !sorted_asc(&v) {
        return Err(format!(
            "{table} not sorted ascending by column {col}: {v:?}"
        ));
    }
    Ok(())
}

fn texts(b: &mut Browser, selector: &str) -> Vec<String> {
    let sel = serde_json::to_string(selector).unwrap();
    b.eval(&format!(
        "Array.from(document.querySelectorAll({sel})).map(e => e.textContent)"
    ))
    .ok()
    .and_then(|v| serde_json::from_value(v).ok())
    .unwrap_or_default()
}

/// No console error, exception or error log entry; nothing fetched but
/// the file itself.
fn check_clean(b: &mut Browser, url_prefix: &str) {
    let _ = b.pump(Duration::from_millis(300));
    let errors = b.errors();
    assert!(errors.is_empty(), "the page logged errors: {errors:#?}");
    let outside: Vec<String> = b
        .requested_urls()
        .into_iter()
        .filter(|u| !u.starts_with(url_prefix) && !u.starts_with("data:"))
        .collect();
    assert!(outside.is_empty(), "the page fetched: {outside:?}");
}

#[test]
fn hostile_names_render_as_text_in_chromium() {
    let interp = newest();
    let scratch = Scratch::new("html-hostile");
    let _cpu = cpu_lock();
    let (guard, ready) = start_target(&interp, "hostile.py", &[]).unwrap_or_else(|e| panic!("{e}"));
    let report = scratch.file("hostile.html");
    let out = pyrometer(&[
        "record",
        "--pid",
        &guard.pid().to_string(),
        "-f",
        "html",
        "-d",
        "3",
        "-r",
        "200",
        "--idle",
        "--threads",
        "-o",
        report.to_str().unwrap(),
    ]);
    drop(guard);
    assert!(out.status.success(), "record failed: {}", stderr_of(&out));
    let html = std::fs::read_to_string(&report).expect("the report is written");
    let names: Vec<String> = serde_json::from_value(ready["names"].clone()).unwrap();
    let file_name = ready["file_name"].as_str().unwrap().to_string();
    let thread_name = ready["thread_name"].as_str().unwrap().to_string();
    // In the file itself the names only appear JSON-escaped.
    for n in names.iter().chain([&file_name, &thread_name]) {
        assert!(!html.contains(n.as_str()), "raw markup in the file: {n}");
    }

    let mut b = Browser::launch(&scratch.0).unwrap_or_else(|e| panic!("{e}"));
    let url = file_url(
        &report,
        &format!("?text={}&q=script", url_encode(&names[0])),
        "#selftest",
    );
    let result = open_with_selftest(&mut b, &url).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(result["ok"], true, "self-test failed: {result:#}");
    for check in [
        "hostile_text_cells",
        "flame_search_hits",
        "no_pwned",
        "no_img",
        "lines_total_desc",
    ] {
        assert!(
            result["checks"].get(check).is_some(),
            "self-test did not run {check}: {result:#}"
        );
    }
    // Every hostile name is text in the function table and the flame graph.
    let functions = texts(&mut b, "#functions-table td.name");
    let flame_labels: Value = b
        .eval("JSON.parse(document.getElementById('pyrometer-data').textContent).flame.labels")
        .unwrap();
    for n in &names {
        assert!(
            functions.iter().any(|t| t == n),
            "{n} is not a function cell's text: {functions:?}"
        );
        assert!(
            flame_labels
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l.as_str().is_some_and(|l| l.starts_with(n.as_str()))),
            "{n} not in the flame graph"
        );
    }
    let threads = texts(&mut b, "#threads-table td.name");
    assert!(
        threads.iter().any(|t| t.starts_with(&thread_name)),
        "{thread_name} is not a thread cell's text: {threads:?}"
    );
    let files: Vec<String> = b
        .eval("Array.from(document.querySelectorAll('#lines-table td.file')).map(e => e.getAttribute('title'))")
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    assert!(
        files.iter().any(|f| f == &file_name),
        "{file_name} not a file of the line table: {files:?}"
    );
    // The hot line's source, with its markup comment, is text too.
    let sources = texts(&mut b, "#lines-table td.src");
    assert!(
        sources
            .iter()
            .any(|s| s.contains("onerror=window.__pwned=4")),
        "the hot source line is not shown: {sources:?}"
    );
    // Nothing the names hold ran or became an element.
    let dom = b
        .eval("[typeof window.__pwned, document.getElementsByTagName('img').length, Array.from(document.getElementsByTagName('b')).filter(e => e.textContent === 'evil').length, document.getElementsByTagName('script').length]")
        .unwrap();
    assert_eq!(
        dom,
        serde_json::json!(["undefined", 0, 0, 2]),
        "markup ran or was parsed"
    );
    // Sorting by real clicks.
    check_sort_by_click(&mut b, "lines-table", 4, 2).unwrap_or_else(|e| panic!("{e}"));
    check_sort_by_click(&mut b, "functions-table", 4, 2).unwrap_or_else(|e| panic!("{e}"));
    check_clean(&mut b, "file://");
    let shot = artifacts_dir().join("report-hostile.png");
    b.screenshot(&shot).unwrap_or_else(|e| panic!("{e}"));
    println!("screenshot: {}", shot.display());
}

#[test]
fn web_report_endpoints_flame_graphs_and_timeline_in_chromium() {
    const SLOW: &str = "GET wsgi_app.slow_view";
    let interp = newest();
    let scratch = Scratch::new("html-web");
    let report = scratch.file("web.html");
    let python = interp.path.to_string_lossy().into_owned();
    let out = {
        let _cpu = cpu_lock();
        pyrometer(&[
            "record",
            "-r",
            "500",
            "-f",
            "html",
            "-o",
            report.to_str().unwrap(),
            "--",
            &python,
            target("wsgi_app.py").to_str().unwrap(),
            "4",
        ])
    };
    assert!(out.status.success(), "record failed: {}", stderr_of(&out));

    let mut b = Browser::launch(&scratch.0).unwrap_or_else(|e| panic!("{e}"));
    let url = file_url(&report, "?q=slow_view", "#selftest");
    let result = open_with_selftest(&mut b, &url).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(result["ok"], true, "self-test failed: {result:#}");
    for check in [
        "endpoint_flame",
        "endpoint_flame_back",
        "timeline_bars",
        "flame_zoom_in",
    ] {
        assert!(
            result["checks"].get(check).is_some(),
            "self-test did not run {check}: {result:#}"
        );
    }
    // Header: target, duration, rate, samples, errors, the state split.
    let header = b
        .eval("document.getElementById('header').innerText")
        .unwrap();
    let header = header.as_str().unwrap_or("");
    for k in [
        "TARGET",
        "DURATION",
        "RATE",
        "SAMPLES",
        "ERRORS",
        "Python",
        "native",
        "waiting for GIL",
        "idle",
    ] {
        assert!(
            header.to_lowercase().contains(&k.to_lowercase()),
            "header lacks {k}: {header}"
        );
    }
    assert!(
        header.contains("wsgi_app.py"),
        "header lacks the target: {header}"
    );

    // The endpoint table: the slow view, with requests and latencies.
    let rows: Value = b
        .eval(
            "Array.from(document.querySelectorAll('#endpoints-table tbody tr')).map(tr => \
             Array.from(tr.children).map(td => td.textContent))",
        )
        .unwrap();
    let heads: Vec<String> = texts(&mut b, "#endpoints-table th");
    let col = |name: &str| heads.iter().position(|h| h.starts_with(name));
    let slow = rows
        .as_array()
        .and_then(|r| r.iter().find(|r| r[0] == SLOW))
        .unwrap_or_else(|| panic!("no {SLOW} row: {rows:#}"))
        .clone();
    let requests: u64 = slow[col("Requests").expect("Requests column")]
        .as_str()
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap();
    assert!(requests >= 5, "{SLOW}: {requests} requests");
    let p50: f64 = slow[col("p50").expect("p50 column")]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (30.0..=80.0).contains(&p50),
        "{SLOW} p50 {p50} ms (the view burns 50 ms)"
    );
    let cats = slow[col("Categories").expect("Categories column")]
        .as_str()
        .unwrap();
    assert!(cats.contains("app"), "{SLOW} categories: {cats}");
    // Sorting the endpoint table by a real click on Requests (the fast
    // endpoint is not always sampled: one row may be all there is).
    let req_col = col("Requests").unwrap();
    check_sort_by_click(&mut b, "endpoints-table", req_col, 1).unwrap_or_else(|e| panic!("{e}"));

    // A real click on the endpoint: its own flame graph.
    let index = b
        .eval(&format!(
            "Array.from(document.querySelectorAll('#endpoints-table tbody tr')).findIndex(tr => tr.children[0].textContent === {})",
            serde_json::to_string(SLOW).unwrap()
        ))
        .unwrap()
        .as_i64()
        .unwrap();
    assert!(index >= 0);
    b.click(&format!(
        "#endpoints-table tbody tr:nth-child({}) .endpoint-link",
        index + 1
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    b.wait_for(
        &format!(
            "document.getElementById('flame').getAttribute('data-endpoint') === {}",
            serde_json::to_string(SLOW).unwrap()
        ),
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let endpoint_total = b
        .eval("Number(document.getElementById('flame-svg').getAttribute('data-total'))")
        .unwrap()
        .as_f64()
        .unwrap();
    let all_total = b
        .eval("JSON.parse(document.getElementById('pyrometer-data').textContent).flame.total")
        .unwrap()
        .as_f64()
        .unwrap();
    assert!(
        endpoint_total > 0.0 && endpoint_total < all_total,
        "endpoint flame graph total {endpoint_total} of {all_total}"
    );
    let frames = texts(&mut b, "#flame-svg g.fn text");
    assert!(
        frames.iter().any(|t| t.contains("slow_view")),
        "no slow_view frame in the endpoint's flame graph: {frames:?}"
    );
    assert!(
        !frames.iter().any(|t| t.contains("load (")),
        "the client thread's frames are in the endpoint's flame graph: {frames:?}"
    );
    let crumbs = b
        .eval("document.getElementById('flame-crumbs').textContent")
        .unwrap();
    assert!(crumbs.as_str().unwrap().contains(SLOW), "{crumbs}");
    b.click("#flame-all").unwrap_or_else(|e| panic!("{e}"));
    b.wait_for(
        "document.getElementById('flame').getAttribute('data-endpoint') === ''",
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| panic!("{e}"));

    // The timeline: one bar per second of the recording, by state and process.
    let buckets = b
        .eval("document.querySelectorAll('#timeline-states g').length")
        .unwrap()
        .as_u64()
        .unwrap();
    // 4 s of serving, plus the interpreter's start on a loaded machine.
    assert!(
        (3..=12).contains(&buckets),
        "{buckets} timeline bars for 4 s"
    );
    let procs = b
        .eval("document.querySelectorAll('#timeline-processes g').length")
        .unwrap()
        .as_u64()
        .unwrap();
    assert!(procs >= 3, "{procs} process timeline bars");
    check_clean(&mut b, "file://");
    let shot = artifacts_dir().join("report.png");
    b.screenshot(&shot).unwrap_or_else(|e| panic!("{e}"));
    println!("screenshot: {}", shot.display());
}

/// The report's data document.
fn report_data(html: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(html).expect("the report");
    let open = r#"<script type="application/json" id="pyrometer-data">"#;
    let i = text.find(open).expect("a data element") + open.len();
    let j = text[i..].find("</script>").expect("the data element ends") + i;
    serde_json::from_str(&text[i..j]).expect("JSON data")
}

/// `record -f html --group-by endpoint`: the flame graph's roots are the
/// endpoints (as in `-f raw`), without the flag they are the stacks' own
/// outermost frames.
#[test]
fn group_by_endpoint_roots_the_html_flame_graph_at_endpoints() {
    let interp = one_interp();
    let _cpu = cpu_lock();
    let scratch = Scratch::new("html-group-by");
    let python = interp.path.to_string_lossy().into_owned();
    let script = target("wsgi_app.py").to_string_lossy().into_owned();
    let roots = |grouped: bool| -> (Value, Vec<String>) {
        let out_file = scratch.file(&format!("grouped-{grouped}.html"));
        let mut args = vec!["record", "-r", "200", "-f", "html", "-o"];
        let out_path = out_file.to_string_lossy().into_owned();
        args.push(&out_path);
        if grouped {
            args.extend_from_slice(&["--group-by", "endpoint"]);
        }
        args.extend_from_slice(&["--", &python, &script, "2"]);
        let out = pyrometer(&args);
        assert!(out.status.success(), "{}", stderr_of(&out));
        let d = report_data(&out_file);
        let f = &d["flame"];
        let labels = f["labels"].as_array().cloned().unwrap_or_default();
        let roots: Vec<String> = f["p"]
            .as_array()
            .into_iter()
            .flatten()
            .zip(f["n"].as_array().into_iter().flatten())
            .filter(|(p, _)| p.as_i64() == Some(0))
            .filter_map(|(_, n)| {
                labels
                    .get(n.as_u64()? as usize)?
                    .as_str()
                    .map(str::to_string)
            })
            .collect();
        (d["meta"]["endpoints_option"].clone(), roots)
    };
    let (flag, grouped) = roots(true);
    assert_eq!(flag, Value::Bool(true));
    assert!(
        grouped
            .iter()
            .any(|r| r == "endpoint (GET wsgi_app.slow_view)"),
        "{grouped:?}"
    );
    assert!(
        grouped.iter().all(|r| r.starts_with("endpoint (")),
        "{grouped:?}"
    );
    let (flag, plain) = roots(false);
    assert_eq!(flag, Value::Bool(false));
    assert!(
        plain.iter().all(|r| !r.starts_with("endpoint (")),
        "{plain:?}"
    );
    assert!(!plain.is_empty());
}
