//! `pyrometer dump`.

use std::io::Write;

use anyhow::{Context, Result};
use pyrometer_sampler::ThreadSummary;
use serde_json::json;

use crate::args::DumpArgs;
use crate::attach::attach_pid;
use crate::output::terminal_safe;

pub fn run(args: DumpArgs) -> Result<()> {
    let mut target = attach_pid(args.pid)?;
    target.blocking = args.blocking;
    target.set_max_depth(args.max_depth as usize);
    let pid = target.pid();
    let threads = target
        .dump(args.locals)
        .with_context(|| format!("cannot read the stacks of process {pid}"))?;
    let version = target.interpreter().version.to_string();
    let mut out = std::io::stdout().lock();
    if args.json {
        let doc = to_json(pid, &version, &threads, args.locals);
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
    } else {
        writeln!(out, "Process {pid}: {}", terminal_safe(target.cmdline()))?;
        writeln!(
            out,
            "Python v{version} ({})",
            terminal_safe(&target.interpreter().binary.to_string_lossy())
        )?;
        for t in &threads {
            write_thread(&mut out, t, args.max_depth)?;
        }
    }
    out.flush()?;
    Ok(())
}

fn to_json(pid: i32, version: &str, threads: &[ThreadSummary], locals: bool) -> serde_json::Value {
    let threads: Vec<_> = threads
        .iter()
        .map(|t| {
            let s = &t.sample;
            let frames: Vec<_> = s
                .frames
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let mut fr = json!({
                        "name": &*f.name,
                        "filename": &*f.filename,
                        "line": if f.line > 0 { json!(f.line) } else { json!(null) },
                    });
                    if locals {
                        let vars: Vec<_> = t
                            .locals
                            .get(i)
                            .map(|v| {
                                v.iter()
                                    .map(|(n, r)| json!({"name": n, "value": r}))
                                    .collect()
                            })
                            .unwrap_or_default();
                        fr["locals"] = json!(vars);
                    }
                    fr
                })
                .collect();
            json!({
                "thread_id": s.thread_id,
                "native_id": s.native_id,
                "name": s.thread_name.as_deref(),
                "owns_gil": s.holds_gil,
                "active": s.state.is_active(),
                "state": s.state.as_str(),
                "truncated": s.truncated,
                "frames": frames,
            })
        })
        .collect();
    json!({ "pid": pid, "python_version": version, "threads": threads })
}

fn write_thread(out: &mut impl Write, t: &ThreadSummary, max_depth: u32) -> std::io::Result<()> {
    let s = &t.sample;
    let mut status = vec![if s.state.is_active() {
        "active"
    } else {
        "idle"
    }];
    if s.holds_gil {
        status.push("gil");
    }
    let native = s
        .native_id
        .map(|n| format!(" native {n}"))
        .unwrap_or_default();
    let name = s
        .thread_name
        .as_deref()
        .map(|n| format!(" \"{}\"", terminal_safe(n)))
        .unwrap_or_default();
    writeln!(
        out,
        "\nThread {:#x}{native} ({}){name}",
        s.thread_id,
        status.join("+")
    )?;
    for (i, f) in s.frames.iter().enumerate() {
        let line = if f.line > 0 {
            format!(":{}", f.line)
        } else {
            String::new()
        };
        writeln!(
            out,
            "    {} ({}{line})",
            terminal_safe(&f.name),
            terminal_safe(&f.filename)
        )?;
        if let Some(vars) = t.locals.get(i) {
            for (n, v) in vars {
                writeln!(out, "        {} = {}", terminal_safe(n), terminal_safe(v))?;
            }
        }
    }
    if s.truncated {
        writeln!(
            out,
            "    ... stack truncated at {max_depth} frames (raise --max-depth to see more)"
        )?;
    }
    Ok(())
}
