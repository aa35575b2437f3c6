//! `record --write-every` and SIGUSR1 against a real busy target
//! (tests/targets/pprof_split.py, its `cruncher` thread always on a CPU):
//!
//! * with `--write-every 1` the output is rewritten while recording; every
//!   version a poller sees parses as a complete pprof (the rename is
//!   atomic) and the sample counts never go down;
//! * without it, SIGUSR1 writes the output within a second, and again on
//!   the next signal, with more samples;
//! * SIGTERM ends the recording with a complete final file holding at
//!   least what was written before, and no temporary file is left behind.

#[allow(unused_imports)]
mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::*;

/// A version of the output: when it was seen, its samples.
struct Version {
    seen: Instant,
    samples: u64,
}

/// The file's identity: a rename brings a new inode.
fn identity(path: &Path) -> Option<(u64, SystemTime, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.modified().ok()?, m.len()))
}

/// Read the file as a pprof; any failure is a half-written file.
fn samples_of(path: &Path) -> Result<u64, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("read: {e}"))?;
    pyrometer_outputs::read_pprof(&bytes)
        .map(|p| p.total_samples())
        .map_err(|e| format!("{} bytes do not parse: {e}", bytes.len()))
}

/// Poll until `want` new versions appeared or `timeout` passed.
fn poll_versions(
    path: &Path,
    last: &mut Option<(u64, SystemTime, u64)>,
    versions: &mut Vec<Version>,
    want: usize,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let start = versions.len();
    while versions.len() < start + want {
        if Instant::now() > deadline {
            return Err(format!(
                "{} new versions of {} within {timeout:?}, expected {want}",
                versions.len() - start,
                path.display()
            ));
        }
        let id = identity(path);
        if id.is_some() && id != *last {
            let samples = samples_of(path)?;
            if let Some(prev) = versions.last() {
                if samples < prev.samples {
                    return Err(format!(
                        "sample count went down: {} then {samples}",
                        prev.samples
                    ));
                }
            }
            versions.push(Version {
                seen: Instant::now(),
                samples,
            });
            *last = id;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

fn spawn_record(pid: i32, out: &Path, extra: &[&str]) -> ChildGuard {
    let child: Child = Command::new(PYROMETER)
        .args([
            "record",
            "--pid",
            &pid.to_string(),
            "-r",
            "100",
            "-f",
            "pprof",
        ])
        .arg("-o")
        .arg(out)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pyrometer");
    ChildGuard::new(child)
}

fn signal(pid: i32, sig: libc::c_int) {
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill {pid} {sig}");
}

/// SIGTERM, then the exit status and stderr.
fn terminate(mut rec: ChildGuard) -> (std::process::ExitStatus, String) {
    signal(rec.pid(), libc::SIGTERM);
    let status = rec
        .wait_timeout(Duration::from_secs(30))
        .expect("pyrometer did not exit within 30 s of SIGTERM");
    let mut stderr = String::new();
    if let Some(mut e) = rec.child().stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    (status, stderr)
}

fn no_temporary_files(dir: &Path) -> Result<(), String> {
    let left: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!("temporary files left: {left:?}"))
    }
}

/// Wait until `pid` catches SIGUSR1 (`SigCgt` in /proc/PID/status).
fn wait_for_sigusr1_handler(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .unwrap_or(0);
        if caught & (1 << (libc::SIGUSR1 - 1)) != 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pyrometer {pid} did not install its SIGUSR1 handler within 20 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn newest() -> Interp {
    let mut interps = require_all();
    interps.sort_by_key(|i| i.minor());
    interps.pop().expect("an interpreter")
}

#[test]
fn write_every_rewrites_complete_files_while_recording() {
    let interp = newest();
    let _cpu = cpu_lock();
    let scratch = Scratch::new("periodic-every");
    let out = scratch.file("live.pb.gz");
    let (target, _) = start_target(&interp, "pprof_split.py", &[]).unwrap();
    let rec = spawn_record(target.pid(), &out, &["--write-every", "1"]);
    let mut versions = Vec::new();
    let mut last = None;
    let polled = poll_versions(&out, &mut last, &mut versions, 3, Duration::from_secs(20));
    let (status, stderr) = terminate(rec);
    polled.unwrap_or_else(|e| panic!("{e}; pyrometer's stderr: {stderr}"));
    assert!(status.success(), "pyrometer failed: {status}: {stderr}");
    // Rewrites about a second apart (loaded machines stretch them).
    for w in versions.windows(2) {
        let gap = w[1].seen - w[0].seen;
        assert!(
            gap >= Duration::from_millis(500) && gap <= Duration::from_secs(5),
            "rewrites {gap:?} apart with --write-every 1"
        );
    }
    assert!(versions.last().unwrap().samples > versions[0].samples);
    let last_seen = versions.last().unwrap().samples;
    let fin = samples_of(&out).unwrap_or_else(|e| panic!("final file: {e}"));
    assert!(fin >= last_seen, "final {fin} < last periodic {last_seen}");
    assert!(stderr.contains("periodic writes:"), "{stderr}");
    no_temporary_files(&scratch.0).unwrap();
    println!(
        "versions: {:?}; final {fin}",
        versions.iter().map(|v| v.samples).collect::<Vec<_>>()
    );
}

#[test]
fn sigusr1_writes_now_and_sigterm_writes_the_final_file() {
    let interp = newest();
    let _cpu = cpu_lock();
    let scratch = Scratch::new("periodic-usr1");
    let out = scratch.file("live.pb.gz");
    let (target, _) = start_target(&interp, "pprof_split.py", &[]).unwrap();
    let rec = spawn_record(target.pid(), &out, &[]);
    // SIGUSR1 before the handler is installed would kill it: wait for it.
    wait_for_sigusr1_handler(rec.pid());
    let mut versions = Vec::new();
    let mut last = None;
    let mut latencies = Vec::new();
    let mut failure = None;
    for _ in 0..2 {
        let before = versions.len();
        let sent = Instant::now();
        signal(rec.pid(), libc::SIGUSR1);
        if let Err(e) = poll_versions(&out, &mut last, &mut versions, 1, Duration::from_secs(10)) {
            failure = Some(e);
            break;
        }
        latencies.push(versions[before].seen - sent);
        std::thread::sleep(Duration::from_millis(300));
    }
    let (status, stderr) = terminate(rec);
    if let Some(e) = failure {
        panic!("{e}; pyrometer's stderr: {stderr}");
    }
    assert!(status.success(), "pyrometer failed: {status}: {stderr}");
    println!("SIGUSR1 → new file in {latencies:?}");
    for l in &latencies {
        assert!(*l <= Duration::from_secs(1), "SIGUSR1 took {l:?} to write");
    }
    assert!(versions[1].samples > versions[0].samples);
    let fin = samples_of(&out).unwrap_or_else(|e| panic!("final file: {e}"));
    assert!(fin >= versions[1].samples);
    assert!(stderr.contains("stopped: interrupted"), "{stderr}");
    no_temporary_files(&scratch.0).unwrap();
}

#[test]
fn bad_periods_are_refused_with_a_message() {
    let scratch = Scratch::new("periodic-bad");
    let out_file = scratch.file("out.pb.gz");
    for (flags, message) in [
        (&["--write-every", "0"][..], "is not a number of seconds"),
        (&["--write-every", "1e30"][..], "is not a number of seconds"),
        (&["--write-every", "nan"][..], "is not a number of seconds"),
        (&["-d", "1e30"][..], "is not a number of seconds"),
        (
            &["-f", "chrometrace", "--timeline-samples", "0"][..],
            "--timeline-samples",
        ),
    ] {
        let mut args = vec!["record", "-o", out_file.to_str().unwrap()];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--", "/bin/true"]);
        let out = pyrometer(&args);
        let stderr = stderr_of(&out);
        assert_eq!(
            out.status.code(),
            Some(EXIT_USAGE),
            "{}: {stderr}",
            show(&args)
        );
        assert!(stderr.contains(message), "{}: {stderr}", show(&args));
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
