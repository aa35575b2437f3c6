//! `pyrometer record` on every interpreter of the matrix
//! (pyrometer_testsupport::require_all).
//!
//! * accuracy: tests/targets/split.py spends its CPU time 3:1 in `heavy`
//!   and `light` by construction (it measures that itself); recorded at
//!   200 Hz until the target has had 2.4 s of CPU (however long a loaded
//!   machine makes that), 75 % ± 5 points of the samples whose leaf is one
//!   of them must be in `heavy`;
//! * launch mode: `record -- python split.py 1 cpu` ends when the target
//!   exits and writes its file;
//! * outputs and flags against tests/targets/mixed.py (a busy thread, a
//!   sleeping one): speedscope, flame graph, folded stacks, `--threads`,
//!   `--idle`, `--nolineno`, checked against the target's own stacks;
//! * errors: an unwritable output is refused before sampling.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// split.py's functions, with their share of its CPU time.
const HEAVY: &str = "heavy";
const LIGHT: &str = "light";
const WANT_SHARE: f64 = 0.75;
const TOLERANCE: f64 = 0.05;

/// How far the target's own CPU time measurement may be from 3:1.
///
/// The bound is 3 ± 10 %: the script's own timing of 2.5 ms calls with
/// `thread_time()` read 2.76 for 3.10 in one CI run with seven interpreters
/// running at once (while the profile of the same run gave 75.6 %, 3.1:1),
/// so it is a sanity check of the construction (a 2:1 or 4:1 target still
/// fails it), not the measure of the split, which the sampled share is.
fn construction_ok(ratio: f64) -> bool {
    (2.7..=3.3).contains(&ratio)
}

/// Leaf counts of folded stacks: (heavy, light, other).
fn leaf_counts(folded: &[(Vec<String>, u64)]) -> (u64, u64, u64) {
    let (mut h, mut l, mut o) = (0, 0, 0);
    for (stack, n) in folded {
        match stack.last().map(|f| folded_name(f)) {
            Some(HEAVY) => h += n,
            Some(LIGHT) => l += n,
            _ => o += n,
        }
    }
    (h, l, o)
}

fn read_folded(
    c: &mut Checks,
    group: &'static str,
    path: &Path,
) -> Option<Vec<(Vec<String>, u64)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            c.fail(group, format!("cannot read {}: {e}", path.display()));
            return None;
        }
    };
    match parse_folded(&text) {
        Ok(f) => Some(f),
        Err(e) => {
            c.fail(group, e);
            None
        }
    }
}

#[test]
fn record_split_ratio_on_every_interpreter() {
    let interps = require_all();
    let _cpu = cpu_lock();
    let scratch = Scratch::new("ratio");
    let t0 = Instant::now();
    // Each target keeps a CPU busy: two at a time on two cores.
    let rows = par_map(&interps, 2, |interp| {
        let mut c = Checks::new(interp);
        ratio_one(interp, &scratch, &mut c);
        c
    });
    finish(
        &format!(
            "pyrometer record: 3:1 split at 200 Hz ({:.1} s)",
            t0.elapsed().as_secs_f64()
        ),
        &["setup", "construction", "record", "ratio"],
        &rows,
    );
}

/// CPU time the target must get while recorded: about 24 heavy+light cycles
/// of split.py (98 ms each), so that where the recording starts and stops
/// in a cycle moves the share by under a point. On a quiet machine that is
/// 2.4 s; on a loaded one the recording lasts as long as it takes.
const CPU_NEEDED: f64 = 2.4;
/// Longest a recording may wait for that (the target alternates for at
/// most the 120 s it is given).
const CPU_DEADLINE: Duration = Duration::from_secs(90);
/// Below this much CPU time (10 cycles) the share says nothing.
const CPU_MINIMUM: f64 = 1.0;

fn ratio_one(interp: &Interp, scratch: &Scratch, c: &mut Checks) {
    let (mut guard, ready) = match start_target(interp, "split.py", &["120"]) {
        Ok(x) => x,
        Err(e) => {
            c.fail("setup", e);
            return;
        }
    };
    let cal = ready["calibration"]["ratio"].as_f64().unwrap_or(0.0);
    c.check("construction", construction_ok(cal), || {
        format!("calibration: heavy/light CPU time {cal:.3}, expected 3 ± 0.3 (median over alternations; {})", ready["calibration"])
    });

    let out_file = scratch.file(&format!("{}.txt", interp.label));
    let target_pid = guard.pid();
    let pid = target_pid.to_string();
    let args = [
        "record",
        "--pid",
        &pid,
        "-r",
        "200",
        "-f",
        "raw",
        "--quiet",
        "-o",
        out_file.to_str().unwrap(),
    ];
    // Record until the target has had CPU_NEEDED of CPU (not for a fixed
    // wall time: a loaded machine may give it a tenth of a CPU), then
    // Ctrl-C pyrometer and end the target's profiled part (SIGUSR1).
    let rec = Background::start(&args);
    let (cpu_got, wall) = match wait_sampling(rec.pid()) {
        Ok(()) => {
            let cpu0 = load::cpu_seconds(target_pid).unwrap_or(0.0);
            load::wait_for_cpu(target_pid, cpu0, CPU_NEEDED, CPU_DEADLINE)
        }
        Err(e) => {
            c.fail("record", e);
            (0.0, Duration::ZERO)
        }
    };
    rec.signal(libc::SIGINT);
    let finished = rec.wait(RUN_TIMEOUT);
    // SAFETY: kill(2) of the target this test started and still holds.
    unsafe { libc::kill(target_pid, libc::SIGUSR1) };
    let ok = match &finished {
        Ok(f) => c.check("record", f.status.success(), || {
            format!("`{}` failed ({}): {}", show(&args), f.status, f.stderr)
        }),
        Err(e) => {
            c.fail("record", format!("`{}`: {e}", show(&args)));
            false
        }
    };
    let load_note = format!(
        "the target had {cpu_got:.2} s of CPU in {:.1} s recorded ({:.0} % of a CPU); load average {}",
        wall.as_secs_f64(),
        100.0 * cpu_got / wall.as_secs_f64().max(1e-9),
        load::loadavg()
    );
    c.note(load_note.clone());

    // The target's own measurement after the profiled part.
    match guard.next_line(Duration::from_secs(30)) {
        Ok(line) => {
            let m: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            let r = m["measured"]["ratio"].as_f64().unwrap_or(0.0);
            c.check("construction", construction_ok(r), || {
                format!("after the profiled part: heavy/light CPU time {r:.3}, expected 3 ± 0.3 ({line})")
            });
            c.note(format!(
                "CPU time heavy/light: before {cal:.3}, after {r:.3}; {} alternations profiled",
                m["calls"]
            ));
        }
        Err(e) => c.fail("construction", format!("no final measurement: {e}")),
    }
    let _ = guard.wait_timeout(Duration::from_secs(15));
    let Ok(finished) = finished else {
        return;
    };
    if !ok {
        return;
    }
    // Too little CPU in the whole deadline: the machine, not pyrometer, is
    // at fault, but the test cannot tell a right share from a wrong one.
    if !c.check("record", cpu_got >= CPU_MINIMUM, || {
        format!("the target got only {cpu_got:.2} s of CPU within {CPU_DEADLINE:?} ({CPU_MINIMUM} s needed at least): the machine is overloaded")
    }) {
        return;
    }
    let Some(folded) = read_folded(c, "record", &out_file) else {
        return;
    };
    let (h, l, o) = leaf_counts(&folded);
    let total = h + l;
    let share = h as f64 / total.max(1) as f64;
    c.note(format!(
        "samples: heavy {h}, light {l}, other leaves {o}: heavy share {:.1} %",
        100.0 * share
    ));
    // The error from the cycles cut at both ends shrinks with the cycles
    // recorded: the band widens (to at most 8 points) only when the
    // deadline cut the CPU short. A sampler biased towards one function
    // (a share off by 10 points) fails either way.
    let tolerance = TOLERANCE * (CPU_NEEDED / cpu_got).sqrt().clamp(1.0, 1.6);
    c.check("ratio", (share - WANT_SHARE).abs() <= tolerance, || {
        format!(
            "heavy share {:.1} % (heavy {h}, light {l}), expected {:.0} % ± {:.1} points",
            100.0 * share,
            100.0 * WANT_SHARE,
            100.0 * tolerance
        ) + &format!(" ({load_note})")
    });
    // The samples pyrometer took are the ticks it made: the clock accounts
    // for every tick (made or skipped as late), and each tick made sampled
    // the busy thread. A loaded machine means more late ticks, not fewer
    // samples per tick; a lost or unsampled tick fails.
    match load::TickSummary::parse(&finished.stderr) {
        Some(t) => {
            if let Err(e) = t.ticks_accounted().and(t.every_tick_sampled(total + o, 1)) {
                c.fail("record", format!("{e}; summary: {}", finished.stderr));
            }
        }
        None => c.fail("record", format!("no tick summary in: {}", finished.stderr)),
    }
    // Enough samples for the share: at least 2.4 s at 200 Hz were recorded
    // (480 ticks), and more on a loaded machine.
    c.check("record", total >= 300, || {
        format!("only {total} samples in heavy or light (at least 300 required; {load_note})")
    });
    c.check("record", o * 20 <= total, || {
        format!("{o} samples with another leaf, against {total} in heavy or light")
    });
    let files: Vec<&str> = folded
        .iter()
        .filter_map(|(s, _)| s.last())
        .filter(|f| [HEAVY, LIGHT].contains(&folded_name(f)))
        .map(|f| f.rsplit_once(" (").map_or("", |(_, r)| r))
        .filter(|r| !r.starts_with("split.py:"))
        .collect();
    c.check("record", files.is_empty(), || {
        format!("heavy/light frames not in split.py: {files:?}")
    });
}

#[test]
fn record_launch_mode_on_every_interpreter() {
    let interps = require_all();
    let _cpu = cpu_lock();
    let scratch = Scratch::new("launch");
    let t0 = Instant::now();
    let rows = par_map(&interps, 2, |interp| {
        let mut c = Checks::new(interp);
        launch_one(interp, &scratch, &mut c);
        c
    });
    finish(
        &format!(
            "pyrometer record -- python split.py 1 cpu ({:.1} s)",
            t0.elapsed().as_secs_f64()
        ),
        &["launch", "samples"],
        &rows,
    );
}

fn launch_one(interp: &Interp, scratch: &Scratch, c: &mut Checks) {
    let out_file = scratch.file(&format!("{}.txt", interp.label));
    let script = target("split.py");
    let args = [
        "record",
        "-r",
        "200",
        "-f",
        "raw",
        "--quiet",
        "-o",
        out_file.to_str().unwrap(),
        "--",
        interp.path.to_str().unwrap(),
        script.to_str().unwrap(),
        // 1 s of its CPU time alternating, however long a loaded machine
        // makes that.
        "1",
        "cpu",
    ];
    let t0 = Instant::now();
    let out = pyrometer(&args);
    let secs = t0.elapsed().as_secs_f64();
    let err = stderr_of(&out);
    if !c.check("launch", out.status.success(), || {
        format!("`{}` failed ({}): {err}", show(&args), out.status)
    }) {
        return;
    }
    c.check("launch", err.contains("stopped: target exited"), || {
        format!("stderr does not say the target exited: {err}")
    });
    c.check(
        "launch",
        err.contains(&format!("wrote folded stacks to {}", out_file.display())),
        || format!("stderr does not name the output: {err}"),
    );
    // The target's stdout went through: its last line is the measurement,
    // with how long its script ran.
    let stdout = stdout_of(&out);
    c.check("launch", stdout.contains("\"measured\""), || {
        format!("the target's output is missing: {stdout:?}")
    });
    let ran = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok()?["seconds"].as_f64());
    // The script runs ~2.5 s on a quiet machine (0.6 s of calibration, 1 s,
    // 0.6 s of measurement), longer on a loaded one: record ends with it,
    // not before, and not much after (interpreter start-up and exit, the
    // output written).
    c.check(
        "launch",
        ran.is_some_and(|r| r >= 2.0 && secs >= r && secs <= r + 8.0),
        || format!("record took {secs:.1} s for a target whose script ran {ran:?} s"),
    );
    let Some(folded) = read_folded(c, "samples", &out_file) else {
        return;
    };
    let (h, l, o) = leaf_counts(&folded);
    let share = h as f64 / (h + l).max(1) as f64;
    c.note(format!(
        "launch: {secs:.1} s (the script {ran:.1?} s), heavy {h}, light {l}, other leaves {o}: heavy share {:.1} %",
        100.0 * share
    ));
    c.check("samples", h > 0 && l > 0, || {
        format!("heavy {h}, light {l}")
    });
    // About 2.2 s of alternation at 200 Hz; the module-level frames of the
    // start-up are there too.
    c.check("samples", h + l >= 250, || {
        format!("only {} samples in heavy or light", h + l)
    });
    // Fewer samples than the attach test: a looser bound.
    c.check(
        "samples",
        (share - WANT_SHARE).abs() <= 2.0 * TOLERANCE,
        || format!("heavy share {:.1} % (heavy {h}, light {l})", 100.0 * share),
    );
    let has_module = folded.iter().any(|(s, _)| {
        s.first()
            .is_some_and(|f| f.starts_with("<module> (split.py:"))
    });
    c.check("samples", has_module, || {
        "no stack rooted at <module> (split.py:...)".to_string()
    });
}

// ---------------------------------------------------------------------------
// Outputs and flags

const FLAG_GROUPS: [&str; 7] = [
    "setup",
    "raw",
    "idle",
    "threads",
    "nolineno",
    "speedscope",
    "flamegraph",
];

#[test]
fn record_outputs_and_flags_on_every_interpreter() {
    let interps = require_all();
    let _cpu = cpu_lock();
    let scratch = Scratch::new("flags");
    let t0 = Instant::now();
    let rows = par_map(&interps, 2, |interp| {
        let mut c = Checks::new(interp);
        flags_one(interp, &scratch, &mut c);
        c
    });
    finish(
        &format!(
            "pyrometer record: outputs and flags ({:.1} s)",
            t0.elapsed().as_secs_f64()
        ),
        &FLAG_GROUPS,
        &rows,
    );
}

/// A frame as folded output shows it: `name (file.py:line)`.
fn folded_frame(f: &Value, lines: bool) -> String {
    let file = f["filename"].as_str().unwrap_or("?");
    let base = file.rsplit('/').next().unwrap_or(file);
    let name = f["name"].as_str().unwrap_or("?");
    if lines {
        format!("{name} ({base}:{})", f["line"])
    } else {
        format!("{name} ({base})")
    }
}

/// A thread of the target's ground truth as a folded stack (root first).
fn folded_stack(thread: &Value, lines: bool) -> Vec<String> {
    let mut v: Vec<String> = thread["frames"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| folded_frame(f, lines))
        .collect();
    v.reverse();
    v
}

fn flags_one(interp: &Interp, scratch: &Scratch, c: &mut Checks) {
    let (guard, truth) = match start_target(interp, "mixed.py", &[]) {
        Ok(x) => x,
        Err(e) => {
            c.fail("setup", e);
            return;
        }
    };
    let pid = guard.pid().to_string();
    let thread = |name: &str| -> Value {
        truth["threads"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let cruncher = thread("cruncher");
    let sleeper = thread("sleeper");
    let main = thread("MainThread");

    // All six recordings at once, one second each.
    let runs: [(&'static str, &str, &[&str]); 6] = [
        ("raw", "txt", &["-f", "raw"]),
        ("idle", "txt", &["-f", "raw", "--idle"]),
        ("threads", "txt", &["-f", "raw", "--threads"]),
        ("nolineno", "txt", &["-f", "raw", "--nolineno"]),
        ("speedscope", "json", &["-f", "speedscope"]),
        ("flamegraph", "svg", &["-f", "flamegraph"]),
    ];
    let results = par_map(&runs, runs.len(), |(group, ext, flags)| {
        let file = scratch.file(&format!("{}-{group}.{ext}", interp.label));
        let mut args: Vec<String> = ["record", "--pid", &pid, "-d", "1", "--quiet", "-o"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(file.display().to_string());
        args.extend(flags.iter().map(|s| s.to_string()));
        let out = pyrometer(&args);
        (args, out, file)
    });
    let mut files = BTreeMap::new();
    for ((group, _, _), (args, out, file)) in runs.iter().zip(results) {
        if c.check(group, out.status.success(), || {
            format!(
                "`{}` failed ({}): {}",
                show(&args),
                out.status,
                stderr_of(&out)
            )
        }) {
            match std::fs::read_to_string(&file) {
                Ok(t) => {
                    files.insert(*group, t);
                }
                Err(e) => c.fail(group, format!("cannot read {}: {e}", file.display())),
            }
        }
    }
    drop(guard);

    let stacks_of = |c: &mut Checks, group: &'static str| -> Option<Vec<(Vec<String>, u64)>> {
        match parse_folded(files.get(group)?) {
            Ok(f) => Some(f),
            Err(e) => {
                c.fail(group, e);
                None
            }
        }
    };
    let busy = folded_stack(&cruncher, true);
    // At 100 Hz for 1 s: about 100 samples per thread.
    let enough = |n: u64| n >= 50;

    // Default: only the busy thread, exactly its stack.
    if let Some(f) = stacks_of(c, "raw") {
        let stacks: Vec<&Vec<String>> = f.iter().map(|(s, _)| s).collect();
        c.eq("raw", "stacks (idle threads left out)", stacks, vec![&busy]);
        let n: u64 = f.iter().map(|(_, n)| n).sum();
        c.check("raw", enough(n), || format!("only {n} samples"));
    }

    // --idle: the sleeping threads too.
    if let Some(f) = stacks_of(c, "idle") {
        let mut got: Vec<&Vec<String>> = f.iter().map(|(s, _)| s).collect();
        got.sort();
        let nap = folded_stack(&sleeper, true);
        let main = folded_stack(&main, true);
        let mut want = vec![&busy, &nap, &main];
        want.sort();
        c.eq("idle", "stacks with --idle", got, want);
        for (s, n) in &f {
            c.check("idle", enough(*n), || format!("only {n} samples of {s:?}"));
        }
    }

    // --threads: a `thread (NAME ...)` root frame.
    if let Some(f) = stacks_of(c, "threads") {
        c.eq("threads", "number of stacks", f.len(), 1);
        let native = cruncher["native_id"].to_string();
        for (s, _) in &f {
            let root = s.first().map(String::as_str).unwrap_or("");
            c.check(
                "threads",
                root.starts_with("thread (cruncher") && root.contains(&native),
                || format!("root frame {root:?}, expected thread (cruncher ... {native} ...)"),
            );
            c.eq(
                "threads",
                "frames under the thread frame",
                &s[1..],
                &busy[..],
            );
        }
    }

    // --nolineno: no `:NN`.
    if let Some(f) = stacks_of(c, "nolineno") {
        let want = folded_stack(&cruncher, false);
        let stacks: Vec<&Vec<String>> = f.iter().map(|(s, _)| s).collect();
        c.eq("nolineno", "stacks", stacks, vec![&want]);
        let with_line: Vec<&String> = f
            .iter()
            .flat_map(|(s, _)| s)
            .filter(|fr| {
                fr.strip_suffix(')')
                    .and_then(|x| x.rsplit_once(':'))
                    .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .collect();
        c.check("nolineno", with_line.is_empty(), || {
            format!("frames with line numbers: {with_line:?}")
        });
    }

    // speedscope: valid JSON, `shared.frames`, `profiles`, the busy stack.
    if let Some(text) = files.get("speedscope") {
        check_speedscope(c, text, &cruncher);
    }

    // flamegraph: an SVG naming the functions.
    if let Some(svg) = files.get("flamegraph") {
        let svg = svg.trim();
        c.check(
            "flamegraph",
            svg.starts_with("<?xml") && svg.contains("<svg") && svg.ends_with("</svg>"),
            || format!("not an SVG document: {:?}...", &svg[..svg.len().min(200)]),
        );
        for name in ["busy_loop", "Thread.run", "Thread._bootstrap"] {
            c.check("flamegraph", svg.contains(name), || {
                format!("the SVG does not mention {name}")
            });
        }
        c.check("flamegraph", !svg.contains("nap ("), || {
            "the SVG shows the idle thread without --idle".to_string()
        });
    }
}

fn check_speedscope(c: &mut Checks, text: &str, cruncher: &Value) {
    let doc: Value = match serde_json::from_str(text) {
        Ok(d) => d,
        Err(e) => {
            c.fail("speedscope", format!("not JSON: {e}"));
            return;
        }
    };
    c.eq(
        "speedscope",
        "$schema",
        doc["$schema"].as_str(),
        Some("https://www.speedscope.app/file-format-schema.json"),
    );
    let frames = doc["shared"]["frames"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    c.check("speedscope", !frames.is_empty(), || {
        "no shared.frames".into()
    });
    c.check(
        "speedscope",
        frames.iter().all(|f| f["name"].is_string()),
        || "a frame without a name".into(),
    );
    let profiles = doc["profiles"].as_array().cloned().unwrap_or_default();
    c.eq(
        "speedscope",
        "number of profiles (one busy thread)",
        profiles.len(),
        1,
    );
    let want: Vec<(String, String, Value)> = folded_stack_frames(cruncher);
    for p in &profiles {
        c.eq(
            "speedscope",
            "profile type",
            p["type"].as_str(),
            Some("sampled"),
        );
        let name = p["name"].as_str().unwrap_or("");
        c.check("speedscope", name.starts_with("cruncher"), || {
            format!("profile name {name:?}")
        });
        let samples = p["samples"].as_array().cloned().unwrap_or_default();
        let weights = p["weights"].as_array().cloned().unwrap_or_default();
        c.eq(
            "speedscope",
            "samples vs weights",
            samples.len(),
            weights.len(),
        );
        c.check("speedscope", !samples.is_empty(), || "no samples".into());
        for s in &samples {
            let got: Option<Vec<(String, String, Value)>> = s
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| {
                    let f = frames.get(i.as_u64()? as usize)?;
                    Some((
                        f["name"].as_str()?.to_string(),
                        f["file"].as_str()?.to_string(),
                        f["line"].clone(),
                    ))
                })
                .collect();
            c.eq(
                "speedscope",
                "a sample's stack (root first)",
                got,
                Some(want.clone()),
            );
        }
    }
}

/// `(name, file, line)` root first, as speedscope frames show them.
fn folded_stack_frames(thread: &Value) -> Vec<(String, String, Value)> {
    let mut v: Vec<_> = thread["frames"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            let file = f["filename"].as_str().unwrap_or("?");
            (
                f["name"].as_str().unwrap_or("?").to_string(),
                file.rsplit('/').next().unwrap_or(file).to_string(),
                f["line"].clone(),
            )
        })
        .collect();
    v.reverse();
    v
}

// ---------------------------------------------------------------------------
// Errors

#[test]
fn record_errors() {
    let interps = require_all();
    let python = &interps[0];
    let scratch = Scratch::new("errors");
    let mut failures = Vec::new();

    // An output in a directory that does not exist: refused before anything
    // is attached to (here: a process that is not even Python) ...
    let sleep = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("sleep");
    let sleep = ChildGuard::new(sleep);
    let pid = sleep.pid().to_string();
    let args = ["record", "--pid", &pid, "-o", "/nonexistent/dir/x.svg"];
    let t0 = Instant::now();
    let out = pyrometer(&args);
    let err = stderr_of(&out);
    println!("`{}` -> {}: {}", show(&args), out.status, err.trim());
    if out.status.success()
        || !err.contains("/nonexistent/dir")
        || !err.contains("does not exist")
        || err.contains("Python")
        || t0.elapsed() > Duration::from_secs(5)
    {
        failures.push(format!(
            "`{}`: {} after {:?}, expected a failure naming /nonexistent/dir before attaching; stderr: {err}",
            show(&args),
            out.status,
            t0.elapsed()
        ));
    }
    drop(sleep);

    // ... or launched.
    let marker = scratch.file("launched");
    let code = format!("open({:?}, 'w').close()", marker.display().to_string());
    let args = [
        "record",
        "-o",
        "/nonexistent/dir/x.svg",
        "--",
        python.path.to_str().unwrap(),
        "-c",
        &code,
    ];
    let out = pyrometer(&args);
    let err = stderr_of(&out);
    println!("`{}` -> {}: {}", show(&args), out.status, err.trim());
    std::thread::sleep(Duration::from_millis(300));
    if out.status.success() || !err.contains("/nonexistent/dir") || marker.exists() {
        failures.push(format!(
            "`{}`: {}, launched: {}, expected a failure naming /nonexistent/dir before launching; stderr: {err}",
            show(&args),
            out.status,
            marker.exists()
        ));
    }

    // No such process.
    let out_file = scratch.file("x.txt");
    let args = [
        "record",
        "--pid",
        "999999999",
        "-d",
        "1",
        "-o",
        out_file.to_str().unwrap(),
    ];
    let out = pyrometer(&args);
    let err = stderr_of(&out);
    println!("`{}` -> {}: {}", show(&args), out.status, err.trim());
    if out.status.code() != Some(EXIT_NO_PROCESS) || !err.contains("no process with PID 999999999")
    {
        failures.push(format!(
            "`{}`: {}, expected exit {EXIT_NO_PROCESS} and \"no process with PID 999999999\"; stderr: {err}",
            show(&args),
            out.status
        ));
    }
    if out_file.exists() {
        failures.push("an output file was written for a process that does not exist".into());
    }

    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
