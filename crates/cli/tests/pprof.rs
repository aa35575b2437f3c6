//! pprof as pyrometer's saved profile, on every interpreter of the matrix
//! (pyrometer_testsupport::require_all):
//!
//! * `record -f pprof` on tests/targets/pprof_split.py (a "cruncher"
//!   thread splitting its CPU time 3:1 between `heavy` and `light`, the
//!   main thread asleep), read by a real consumer,
//!   `go tool pprof` (Debian's golang-go; scripts/setup.sh installs it):
//!   `-top` names the functions, `-tags` shows the labels, `-traces` shows
//!   stacks with labels;
//! * `report` of that pprof to folded stacks has the function set and the
//!   proportions of a `record -f raw` taken at the same time, and exactly
//!   the samples the pprof holds; `report` to speedscope and flame graph;
//! * `diff` of two recordings writes an SVG;
//! * `diff` of two synthetic profiles colours growth red and shrinkage
//!   blue, after normalising by the total;
//! * errors: missing input, not a pprof, unwritable output.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use pyrometer_outputs::decode_pprof;
use pyrometer_profile::Profile;
use pyrometer_sampler::{Sample, SampledFrame, ThreadState};

/// Samples each 200 Hz recording needs for its heavy share to be compared
/// with the other's (8 points apart at most): a dozen heavy+light cycles of
/// about 20 sampling periods each.
const MIN_SAMPLES: u64 = 250;

/// CPU time the cruncher needs while recorded: a dozen heavy+light cycles.
const CPU_NEEDED: f64 = 1.2;

/// Functions of pprof_split.py's cruncher thread.
const CRUNCHER_FUNCTIONS: [&str; 3] = ["crunch", "heavy", "light"];

/// `go tool pprof ARGS FILE`, with a scratch HOME and PPROF_TMPDIR.
fn go_pprof(scratch: &Path, args: &[&str], file: &Path) -> Result<String, String> {
    let home = scratch.join("go-home");
    let tmp = scratch.join("pprof-tmp");
    let _ = std::fs::create_dir_all(&home);
    let _ = std::fs::create_dir_all(&tmp);
    let mut cmd = Command::new("go");
    cmd.args(["tool", "pprof"])
        .args(args)
        .arg(file)
        .env("PPROF_TMPDIR", &tmp)
        .env("HOME", &home)
        .env("GOCACHE", home.join("cache"))
        .env("GOPATH", home.join("go"));
    let out = pyrometer_testsupport::run_with_timeout(&mut cmd, RUN_TIMEOUT)?;
    if !out.status.success() {
        return Err(format!(
            "go tool pprof {} {} failed ({}): {}",
            args.join(" "),
            file.display(),
            out.status,
            stderr_of(&out)
        ));
    }
    Ok(stdout_of(&out))
}

/// `go` must be there: a missing consumer is a failure, not a skip.
fn require_go() {
    let ok = Command::new("go")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "`go` is not on PATH: these tests read pprof files with `go tool pprof`; \
         install Debian's golang-go (scripts/setup.sh does)"
    );
}

/// Folded stacks of a file.
fn folded_of(path: &Path) -> Result<Vec<(Vec<String>, u64)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_folded(&text)
}

/// Function names and heavy's share of heavy+light leaves.
fn summary(folded: &[(Vec<String>, u64)]) -> (BTreeSet<String>, f64, u64) {
    let mut names = BTreeSet::new();
    let (mut h, mut l, mut total) = (0, 0, 0);
    for (stack, n) in folded {
        total += n;
        for f in stack {
            names.insert(folded_name(f).to_string());
        }
        match stack.last().map(|f| folded_name(f)) {
            Some("heavy") => h += n,
            Some("light") => l += n,
            _ => {}
        }
    }
    (names, h as f64 / (h + l).max(1) as f64, total)
}

#[test]
fn pprof_record_report_diff_on_every_interpreter() {
    let interps = require_all();
    require_go();
    let _cpu = cpu_lock();
    let scratch = Scratch::new("pprof");
    let t0 = Instant::now();
    let rows = par_map(&interps, 2, |interp| {
        let mut c = Checks::new(interp);
        pprof_one(interp, &scratch, &mut c);
        c
    });
    finish(
        &format!(
            "pyrometer record -f pprof, go tool pprof, report, diff ({:.1} s)",
            t0.elapsed().as_secs_f64()
        ),
        &["setup", "record", "go-pprof", "report", "diff"],
        &rows,
    );
}

fn pprof_one(interp: &Interp, scratch: &Scratch, c: &mut Checks) {
    let (guard, _ready) = match start_target(interp, "pprof_split.py", &["120"]) {
        Ok(x) => x,
        Err(e) => {
            c.fail("setup", e);
            return;
        }
    };
    let pid = guard.pid().to_string();
    let dir = scratch.file(&interp.label);
    std::fs::create_dir_all(&dir).unwrap();
    let pb = dir.join("a.pb.gz");
    let pb2 = dir.join("b.pb.gz");
    let raw = dir.join("record.txt");
    // Three recordings of the same time, side by side (the last one with
    // the idle main thread's stacks). 2.5 s at 200 Hz is 500 ticks, and
    // 2.5 s of the cruncher's CPU time 25 heavy+light cycles. A loaded
    // machine makes pyrometer late for some ticks (skipped, counted) and
    // gives the cruncher a fraction of a CPU: over few cycles, the two
    // recordings' shares drift apart with which ticks each made. So the
    // recordings are taken again, twice as long (up to 20 s), until each
    // made MIN_SAMPLES ticks and the cruncher had CPU_NEEDED of CPU.
    let runs: Vec<(PathBuf, &str, &str, &str)> = vec![
        (pb.clone(), "pprof", "200", "--nonblocking"),
        (raw.clone(), "raw", "200", "--nonblocking"),
        (pb2.clone(), "pprof", "97", "--idle"),
    ];
    let mut seconds = 2.5_f64;
    let outs = loop {
        let d = seconds.to_string();
        let cpu0 = load::cpu_seconds(guard.pid()).unwrap_or(0.0);
        let outs = par_map(&runs, 3, |(out, format, rate, flag)| {
            let args = [
                "record",
                "--pid",
                &pid,
                "-r",
                rate,
                "-d",
                &d,
                "-f",
                format,
                "--quiet",
                flag,
                "-o",
                out.to_str().unwrap(),
            ];
            (show(&args), pyrometer(&args))
        });
        // Each tick samples the cruncher (checked below): ticks made are
        // the samples shown, but for the few torn ones.
        let fewest = outs[..2]
            .iter()
            .map(|(_, o)| load::TickSummary::parse(&stderr_of(o)).map_or(0, |t| t.ticks))
            .min()
            .unwrap_or(0);
        let cpu = load::cpu_seconds(guard.pid()).unwrap_or(0.0) - cpu0;
        let enough = fewest >= MIN_SAMPLES + MIN_SAMPLES / 10 && cpu >= CPU_NEEDED;
        if enough || seconds >= 20.0 {
            c.note(format!(
                "recorded {seconds} s: {fewest} ticks, the cruncher had {cpu:.2} s of CPU"
            ));
            break outs;
        }
        c.note(format!(
            "{seconds} s recorded only {fewest} ticks, {cpu:.2} s of the cruncher's CPU (load average {}): again for {} s",
            load::loadavg(),
            2.0 * seconds
        ));
        seconds *= 2.0;
    };
    drop(guard);
    let mut all_ok = true;
    for (cmd, out) in &outs {
        all_ok &= c.check("record", out.status.success(), || {
            format!("`{cmd}` failed ({}): {}", out.status, stderr_of(out))
        });
    }
    if !all_ok {
        return;
    }
    // Every tick of the 200 Hz recordings' schedule is accounted for (made,
    // or skipped as late); the raw one's ticks are checked against its
    // samples in report_checks.
    for (cmd, out) in &outs[..2] {
        let stderr = stderr_of(out);
        match load::TickSummary::parse(&stderr) {
            Some(t) => {
                if let Err(e) = t.ticks_accounted() {
                    c.fail("record", format!("`{cmd}`: {e}; summary: {stderr}"));
                }
            }
            None => c.fail("record", format!("`{cmd}`: no tick summary in {stderr}")),
        }
    }
    let raw_ticks = load::TickSummary::parse(&stderr_of(&outs[1].1));
    c.check(
        "record",
        std::fs::read(&pb)
            .map(|b| b.starts_with(&[0x1f, 0x8b]))
            .unwrap_or(false),
        || format!("{} is not gzipped", pb.display()),
    );

    go_pprof_checks(c, &scratch.0, &pb, &pid, false);
    go_pprof_checks(c, &scratch.0, &pb2, &pid, true);
    report_checks(c, &dir, &pb, &raw, raw_ticks);

    // diff of two recordings.
    let svg = dir.join("diff.svg");
    let args = [
        "diff",
        pb.to_str().unwrap(),
        pb2.to_str().unwrap(),
        "-o",
        svg.to_str().unwrap(),
    ];
    let out = pyrometer(&args);
    if c.check("diff", out.status.success(), || {
        format!(
            "`{}` failed ({}): {}",
            show(&args),
            out.status,
            stderr_of(&out)
        )
    }) {
        let text = std::fs::read_to_string(&svg).unwrap_or_default();
        c.check(
            "diff",
            text.contains("<svg") && text.contains("</svg>"),
            || format!("{} is not an SVG", svg.display()),
        );
        for f in ["heavy", "light"] {
            c.check(
                "diff",
                text.contains(&format!("<title>{f} (pprof_split.py:")),
                || format!("{} has no frame for {f}", svg.display()),
            );
        }
    }
}

fn go_pprof_checks(c: &mut Checks, scratch: &Path, pb: &Path, pid: &str, idle: bool) {
    let name = pb.file_name().unwrap().to_string_lossy().into_owned();
    // -top: the leaves by flat time; -top -cum: every function.
    match go_pprof(scratch, &["-top"], pb) {
        Ok(top) => {
            for f in ["heavy", "light"] {
                c.check(
                    "go-pprof",
                    top.lines().any(|l| l.ends_with(&format!(" {f}"))),
                    || format!("{name}: -top does not list {f}:\n{top}"),
                );
            }
            c.check("go-pprof", top.contains("Type: wall"), || {
                format!("{name}: -top does not show the wall sample type:\n{top}")
            });
        }
        Err(e) => c.fail("go-pprof", e),
    }
    match go_pprof(scratch, &["-top", "-cum", "-nodefraction=0"], pb) {
        Ok(top) => {
            let mut want = CRUNCHER_FUNCTIONS.to_vec();
            if idle {
                want.push("main");
            }
            for f in want {
                c.check(
                    "go-pprof",
                    top.lines().any(|l| l.ends_with(&format!(" {f}"))),
                    || format!("{name}: -top -cum does not list {f}:\n{top}"),
                );
            }
        }
        Err(e) => c.fail("go-pprof", e),
    }
    match go_pprof(scratch, &["-top", "-sample_index=cpu"], pb) {
        Ok(top) => {
            c.check(
                "go-pprof",
                top.contains("Type: cpu") && top.contains(" heavy"),
                || format!("{name}: -sample_index=cpu:\n{top}"),
            );
        }
        Err(e) => c.fail("go-pprof", e),
    }
    // -tags: every label, with its values.
    match go_pprof(scratch, &["-tags"], pb) {
        Ok(tags) => {
            let mut labels: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut key = String::new();
            for line in tags.lines() {
                let t = line.trim();
                if let Some((k, _)) = t.split_once(": Total") {
                    key = k.to_string();
                } else if let Some((_, v)) = t.split_once("): ") {
                    labels.entry(key.clone()).or_default().push(v.to_string());
                }
            }
            let mut want: Vec<(&str, &str)> = vec![
                ("thread_name", "cruncher"),
                ("state", "python"),
                ("pid", pid),
                ("thread_id", ""),
                ("native_id", ""),
                ("process", "pprof_split.py"),
            ];
            if idle {
                want.extend([("thread_name", "MainThread"), ("state", "idle")]);
            }
            for (k, v) in want {
                c.check(
                    "go-pprof",
                    labels
                        .get(k)
                        .is_some_and(|vals| vals.iter().any(|x| x.contains(v))),
                    || format!("{name}: -tags has no {k} label with {v:?}:\n{tags}"),
                );
            }
        }
        Err(e) => c.fail("go-pprof", e),
    }
    // -traces: stacks with their labels.
    match go_pprof(scratch, &["-traces"], pb) {
        Ok(traces) => {
            c.check(
                "go-pprof",
                traces.contains("thread_name:  cruncher")
                    || traces.contains("thread_name: cruncher"),
                || format!("{name}: -traces shows no thread_name label:\n{traces}"),
            );
            for f in CRUNCHER_FUNCTIONS {
                c.check(
                    "go-pprof",
                    traces
                        .lines()
                        .any(|l| l.trim_end().ends_with(&format!(" {f}"))),
                    || format!("{name}: -traces shows no {f} frame"),
                );
            }
        }
        Err(e) => c.fail("go-pprof", e),
    }
}

fn report_checks(
    c: &mut Checks,
    dir: &Path,
    pb: &Path,
    raw: &Path,
    raw_ticks: Option<load::TickSummary>,
) {
    let rep = dir.join("report.txt");
    let args = [
        "report",
        pb.to_str().unwrap(),
        "-f",
        "raw",
        "-o",
        rep.to_str().unwrap(),
    ];
    let out = pyrometer(&args);
    if !c.check("report", out.status.success(), || {
        format!(
            "`{}` failed ({}): {}",
            show(&args),
            out.status,
            stderr_of(&out)
        )
    }) {
        return;
    }
    let (rep_folded, rec_folded) = match (folded_of(&rep), folded_of(raw)) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => {
            c.fail("report", format!("{:?} {:?}", a.err(), b.err()));
            return;
        }
    };
    let (rep_names, rep_share, rep_total) = summary(&rep_folded);
    let (rec_names, rec_share, rec_total) = summary(&rec_folded);
    c.eq(
        "report",
        "functions of report -f raw vs record -f raw",
        &rep_names,
        &rec_names,
    );
    for f in CRUNCHER_FUNCTIONS {
        c.check("report", rep_names.contains(f), || {
            format!("report -f raw has no {f}: {rep_names:?}")
        });
    }
    c.check("report", (rep_share - rec_share).abs() <= 0.08, || {
        format!(
            "heavy share: report {:.1} % of {rep_total}, record -f raw {:.1} % of {rec_total}",
            100.0 * rep_share,
            100.0 * rec_share
        )
    });
    c.check(
        "report",
        rep_total >= MIN_SAMPLES && rec_total >= MIN_SAMPLES,
        || {
            format!(
                "too few samples: report {rep_total}, record {rec_total} ({MIN_SAMPLES} needed)"
            )
        },
    );
    // The cruncher is always busy: the raw recording sampled it at every
    // tick it made. A sampler losing samples fails this however many
    // recordings it took to reach MIN_SAMPLES.
    if let Some(Err(e)) = raw_ticks.map(|t| t.every_tick_sampled(rec_total, 1)) {
        c.fail("report", format!("record -f raw: {e}"));
    }
    c.note(format!(
        "heavy share: from pprof {:.1} % of {rep_total}, record -f raw {:.1} % of {rec_total}",
        100.0 * rep_share,
        100.0 * rec_share
    ));
    // Exactly the pprof's samples: those with a stack and not idle.
    match std::fs::read(pb)
        .map_err(|e| e.to_string())
        .and_then(|b| decode_pprof(&b).map_err(|e| e.to_string()))
    {
        Ok(m) => {
            let s = |i: i64| m.string_table[i as usize].as_str();
            let shown: i64 = m
                .sample
                .iter()
                .filter(|x| !x.location_id.is_empty())
                .filter(|x| {
                    !x.label
                        .iter()
                        .any(|l| s(l.key) == "state" && s(l.str) == "idle")
                })
                .map(|x| x.value[0])
                .sum();
            c.eq(
                "report",
                "samples in report -f raw vs the pprof",
                rep_total as i64,
                shown,
            );
        }
        Err(e) => c.fail("report", e),
    }
    // The other formats.
    let json = dir.join("report.json");
    let svg = dir.join("report.svg");
    for (format, path) in [("speedscope", &json), ("flamegraph", &svg)] {
        let args = [
            "report",
            pb.to_str().unwrap(),
            "-f",
            format,
            "--threads",
            "-o",
            path.to_str().unwrap(),
        ];
        let out = pyrometer(&args);
        c.check("report", out.status.success(), || {
            format!(
                "`{}` failed ({}): {}",
                show(&args),
                out.status,
                stderr_of(&out)
            )
        });
    }
    let doc: Value = std::fs::read_to_string(&json)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    c.check(
        "report",
        doc["profiles"][0]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("cruncher")),
        || {
            format!(
                "speedscope from report: no cruncher profile: {}",
                doc["profiles"][0]["name"]
            )
        },
    );
    let text = std::fs::read_to_string(&svg).unwrap_or_default();
    c.check(
        "report",
        text.contains("thread (cruncher") && text.contains("<title>heavy (pprof_split.py:"),
        || "flame graph from report --threads: no thread root frame or no heavy frame".to_string(),
    );
}

// ---------------------------------------------------------------------------
// Synthetic profiles: exact checks that need no interpreter.

fn synthetic(stacks: &[(&[&str], u64)], rate: f64) -> Profile {
    let mut p = Profile::new();
    p.meta.rate = rate;
    p.meta.target = "synthetic".into();
    p.set_process(1, "python3 app.py");
    for (frames, n) in stacks {
        let sample = Sample {
            time: Duration::ZERO,
            pid: 1,
            thread_id: 7,
            native_id: Some(7),
            thread_name: Some(Arc::from("MainThread")),
            state: ThreadState::Python,
            holds_gil: true,
            // Leaf first; line 10 + depth.
            frames: frames
                .iter()
                .enumerate()
                .map(|(i, f)| SampledFrame {
                    name: Arc::from(*f),
                    filename: Arc::from("/srv/app.py"),
                    line: 10 + i as i32,
                    first_line: 1,
                    code_key: 0,
                })
                .rev()
                .collect(),
            truncated: false,
            walked: true,
            request: None,
            category: None,
        };
        for _ in 0..*n {
            p.add_sample(&sample);
        }
    }
    p
}

/// Write a pprof, and check that `go tool pprof` reads it.
fn save(p: &Profile, path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    pyrometer_outputs::write_pprof(p, &mut f).unwrap();
    go_reads(path);
}

fn go_reads(path: &Path) -> String {
    require_go();
    go_pprof(path.parent().unwrap(), &["-raw"], path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn go_pprof_shows_python_names_verbatim() {
    let scratch = Scratch::new("pprof-names");
    let pb = scratch.file("names.pb.gz");
    let mut p = synthetic(
        &[
            (&["<module>", "main", "Handler.get", "<lambda>"], 7),
            (&["<module>", "main", "<listcomp>"], 5),
            (&["<module>", "main", "<genexpr>"], 3),
        ],
        100.0,
    );
    // An idle thread with no stack read, in another process.
    p.set_process(2, "python3 worker.py");
    p.add_sample(&Sample {
        time: Duration::ZERO,
        pid: 2,
        thread_id: 9,
        native_id: None,
        thread_name: None,
        state: ThreadState::Idle,
        holds_gil: false,
        frames: Vec::new(),
        truncated: false,
        walked: true,
        request: None,
        category: None,
    });
    save(&p, &pb);
    let top = go_pprof(&scratch.0, &["-top", "-cum", "-nodefraction=0"], &pb).unwrap();
    for f in [
        "<module>",
        "main",
        "Handler.get",
        "<lambda>",
        "<listcomp>",
        "<genexpr>",
    ] {
        assert!(
            top.lines().any(|l| l.ends_with(&format!(" {f}"))),
            "-top -cum does not show {f} verbatim:\n{top}"
        );
    }
    assert!(!top.contains("<unknown>"), "{top}");
    // -traces: the stacks with their labels.
    let list = go_pprof(&scratch.0, &["-traces"], &pb).unwrap();
    assert!(
        list.contains("<lambda>") && list.contains("thread_name:"),
        "{list}"
    );
    let tags = go_pprof(&scratch.0, &["-tags"], &pb).unwrap();
    assert!(
        tags.contains("MainThread") && tags.contains("pid:"),
        "{tags}"
    );
    let raw = go_reads(&pb);
    for want in [
        "samples/count wall/nanoseconds[dflt] cpu/nanoseconds",
        "PeriodType: wall nanoseconds",
        "Period: 10000000",
        "Comment: pyrometer.target=synthetic",
        "Comment: pyrometer.rate=100",
        "/srv/app.py",
    ] {
        assert!(raw.contains(want), "-raw lacks {want:?}:\n{raw}");
    }
}

/// The fill colour of the frame whose title starts with `title`.
fn fill_of(svg: &str, title: &str) -> Option<(u8, u8, u8)> {
    let i = svg.find(&format!("<title>{title}"))?;
    let rest = &svg[i..];
    let j = rest.find("fill=\"rgb(")? + "fill=\"rgb(".len();
    let rgb: Vec<u8> = rest[j..]
        .split(')')
        .next()?
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    match rgb[..] {
        [r, g, b] => Some((r, g, b)),
        _ => None,
    }
}

#[test]
fn diff_colours_growth_red_and_shrinkage_blue() {
    let scratch = Scratch::new("pprof-diff");
    let before = scratch.file("before.pb.gz");
    let after = scratch.file("after.pb.gz");
    // Own samples: main 20 % → 20 %, f 40 % → 60 %, g 40 % → 20 %, with
    // twice the samples in AFTER, which normalisation must not paint red.
    // (inferno colours each frame by the change in its own samples.)
    save(
        &synthetic(
            &[(&["main"], 20), (&["main", "f"], 40), (&["main", "g"], 40)],
            100.0,
        ),
        &before,
    );
    save(
        &synthetic(
            &[(&["main"], 40), (&["main", "f"], 120), (&["main", "g"], 40)],
            100.0,
        ),
        &after,
    );
    let svg = scratch.file("d.svg");
    let args = [
        "diff",
        before.to_str().unwrap(),
        after.to_str().unwrap(),
        "-o",
        svg.to_str().unwrap(),
    ];
    let out = pyrometer(&args);
    assert!(out.status.success(), "{}: {}", show(&args), stderr_of(&out));
    let text = std::fs::read_to_string(&svg).unwrap();
    let f = fill_of(&text, "f (app.py:11)").expect("f frame");
    let g = fill_of(&text, "g (app.py:11)").expect("g frame");
    let m = fill_of(&text, "main (app.py:10)").expect("main frame");
    let red = |c: (u8, u8, u8)| c.0 == 255 && c.1 < 250 && c.2 < 250;
    let blue = |c: (u8, u8, u8)| c.2 == 255 && c.0 < 250 && c.1 < 250;
    const NEUTRAL: (u8, u8, u8) = (250, 250, 250);
    assert!(red(f), "f grew: red, got {f:?}");
    assert!(blue(g), "g shrank: blue, got {g:?}");
    assert_eq!(m, NEUTRAL, "main's own share is unchanged once normalised");
    assert!(
        text.contains("f (app.py:11) (120 samples, 60.00%; +20.00%)"),
        "{text}"
    );
    assert!(text.contains("g (app.py:11) (40 samples, 20.00%; -20.00%)"));

    // Raw counts: main and f grew, g did not change.
    let raw_svg = scratch.file("raw.svg");
    let args = [
        "diff",
        before.to_str().unwrap(),
        after.to_str().unwrap(),
        "--no-normalize",
        "-o",
        raw_svg.to_str().unwrap(),
    ];
    let out = pyrometer(&args);
    assert!(out.status.success(), "{}: {}", show(&args), stderr_of(&out));
    let text = std::fs::read_to_string(&raw_svg).unwrap();
    let m = fill_of(&text, "main (app.py:10)").expect("main frame");
    let f = fill_of(&text, "f (app.py:11)").expect("f frame");
    let g = fill_of(&text, "g (app.py:11)").expect("g frame");
    assert!(red(m) && red(f), "main and f grew: red, got {m:?} {f:?}");
    assert_eq!(g, NEUTRAL, "g did not change");
}

#[test]
fn report_renders_what_record_would_have() {
    let scratch = Scratch::new("pprof-report");
    let pb = scratch.file("p.pb.gz");
    let p = synthetic(
        &[(&["main", "f"], 30), (&["main", "g"], 10), (&["main"], 5)],
        250.0,
    );
    save(&p, &pb);
    let mut want = Vec::new();
    pyrometer_outputs::write_folded(&p, &pyrometer_outputs::StackOptions::new(), &mut want)
        .unwrap();
    // Default output: next to the input, with the format's extension.
    let out = pyrometer(&["report", pb.to_str().unwrap(), "-f", "raw"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(
        std::fs::read_to_string(scratch.file("p.txt")).unwrap(),
        String::from_utf8(want).unwrap()
    );
    assert!(
        stderr_of(&out).contains("45 thread samples of synthetic"),
        "{}",
        stderr_of(&out)
    );
    // Flags: --nolineno --threads.
    let out_file = scratch.file("flags.txt");
    let out = pyrometer(&[
        "report",
        pb.to_str().unwrap(),
        "-f",
        "raw",
        "--nolineno",
        "--threads",
        "-o",
        out_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(
        std::fs::read_to_string(&out_file).unwrap(),
        "thread (MainThread 7);main (app.py) 5\n\
         thread (MainThread 7);main (app.py);f (app.py) 30\n\
         thread (MainThread 7);main (app.py);g (app.py) 10\n"
    );
    // The HTML report and speedscope are byte for byte what `record` writes
    // for the same profile (same title and options).
    let title = "pyrometer: synthetic";
    for (format, ext) in [("html", "html"), ("speedscope", "json")] {
        let out_file = scratch.file(&format!("from-pprof.{ext}"));
        let out = pyrometer(&[
            "report",
            pb.to_str().unwrap(),
            "-f",
            format,
            "-o",
            out_file.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr_of(&out));
        let mut direct = Vec::new();
        let opts = pyrometer_outputs::StackOptions::new();
        if format == "html" {
            pyrometer_outputs::write_html(&p, &opts, title, &mut direct).unwrap();
        } else {
            pyrometer_outputs::write_speedscope(&p, &opts, title, &mut direct).unwrap();
        }
        assert!(
            std::fs::read(&out_file).unwrap() == direct,
            "report -f {format} differs from the direct rendering"
        );
    }
    // -f pprof rewrites the same profile.
    let again = scratch.file("again.pb.gz");
    let out = pyrometer(&[
        "report",
        pb.to_str().unwrap(),
        "-f",
        "pprof",
        "-o",
        again.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    go_reads(&again);
    let a = pyrometer_outputs::read_pprof(&std::fs::read(&again).unwrap()).unwrap();
    assert_eq!(a.top_functions(10), p.top_functions(10));
}

#[test]
fn report_and_diff_errors() {
    let scratch = Scratch::new("pprof-errors");
    let good = scratch.file("good.pb.gz");
    save(&synthetic(&[(&["main"], 3)], 100.0), &good);
    let text = scratch.file("stacks.txt");
    std::fs::write(&text, "main (a.py:1) 3\n").unwrap();
    let missing = scratch.file("missing.pb.gz");
    let out_svg = scratch.file("out.svg");
    let cases: Vec<(Vec<String>, i32, Vec<String>)> = vec![
        (
            vec![
                "report".into(),
                missing.display().to_string(),
                "-o".into(),
                out_svg.display().to_string(),
            ],
            EXIT_FAILURE,
            vec!["cannot read".into(), missing.display().to_string()],
        ),
        (
            vec![
                "report".into(),
                text.display().to_string(),
                "-o".into(),
                out_svg.display().to_string(),
            ],
            EXIT_FAILURE,
            vec![
                text.display().to_string(),
                "not a gzipped pprof profile".into(),
            ],
        ),
        (
            vec![
                "report".into(),
                good.display().to_string(),
                "-o".into(),
                "/nonexistent-dir/x.svg".into(),
            ],
            EXIT_FAILURE,
            vec!["cannot write /nonexistent-dir/x.svg".into()],
        ),
        (
            vec![
                "report".into(),
                good.display().to_string(),
                "-f".into(),
                "pprof".into(),
            ],
            EXIT_FAILURE,
            vec!["would overwrite".into()],
        ),
        (
            vec![
                "report".into(),
                good.display().to_string(),
                "-f".into(),
                "nope".into(),
            ],
            EXIT_USAGE,
            vec!["nope".into()],
        ),
        (
            vec![
                "diff".into(),
                good.display().to_string(),
                missing.display().to_string(),
                "-o".into(),
                out_svg.display().to_string(),
            ],
            EXIT_FAILURE,
            vec!["cannot read".into(), missing.display().to_string()],
        ),
        (
            vec![
                "diff".into(),
                text.display().to_string(),
                good.display().to_string(),
                "-o".into(),
                out_svg.display().to_string(),
            ],
            EXIT_FAILURE,
            vec!["not a gzipped pprof profile".into()],
        ),
        (
            vec![
                "diff".into(),
                good.display().to_string(),
                good.display().to_string(),
                "-o".into(),
                "/nonexistent-dir/d.svg".into(),
            ],
            EXIT_FAILURE,
            vec!["does not exist".into()],
        ),
        (
            vec!["diff".into(), good.display().to_string()],
            EXIT_USAGE,
            vec!["AFTER".into()],
        ),
    ];
    for (args, code, needles) in cases {
        let out = pyrometer(&args);
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(code), "{}: {err}", show(&args));
        for n in needles {
            assert!(
                err.contains(&n),
                "{}: stderr lacks {n:?}: {err}",
                show(&args)
            );
        }
    }
    assert!(!out_svg.exists(), "no output on failure");
}
