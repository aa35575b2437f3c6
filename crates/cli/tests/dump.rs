//! `pyrometer dump` against live targets on every interpreter of the matrix
//! (pyrometer_testsupport::require_all: pyenv 3.8–3.13 and Debian's 3.11, or
//! `PYROMETER_EXPECTED_PYTHONS`).
//!
//! The targets (tests/targets/stacks.py and ünïcode_模块.py) park each
//! thread at a marked line and print, as their ready line, every thread's
//! stack as CPython itself sees it (`sys._current_frames()`, `f_lineno`,
//! `co_filename`, and names by pyrometer's rule: `co_qualname` on 3.11+,
//! `Class.method` for a first argument named self/cls on 3.8–3.10). The
//! stacks from `dump --json` must be exactly those. Frame names of the
//! targets' own functions are also checked against hardcoded expectations,
//! independently of the rule as the targets implement it.
//!
//! Every check is recorded in a matrix (interpreter × group) printed at the
//! end; the test fails with the list of every failed check.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;

const GROUPS: [&str; 10] = [
    "setup",
    "threads",
    "frames",
    "names",
    "gil/state",
    "deep",
    "max-depth",
    "text",
    "locals",
    "unicode",
];

/// The depth of the recursion in stacks.py.
const DEPTH: usize = 2000;

#[test]
fn dump_on_every_interpreter() {
    let interps = require_all();
    let _cpu = cpu_lock();
    let t0 = Instant::now();
    // Each stacks.py target keeps one thread spinning: two at a time.
    let rows = par_map(&interps, 2, |interp| {
        let mut c = Checks::new(interp);
        check_stacks(interp, &mut c);
        check_unicode(interp, &mut c);
        c
    });
    finish(
        &format!("pyrometer dump ({:.1} s)", t0.elapsed().as_secs_f64()),
        &GROUPS,
        &rows,
    );
}

/// `dump ARGS --json`, parsed.
fn dump_json(c: &mut Checks, group: &'static str, args: &[&str]) -> Option<Value> {
    let out = pyrometer(args);
    if !c.check(group, out.status.success(), || {
        format!(
            "`{}` failed ({}): {}",
            show(args),
            out.status,
            stderr_of(&out)
        )
    }) {
        return None;
    }
    match serde_json::from_slice::<Value>(&out.stdout) {
        Ok(v) => Some(v),
        Err(e) => {
            c.fail(group, format!("`{}`: output is not JSON: {e}", show(args)));
            None
        }
    }
}

/// `(name, filename, line)` of a frame of either document.
type FrameKey = (String, String, Option<i64>);

fn frame_keys(frames: &Value) -> Vec<FrameKey> {
    frames
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    (
                        f["name"].as_str().unwrap_or("<no name>").to_string(),
                        f["filename"]
                            .as_str()
                            .unwrap_or("<no filename>")
                            .to_string(),
                        f["line"].as_i64(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Describe how `got` differs from `want` (first differences only).
fn diff_frames(got: &[FrameKey], want: &[FrameKey]) -> Option<String> {
    if got == want {
        return None;
    }
    let mut out = Vec::new();
    if got.len() != want.len() {
        out.push(format!("{} frames, expected {}", got.len(), want.len()));
    }
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if g != w {
            out.push(format!(
                "frame {i}: got {} ({}:{}), expected {} ({}:{})",
                g.0,
                g.1,
                g.2.map(|l| l.to_string()).unwrap_or("null".into()),
                w.0,
                w.1,
                w.2.map(|l| l.to_string()).unwrap_or("null".into()),
            ));
            if out.len() >= 4 {
                break;
            }
        }
    }
    if out.is_empty() {
        out.push("frames differ".into());
    }
    Some(out.join("; "))
}

/// The threads of a dump by `thread_id`.
fn threads_by_id(doc: &Value) -> BTreeMap<u64, &Value> {
    doc["threads"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| Some((t["thread_id"].as_u64()?, t)))
                .collect()
        })
        .unwrap_or_default()
}

struct Compare {
    /// Group of frame checks for ordinary threads.
    frames_group: &'static str,
    /// Group of frame checks for the deep thread.
    deep_group: &'static str,
    /// `--max-depth` of the dump, if not the default.
    max_depth: Option<usize>,
    /// Check owns_gil/active/state.
    states: bool,
}

/// Compare every thread of `doc` with the target's ground truth.
fn compare_threads(c: &mut Checks, truth: &Value, doc: &Value, how: &Compare) {
    let got = threads_by_id(doc);
    let want = truth["threads"].as_array().cloned().unwrap_or_default();
    let want_ids: Vec<u64> = want.iter().filter_map(|t| t["ident"].as_u64()).collect();
    let got_ids: Vec<u64> = got.keys().copied().collect();
    let mut sorted = want_ids.clone();
    sorted.sort_unstable();
    c.check("threads", sorted == got_ids, || {
        let names = |ids: &[u64]| -> Vec<String> {
            ids.iter()
                .map(|id| {
                    want.iter()
                        .find(|t| t["ident"].as_u64() == Some(*id))
                        .and_then(|t| t["name"].as_str())
                        .map(|n| format!("{id:#x} {n}"))
                        .unwrap_or_else(|| format!("{id:#x} ?"))
                })
                .collect()
        };
        format!(
            "thread ids {:?}, expected {:?}",
            names(&got_ids),
            names(&sorted)
        )
    });
    for t in &want {
        let name = t["name"].as_str().unwrap_or("?");
        let Some(g) = t["ident"].as_u64().and_then(|id| got.get(&id)) else {
            c.fail("threads", format!("thread {name:?} missing from the dump"));
            continue;
        };
        c.eq(
            "threads",
            format!("thread {name:?} name"),
            g["name"].as_str(),
            Some(name),
        );
        c.eq(
            "threads",
            format!("thread {name:?} native_id"),
            g["native_id"].as_u64(),
            t["native_id"].as_u64(),
        );

        let mut want_frames = frame_keys(&t["frames"]);
        let full = want_frames.len();
        let mut want_truncated = false;
        if let Some(m) = how.max_depth {
            if full > m {
                want_frames.truncate(m);
                want_truncated = true;
            }
        }
        let got_frames = frame_keys(&g["frames"]);
        let group = if name == "deep" {
            how.deep_group
        } else {
            how.frames_group
        };
        let diff = diff_frames(&got_frames, &want_frames);
        c.check(group, diff.is_none(), || {
            format!("thread {name:?}: {}", diff.unwrap_or_default())
        });
        c.eq(
            group,
            format!("thread {name:?} truncated"),
            g["truncated"].as_bool(),
            Some(want_truncated),
        );
        if name == "deep" && how.max_depth.is_none() {
            let dives = got_frames.iter().filter(|f| f.0 == "dive").count();
            c.eq("deep", "dive frames", dives, DEPTH + 1);
            c.check("deep", got_frames.len() > DEPTH, || {
                format!("only {} frames", got_frames.len())
            });
        }

        if how.states {
            let blocked = t["blocked"].as_bool().unwrap_or(true);
            let (gil, active, state) = if blocked {
                (false, false, "idle")
            } else {
                (true, true, "python")
            };
            let what = if blocked { "blocked" } else { "busy" };
            c.eq(
                "gil/state",
                format!("{what} thread {name:?} owns_gil"),
                g["owns_gil"].as_bool(),
                Some(gil),
            );
            c.eq(
                "gil/state",
                format!("{what} thread {name:?} active"),
                g["active"].as_bool(),
                Some(active),
            );
            c.eq(
                "gil/state",
                format!("{what} thread {name:?} state"),
                g["state"].as_str(),
                Some(state),
            );
        }
    }
}

/// The names pyrometer must give the innermost frames of each stacks.py
/// thread, written out by hand for each version (a check of the rule
/// itself, independent of how _truth.py implements it).
fn expected_names(minor: u8, thread: &str) -> Vec<String> {
    let q = minor >= 11;
    let lambda = if q {
        "main.<locals>.<lambda>"
    } else {
        "<lambda>"
    };
    let boot = ["Thread.run", "Thread._bootstrap_inner", "Thread._bootstrap"];
    let v: Vec<&str> = match thread {
        "MainThread" => vec![
            "apply_tax",
            "Shop._total",
            "Shop.checkout",
            "main",
            "<module>",
        ],
        "worker-α" => [
            &["Condition.wait", "Event.wait", "ticker", "consume"][..],
            &boot,
        ]
        .concat(),
        "asyncio" => vec!["fetch", "gather_all", "Handle._run"],
        "lambda" => match minor {
            ..=10 => [&["slow", "<listcomp>", "<lambda>", "run_lambda"][..], &boot].concat(),
            11 => [
                &[
                    "slow",
                    "<lambda>.<locals>.<listcomp>",
                    "<lambda>",
                    "run_lambda",
                ][..],
                &boot,
            ]
            .concat(),
            // PEP 709: the comprehension is inlined into the lambda.
            _ => [&["slow", "<lambda>", "run_lambda"][..], &boot].concat(),
        },
        "static" => [
            &[
                "Tools.build",
                if q { "Tools.helper" } else { "helper" },
                lambda,
            ][..],
            &boot,
        ]
        .concat(),
        "closure" => [&["Holder.hold", lambda][..], &boot].concat(),
        "deep" => {
            let mut v = vec!["dive"; DEPTH + 1];
            v.push(lambda);
            v.extend(boot);
            v
        }
        "busy" => [&["spin"][..], &boot].concat(),
        "reporter" => [
            &[if q { "main.<locals>.report" } else { "report" }][..],
            &boot,
        ]
        .concat(),
        _ => vec![],
    };
    v.into_iter().map(String::from).collect()
}

fn check_names(c: &mut Checks, minor: u8, doc: &Value) {
    for g in threads_by_id(doc).values() {
        let thread = g["name"].as_str().unwrap_or("?");
        let want = expected_names(minor, thread);
        if want.is_empty() {
            c.fail("names", format!("unexpected thread {thread:?}"));
            continue;
        }
        let got: Vec<String> = frame_keys(&g["frames"])
            .into_iter()
            .map(|f| f.0)
            .take(want.len())
            .collect();
        let ok = got == want;
        c.check("names", ok, || {
            let first = got
                .iter()
                .zip(&want)
                .position(|(g, w)| g != w)
                .unwrap_or(got.len().min(want.len()));
            format!(
                "thread {thread:?}: innermost names {:?}, expected {:?} (first difference at frame {first})",
                &got[..got.len().min(first + 3)],
                &want[..want.len().min(first + 3)]
            )
        });
        if thread == "asyncio" {
            let all: Vec<String> = frame_keys(&g["frames"]).into_iter().map(|f| f.0).collect();
            c.check("names", all.iter().any(|n| n == "run_loop"), || {
                format!("thread \"asyncio\": no run_loop frame in {all:?}")
            });
        }
    }
}

/// The text dump must show the same threads and frames as the ground truth:
/// one block per thread, a header and one `    name (file:line)` per frame.
fn check_text(c: &mut Checks, group: &'static str, pid: &str, truth: &Value, states: bool) {
    let args = ["dump", "--pid", pid];
    let out = pyrometer(&args);
    if !c.check(group, out.status.success(), || {
        format!(
            "`{}` failed ({}): {}",
            show(&args),
            out.status,
            stderr_of(&out)
        )
    }) {
        return;
    }
    let text = stdout_of(&out);
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("");
    c.check(
        group,
        first.starts_with(&format!("Process {pid}: ")),
        || format!("first line {first:?}"),
    );
    let version = truth["version"].as_str().unwrap_or("?");
    let second = lines.next().unwrap_or("");
    c.check(
        group,
        second.starts_with(&format!("Python v{version} (")),
        || format!("second line {second:?}, expected Python v{version} (...)"),
    );
    // Blocks separated by blank lines.
    let mut blocks: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in lines {
        if line.is_empty() {
            current = None;
        } else if let Some(h) = &current {
            blocks.get_mut(h).unwrap().push(line.to_string());
        } else {
            current = Some(line.to_string());
            blocks.insert(line.to_string(), Vec::new());
        }
    }
    for t in truth["threads"].as_array().into_iter().flatten() {
        let name = t["name"].as_str().unwrap_or("?");
        let blocked = t["blocked"].as_bool().unwrap_or(true);
        let prefix = format!(
            "Thread {:#x} native {} (",
            t["ident"].as_u64().unwrap_or(0),
            t["native_id"].as_u64().unwrap_or(0)
        );
        let Some((header, body)) = blocks.iter().find(|(h, _)| h.starts_with(&prefix)) else {
            c.fail(group, format!("no block for thread {name:?} ({prefix}...)"));
            continue;
        };
        if states {
            let status = if blocked { "idle" } else { "active+gil" };
            c.eq(
                group,
                format!("thread {name:?} header"),
                header.as_str(),
                format!("{prefix}{status}) \"{name}\"").as_str(),
            );
        } else {
            c.check(group, header.ends_with(&format!(") \"{name}\"")), || {
                format!("thread {name:?} header {header:?}")
            });
        }
        let want: Vec<String> = frame_keys(&t["frames"])
            .iter()
            .map(|(n, f, l)| format!("    {n} ({f}:{})", l.unwrap_or(0)))
            .collect();
        let first_diff = body.iter().zip(&want).position(|(g, w)| g != w);
        c.check(group, body == &want, || {
            format!(
                "thread {name:?}: {} frame lines, expected {}; first difference: {:?}",
                body.len(),
                want.len(),
                first_diff.map(|i| (&body[i], &want[i]))
            )
        });
    }
    c.eq(
        group,
        "number of thread blocks",
        blocks.len(),
        truth["threads"].as_array().map_or(0, Vec::len),
    );
}

fn check_stacks(interp: &Interp, c: &mut Checks) {
    let (guard, truth) = match start_target(interp, "stacks.py", &[]) {
        Ok(x) => x,
        Err(e) => {
            c.fail("setup", e);
            return;
        }
    };
    let pid = guard.pid().to_string();
    c.eq(
        "setup",
        "target version",
        truth["version"].as_str(),
        Some(interp.version_string().as_str()),
    );

    // Exact stacks, thread names and states.
    if let Some(doc) = dump_json(c, "frames", &["dump", "--pid", &pid, "--json"]) {
        c.eq(
            "setup",
            "pid",
            doc["pid"].as_i64(),
            Some(i64::from(guard.pid())),
        );
        c.eq(
            "setup",
            "python_version",
            doc["python_version"].as_str(),
            truth["version"].as_str(),
        );
        compare_threads(
            c,
            &truth,
            &doc,
            &Compare {
                frames_group: "frames",
                deep_group: "deep",
                max_depth: None,
                states: true,
            },
        );
        check_names(c, interp.version.1, &doc);
    }

    // --max-depth 100: the deep thread is cut (innermost 100 frames kept).
    if let Some(doc) = dump_json(
        c,
        "max-depth",
        &["dump", "--pid", &pid, "--json", "--max-depth", "100"],
    ) {
        compare_threads(
            c,
            &truth,
            &doc,
            &Compare {
                frames_group: "max-depth",
                deep_group: "max-depth",
                max_depth: Some(100),
                states: false,
            },
        );
        let deep = threads_by_id(&doc)
            .values()
            .find(|t| t["name"] == "deep")
            .map(|t| {
                (
                    t["frames"].as_array().map_or(0, Vec::len),
                    t["truncated"].clone(),
                )
            });
        c.eq(
            "max-depth",
            "deep thread (frames, truncated)",
            deep,
            Some((100, Value::Bool(true))),
        );
    }

    check_text(c, "text", &pid, &truth, true);

    // --locals: an int, a str and a list (and the str argument).
    if let Some(doc) = dump_json(c, "locals", &["dump", "--pid", &pid, "--json", "--locals"]) {
        let spec = &truth["locals"];
        let main = threads_by_id(&doc)
            .values()
            .find(|t| t["name"] == spec["thread"])
            .copied()
            .cloned();
        let frame = main.as_ref().map(|t| t["frames"][0].clone());
        match frame {
            Some(f) if f["name"] == spec["function"] => {
                let got: BTreeMap<String, String> = f["locals"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|v| {
                        (
                            v["name"].as_str().unwrap_or("?").to_string(),
                            v["value"].as_str().unwrap_or("<not a string>").to_string(),
                        )
                    })
                    .collect();
                let want: BTreeMap<String, String> = spec["values"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("?").to_string()))
                    .collect();
                c.eq("locals", "locals of apply_tax", got, want);
            }
            other => c.fail(
                "locals",
                format!(
                    "innermost frame of {} is {:?}, expected {}",
                    spec["thread"],
                    other.map(|f| f["name"].clone()),
                    spec["function"]
                ),
            ),
        }
        // Every frame of every thread has a locals list.
        let missing = threads_by_id(&doc)
            .values()
            .flat_map(|t| t["frames"].as_array().cloned().unwrap_or_default())
            .filter(|f| !f["locals"].is_array())
            .count();
        c.eq("locals", "frames without a locals list", missing, 0);
    }
    drop(guard);
}

fn check_unicode(interp: &Interp, c: &mut Checks) {
    let (guard, truth) = match start_target(interp, "ünïcode_模块.py", &[]) {
        Ok(x) => x,
        Err(e) => {
            c.fail("unicode", e);
            return;
        }
    };
    let pid = guard.pid().to_string();
    if let Some(doc) = dump_json(c, "unicode", &["dump", "--pid", &pid, "--json"]) {
        compare_threads(
            c,
            &truth,
            &doc,
            &Compare {
                frames_group: "unicode",
                deep_group: "unicode",
                max_depth: None,
                states: true,
            },
        );
        let q = interp.version.1 >= 11;
        let file = target("ünïcode_模块.py").display().to_string();
        for t in threads_by_id(&doc).values() {
            let names: Vec<&str> = t["frames"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["name"].as_str())
                .collect();
            let want: &[&str] = match t["name"].as_str() {
                Some("工作者-α") => &[
                    "计算",
                    "类.方法",
                    if q {
                        "main.<locals>.<lambda>"
                    } else {
                        "<lambda>"
                    },
                ],
                Some("MainThread") => &["计算", "main", "<module>"],
                _ => &[],
            };
            c.check("unicode", names.starts_with(want), || {
                format!(
                    "thread {}: names {names:?}, expected {want:?} first",
                    t["name"]
                )
            });
            if !want.is_empty() {
                c.eq(
                    "unicode",
                    format!("thread {} innermost file", t["name"]),
                    t["frames"][0]["filename"].as_str(),
                    Some(file.as_str()),
                );
            }
        }
    }
    check_text(c, "unicode", &pid, &truth, true);
    drop(guard);
}

// ---------------------------------------------------------------------------
// Errors

/// A PID that no process has: a child that was started and reaped.
fn free_pid() -> i32 {
    let mut child = std::process::Command::new("true").spawn().expect("true");
    let pid = child.id() as i32;
    child.wait().expect("wait");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "PID {pid} was reused at once"
    );
    pid
}

#[test]
fn dump_errors() {
    let mut failures = Vec::new();
    let mut expect = |args: &[&str], code: i32, needles: &[&str]| {
        let t0 = Instant::now();
        let out = pyrometer(args);
        let err = stderr_of(&out);
        let mut bad = Vec::new();
        if out.status.code() != Some(code) {
            bad.push(format!("exit status {}, expected {code}", out.status));
        }
        for n in needles {
            if !err.contains(n) {
                bad.push(format!("stderr lacks {n:?}"));
            }
        }
        if !out.stdout.is_empty() {
            bad.push(format!("unexpected stdout {:?}", stdout_of(&out)));
        }
        if t0.elapsed() > Duration::from_secs(10) {
            bad.push(format!("took {:?}", t0.elapsed()));
        }
        println!("`{}` -> {}: {}", show(args), out.status, err.trim());
        if !bad.is_empty() {
            failures.push(format!(
                "`{}`: {}; stderr: {err}",
                show(args),
                bad.join(", ")
            ));
        }
    };

    expect(
        &["dump", "--pid", "999999999"],
        EXIT_NO_PROCESS,
        &[
            "pyrometer: error:",
            "999999999",
            "no process with PID 999999999",
        ],
    );
    let gone = free_pid().to_string();
    expect(
        &["dump", "--pid", &gone],
        EXIT_NO_PROCESS,
        &["pyrometer: error:", &format!("no process with PID {gone}")],
    );
    expect(
        &["dump", "--pid", "0"],
        EXIT_NO_PROCESS,
        &["0 is not a valid PID"],
    );
    expect(
        &["dump", "--pid=-5"],
        EXIT_NO_PROCESS,
        &["-5 is not a valid PID"],
    );
    // `-5` alone reads as a flag: a usage error from clap.
    expect(&["dump", "--pid", "-5"], EXIT_USAGE, &["error:", "-5"]);

    // A process that is not Python.
    let sleep = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("sleep");
    let sleep = ChildGuard::new(sleep);
    // Let exec finish so that /proc/PID/exe is sleep, not the test binary.
    let exe = format!("/proc/{}/exe", sleep.pid());
    let t0 = Instant::now();
    while std::fs::read_link(&exe).map_or(true, |p| !p.to_string_lossy().contains("sleep"))
        && t0.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = sleep.pid().to_string();
    expect(
        &["dump", "--pid", &pid],
        EXIT_NOT_PYTHON,
        &["does not look like a Python", &pid],
    );
    drop(sleep);

    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
