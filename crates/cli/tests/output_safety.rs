//! Strings from the target cannot break an output or reach a terminal raw,
//! on every interpreter. `targets/hostile_text.py` runs a chain of functions
//! named with `;`, newlines, escape sequences, quotes, backslashes and
//! markup, under a hostile file name and thread name and command line:
//!
//! - `dump` text: no control character but the line ends (escape
//!   sequences are shown as `?`), one line per frame;
//! - `dump --json` and speedscope: every name round-trips exactly;
//! - folded stacks: one line per stack, one frame per function (`;` and
//!   newlines in names cannot split them), no control characters;
//! - the SVG flame graph: well-formed XML (parsed by the interpreter's own
//!   `xml.etree`), with the markup as text.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const GROUPS: &[&str] = &["dump-text", "dump-json", "folded", "svg", "speedscope"];

/// The command-line argument the target gets: an OSC title sequence and
/// markup (it reaches the SVG's title).
const HOSTILE_ARG: &str = "\x1b]0;pwned\x07<b>bold</b>";

fn control_chars(text: &str, allowed: &[char]) -> Vec<char> {
    let mut found: Vec<char> = text
        .chars()
        .filter(|c| c.is_control() && !allowed.contains(c))
        .collect();
    found.sort();
    found.dedup();
    found
}

#[test]
fn hostile_strings_on_every_interpreter() {
    let interps = require_all();
    let scratch = Scratch::new("output-safety");
    let _cpu = cpu_lock();
    let rows = par_map(&interps, 2, |interp| {
        let mut c = Checks::new(interp);
        check_one(interp, &scratch, &mut c);
        c
    });
    finish_matrix(&rows);
}

fn finish_matrix(rows: &[Checks]) {
    common::finish("output safety", GROUPS, rows);
}

fn check_one(interp: &Interp, scratch: &Scratch, c: &mut Checks) {
    let (target, ready) = match start_target(interp, "hostile_text.py", &[HOSTILE_ARG]) {
        Ok(t) => t,
        Err(e) => return c.fail("dump-text", e),
    };
    let names: Vec<String> = ready["names"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let file_name = ready["file_name"].as_str().unwrap_or_default().to_string();
    let thread_name = ready["thread_name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let innermost = names.last().cloned().unwrap_or_default();
    let pid = target.pid().to_string();

    // The ready line is printed just before the chain is entered: wait for it.
    let doc = match dump_json_until(&pid, Duration::from_secs(15), |d| {
        !threads_with_leaf(d, |n| n == innermost).is_empty()
    }) {
        Ok(doc) => doc,
        Err(e) => {
            return c.fail(
                "dump-json",
                format!("the target never showed the chain: {e}"),
            )
        }
    };
    check_json(c, Some(&doc), &names, &file_name, &thread_name);
    check_text(c, &pid, &names);

    let label = interp.label.replace('.', "_");
    let raw = scratch.file(&format!("{label}.txt"));
    let svg = scratch.file(&format!("{label}.svg"));
    let speedscope = scratch.file(&format!("{label}.json"));
    for (format, path) in [
        ("raw", &raw),
        ("flamegraph", &svg),
        ("speedscope", &speedscope),
    ] {
        let out = pyrometer(&[
            "record",
            "--pid",
            &pid,
            "-d",
            "1",
            "--threads",
            "--idle",
            "-f",
            format,
            "-o",
            path.to_str().unwrap(),
        ]);
        let err = stderr_of(&out);
        let group = match format {
            "raw" => "folded",
            "flamegraph" => "svg",
            _ => "speedscope",
        };
        c.check(group, out.status.success(), || {
            format!("record -f {format}: {}: {err}", out.status)
        });
        c.eq(
            group,
            format!("control characters in the record summary ({format})"),
            control_chars(&err, &['\n']),
            vec![],
        );
    }
    check_folded(c, &raw, &names);
    check_svg(c, interp, &svg, &names);
    check_speedscope(c, &speedscope, &names, &file_name);
}

fn check_json(
    c: &mut Checks,
    doc: Option<&Value>,
    names: &[String],
    file_name: &str,
    thread_name: &str,
) {
    let Some(doc) = doc else {
        return c.fail("dump-json", "no JSON document");
    };
    let threads = doc["threads"].as_array().cloned().unwrap_or_default();
    let main = threads
        .iter()
        .find(|t| t["frames"][0]["name"].as_str() == names.last().map(String::as_str));
    let Some(main) = main else {
        return c.fail("dump-json", format!("no thread in the chain: {doc}"));
    };
    let frames: Vec<&str> = main["frames"]
        .as_array()
        .map(|f| f.iter().filter_map(|f| f["name"].as_str()).collect())
        .unwrap_or_default();
    let mut want: Vec<&str> = names.iter().map(String::as_str).collect();
    want.reverse();
    want.push("drive");
    c.eq(
        "dump-json",
        "innermost frame names",
        frames.iter().take(want.len()).copied().collect::<Vec<_>>(),
        want.clone(),
    );
    c.eq(
        "dump-json",
        "file name of drive",
        main["frames"][names.len()]["filename"].as_str(),
        Some(file_name),
    );
    let names_of_threads: Vec<&str> = threads.iter().filter_map(|t| t["name"].as_str()).collect();
    c.check("dump-json", names_of_threads.contains(&thread_name), || {
        format!("thread name {thread_name:?} not in {names_of_threads:?}")
    });
}

fn check_text(c: &mut Checks, pid: &str, names: &[String]) {
    let out = pyrometer(&["dump", "--pid", pid, "--locals"]);
    let text = stdout_of(&out);
    c.check("dump-text", out.status.success(), || {
        format!("dump: {}: {}", out.status, stderr_of(&out))
    });
    c.eq(
        "dump-text",
        "control characters in dump output",
        control_chars(&text, &['\n']),
        vec![],
    );
    // Each hostile name is one frame line, its control characters shown as `?`.
    for name in names {
        let shown: String = name
            .chars()
            .map(|ch| if ch.is_control() { '?' } else { ch })
            .collect();
        let lines = text
            .lines()
            .filter(|l| l.starts_with(&format!("    {shown} (")))
            .count();
        c.eq("dump-text", format!("frame lines for {name:?}"), lines, 1);
    }
    c.check(
        "dump-text",
        text.lines()
            .next()
            .is_some_and(|l| l.contains("?]0;pwned?")),
        || {
            format!(
                "the command line is not shown sanitized: {:?}",
                text.lines().next()
            )
        },
    );
}

fn check_folded(c: &mut Checks, path: &std::path::Path, names: &[String]) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    c.eq(
        "folded",
        "control characters in folded stacks",
        control_chars(&text, &['\n']),
        vec![],
    );
    let folded = match parse_folded(&text) {
        Ok(f) => f,
        Err(e) => return c.fail("folded", e),
    };
    // The main thread's stacks: thread root, <module>, main, drive, then one
    // frame per hostile function, nothing split.
    let main: Vec<&(Vec<String>, u64)> = folded
        .iter()
        .filter(|(frames, _)| frames.first().is_some_and(|t| t.contains("MainThread")))
        .collect();
    c.check("folded", !main.is_empty(), || {
        format!("no MainThread stacks in:\n{text}")
    });
    let depth = 4 + names.len();
    for (frames, _) in &main {
        c.eq(
            "folded",
            format!("frames in {frames:?}"),
            frames.len(),
            depth,
        );
        // Each frame is `name (file:line)`.
        for f in frames.iter().skip(1) {
            c.check("folded", f.ends_with(')') && f.contains(" ("), || {
                format!("frame {f:?} is not `name (file:line)`")
            });
        }
    }
    let lines = text.lines().filter(|l| !l.is_empty()).count();
    c.eq("folded", "lines vs stacks", lines, folded.len());
}

fn check_svg(c: &mut Checks, interp: &Interp, path: &std::path::Path, names: &[String]) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    c.eq(
        "svg",
        "control characters in the SVG",
        control_chars(&text, &['\n', '\t', '\r']),
        vec![],
    );
    let markup = names
        .iter()
        .find(|n| n.starts_with("<script>"))
        .cloned()
        .unwrap_or_default();
    for raw in [markup.as_str(), "<b>bold</b>"] {
        c.check("svg", !text.contains(raw), || {
            format!("the SVG holds {raw:?} as markup")
        });
    }
    c.check(
        "svg",
        text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        || "the markup name is not in the SVG as escaped text".into(),
    );
    // Well-formed XML, by a parser that is not ours.
    let parse = Command::new(&interp.path)
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as E\nE.parse(sys.argv[1])\nprint('ok')",
        ])
        .arg(path)
        .output();
    match parse {
        Ok(o) => c.check("svg", o.status.success(), || {
            format!(
                "the SVG is not well-formed XML: {}",
                String::from_utf8_lossy(&o.stderr)
            )
        }),
        Err(e) => c.check("svg", false, || format!("cannot run the XML parser: {e}")),
    };
}

fn check_speedscope(c: &mut Checks, path: &std::path::Path, names: &[String], file_name: &str) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let doc: Value = match serde_json::from_str(&text) {
        Ok(d) => d,
        Err(e) => return c.fail("speedscope", format!("not JSON: {e}")),
    };
    let frames = doc["shared"]["frames"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let frame_names: Vec<&str> = frames.iter().filter_map(|f| f["name"].as_str()).collect();
    for name in names {
        c.check("speedscope", frame_names.contains(&name.as_str()), || {
            format!("{name:?} not among {frame_names:?}")
        });
    }
    let files: Vec<&str> = frames.iter().filter_map(|f| f["file"].as_str()).collect();
    c.check(
        "speedscope",
        files
            .iter()
            .any(|f| f.contains(file_name) || *f == file_name),
        || format!("{file_name:?} not among the files {files:?}"),
    );
}

#[test]
fn names_longer_than_kept_are_cut_not_dropped() {
    let interps = require_all();
    let scratch = Scratch::new("output-long");
    let _cpu = cpu_lock();
    let rows = par_map(&interps, 2, |interp| {
        let mut c = Checks::new(interp);
        long_one(interp, &scratch, &mut c);
        c
    });
    common::finish("long names", &["dump", "record"], &rows);
}

fn long_one(interp: &Interp, scratch: &Scratch, c: &mut Checks) {
    let (target, _) = match start_target(interp, "long_names.py", &[]) {
        Ok(t) => t,
        Err(e) => return c.fail("dump", e),
    };
    let pid = target.pid().to_string();
    let is_cut =
        |s: &str, ch: char| s.ends_with('…') && s.trim_end_matches('…').chars().all(|x| x == ch);
    // Wait for the main thread to be in the long-named function.
    let doc = match dump_json_until(&pid, Duration::from_secs(15), |d| {
        !threads_with_leaf(d, |n| is_cut(n, 'n')).is_empty()
    }) {
        Ok(doc) => doc,
        Err(e) => return c.fail("dump", format!("no thread shows the long name, cut: {e}")),
    };
    let threads = doc["threads"].as_array().cloned().unwrap_or_default();
    let main = threads.iter().find(|t| {
        t["frames"][0]["name"]
            .as_str()
            .is_some_and(|n| is_cut(n, 'n'))
    });
    let (name, file) = main
        .map(|t| {
            (
                t["frames"][0]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                t["frames"][0]["filename"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .unwrap_or_default();
    c.check("dump", name.chars().count() < 5000, || {
        format!("the name was kept at {} characters", name.chars().count())
    });
    c.check("dump", is_cut(&file, 'f'), || {
        format!(
            "the file name is not cut: {}...",
            file.chars().take(80).collect::<String>()
        )
    });
    let thread_names: Vec<&str> = threads.iter().filter_map(|t| t["name"].as_str()).collect();
    c.check("dump", thread_names.iter().any(|n| is_cut(n, 't')), || {
        format!(
            "no cut thread name among {:?}",
            thread_names
                .iter()
                .map(|n| n.chars().take(20).collect::<String>())
                .collect::<Vec<_>>()
        )
    });
    // Recorded: the spinning thread is sampled, not dropped as torn.
    let out_file = scratch.file(&format!("{}.txt", interp.label.replace('.', "_")));
    let out = pyrometer(&[
        "record",
        "--pid",
        &pid,
        "-d",
        "1",
        "-f",
        "raw",
        "-o",
        out_file.to_str().unwrap(),
    ]);
    let err = stderr_of(&out);
    c.check("record", out.status.success(), || {
        format!("{}: {err}", out.status)
    });
    let text = std::fs::read_to_string(&out_file).unwrap_or_default();
    let spun: u64 = parse_folded(&text)
        .unwrap_or_default()
        .iter()
        .filter(|(frames, _)| frames.last().is_some_and(|f| f.starts_with("nnnn")))
        .map(|(_, n)| n)
        .sum();
    c.check("record", spun > 0, || {
        format!("no sample of the long-named function; summary: {err}")
    });
    let torn = summary_counts(&err).map(|(_, _, torn)| torn);
    c.check("record", torn.is_some_and(|t| t < spun), || {
        format!("{torn:?} thread samples torn for {spun} kept: {err}")
    });
}
