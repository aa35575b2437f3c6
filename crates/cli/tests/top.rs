//! `pyrometer top` in a real terminal: tmux (a private server per test,
//! no user config) runs a shell in a pane of a given size; the test types
//! the command, sends keys (`tmux send-keys`) and reads the screen
//! (`tmux capture-pane -p`):
//!
//! * every interpreter: the hot function of a busy script is the top row
//!   and the status line names the version; `q` leaves the alternate screen
//!   and the shell prompt is back;
//! * keys: sorting by another column and reversing change the order, a
//!   filter hides what does not match, each view shows its columns, help,
//!   pause, cumulative and reset; when the target exits the notice appears
//!   and the last view stays; afterwards `stty` shows a sane terminal;
//! * a 40×10 terminal with a launched command (`top -- CMD`), quit by Ctrl-C;
//! * gunicorn (image-service, 2 workers) under load: the endpoint with its
//!   rate and latency, master and workers in the processes view (and the
//!   worker gunicorn starts when one is killed, and the killed one counted
//!   as exited), the slow view's function; SIGTERM from outside restores
//!   the terminal;
//! * a target that execs a non-Python program: top names the exec, as
//!   record's summary does (the same tick path).
//!
//! Every wait is bounded; tmux servers, targets and servers are killed
//! however a test ends.

#[allow(unused_imports)]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::web::*;
use common::*;

/// The image-service load: the slow pure-Python filter and a fast one.
const IMAGE_MIX: &str = "process:noise_reduction=2,process:blur=1,health=1";

/// Longest wait for one thing to show up on the screen.
const SCREEN_TIMEOUT: Duration = Duration::from_secs(40);

/// A tmux server of our own with one session `t` running `sh`.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(tag: &str, width: u16, height: u16) -> Tmux {
        let tmux = Tmux {
            socket: format!("pyrometer-test-{}-{tag}", std::process::id()),
        };
        let (w, h) = (width.to_string(), height.to_string());
        tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            &w,
            "-y",
            &h,
        ])
        .and_then(|_| tmux.run(&["set-option", "-g", "status", "off"]))
        .and_then(|_| {
            tmux.run(&[
                "respawn-pane",
                "-k",
                "-t",
                "t",
                "env PS1='$ ' TERM=xterm-256color sh",
            ])
        })
        .unwrap_or_else(|e| panic!("cannot start tmux (scripts/setup.sh installs it): {e}"));
        let size = tmux.run(&[
            "display-message",
            "-p",
            "-t",
            "t",
            "#{pane_width}x#{pane_height}",
        ]);
        assert_eq!(
            size.as_deref().map(str::trim),
            Ok(format!("{width}x{height}").as_str()),
            "tmux pane size"
        );
        tmux.wait("the shell prompt", Duration::from_secs(10), |s| {
            s.contains("$")
        })
        .unwrap_or_else(|e| panic!("{e}"));
        tmux
    }

    fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = pyrometer_testsupport::run_with_timeout(
            Command::new("tmux").arg("-L").arg(&self.socket).args(args),
            Duration::from_secs(20),
        )?;
        if !out.status.success() {
            return Err(format!(
                "tmux {args:?}: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Send keys by tmux name (`q`, `Enter`, `C-c`, `Escape`).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        self.run(&args).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Type a shell command line and run it.
    fn type_line(&self, line: &str) {
        self.run(&["send-keys", "-t", "t", "-l", line])
            .unwrap_or_else(|e| panic!("{e}"));
        self.keys(&["Enter"]);
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "t"])
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn alternate_screen_on(&self) -> bool {
        self.run(&["display-message", "-p", "-t", "t", "#{alternate_on}"])
            .map(|s| s.trim() == "1")
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Wait until `ok(screen)`; the last screen in the error otherwise.
    fn wait(
        &self,
        what: &str,
        timeout: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        let t0 = Instant::now();
        loop {
            let s = self.screen();
            if ok(&s) {
                return Ok(s);
            }
            if t0.elapsed() > timeout {
                return Err(format!(
                    "{what}: not on the screen within {timeout:?}; the screen:\n{s}"
                ));
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// [`Tmux::wait`], panicking.
    fn expect(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        self.wait(what, SCREEN_TIMEOUT, ok)
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// `pyrometer top ARGS; echo TOP-EXIT=$?` as a shell line: the exit code
/// then shows as `TOP-EXIT=N`, which the typed line itself does not contain.
fn top_line(args: &[&str]) -> String {
    let mut line = format!("{PYROMETER} top");
    for a in args {
        line.push_str(&format!(" '{a}'"));
    }
    line.push_str("; echo TOP-EXIT=$?");
    line
}

/// The code `echo TOP-EXIT=$?` printed, once it has.
fn exit_code(screen: &str) -> Option<String> {
    screen.match_indices("TOP-EXIT=").find_map(|(i, m)| {
        let code: String = screen[i + m.len()..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        (!code.is_empty()).then_some(code)
    })
}

/// The `N` of the status line's `procs (N exited)`.
fn exited_count(screen: &str) -> Option<u64> {
    let line = screen.lines().find(|l| l.starts_with("Python "))?;
    let (_, rest) = line.split_once("procs (")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// The rows under the table header starting with `header`, trimmed.
fn rows_under(screen: &str, header: &str) -> Vec<String> {
    let lines: Vec<&str> = screen.lines().collect();
    let Some(i) = lines
        .iter()
        .position(|l| l.trim_start().starts_with(header))
    else {
        return Vec::new();
    };
    lines[i + 1..]
        .iter()
        .map(|l| l.trim().to_string())
        .take_while(|l| !l.is_empty())
        .collect()
}

fn first_row(screen: &str, header: &str) -> String {
    rows_under(screen, header)
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// The function name of a functions-view row (the column before FILE:LINE).
fn row_function(row: &str) -> String {
    let words: Vec<&str> = row.split_whitespace().collect();
    words
        .len()
        .checked_sub(2)
        .and_then(|i| words.get(i))
        .map(|w| w.to_string())
        .unwrap_or_default()
}

/// After `top` quit: exit code 0, the alternate screen left, the shell
/// prompt back, and the terminal modes `stty` reports sane.
fn check_restored(tmux: &Tmux, code: &str) {
    let screen = tmux.expect("top's exit code", |s| exit_code(s).is_some());
    assert_eq!(
        exit_code(&screen).as_deref(),
        Some(code),
        "top's exit code:\n{screen}"
    );
    assert!(
        !tmux.alternate_screen_on(),
        "the alternate screen is still on:\n{screen}"
    );
    assert!(
        !screen.contains("pyrometer top  functions"),
        "the top UI is still on the screen:\n{screen}"
    );
    tmux.type_line(
        "stty -a | tr -s ' ;' '\\n\\n' | grep -xE -- '-?(icanon|echo|isig|icrnl|opost)' | tr '\\n' ' '; echo STTY-$((40+2))",
    );
    let screen = tmux.expect("stty's modes", |s| s.contains("STTY-42"));
    let modes = screen
        .lines()
        .find(|l| l.contains("STTY-42"))
        .unwrap_or_default();
    for mode in ["icanon", "echo", "isig", "icrnl", "opost"] {
        let words: Vec<&str> = modes.split_whitespace().collect();
        assert!(
            words.contains(&mode) && !words.contains(&format!("-{mode}").as_str()),
            "terminal mode {mode} not restored: {modes:?}"
        );
    }
}

fn pick_one(interps: &[Interp]) -> Interp {
    interps
        .iter()
        .find(|i| i.minor() == (3, 12))
        .or_else(|| interps.first())
        .cloned()
        .expect("an interpreter")
}

#[test]
fn top_shows_the_hot_function_on_every_interpreter() {
    let interps = require_all();
    let _cpu = cpu_lock();
    let rows = par_map(&interps, 2, |interp| {
        let mut c = Checks::new(interp);
        let (target, _) = match start_target(interp, "top_busy.py", &["120"]) {
            Ok(t) => t,
            Err(e) => {
                c.fail("screen", e);
                return c;
            }
        };
        let tag = interp.label.replace(['.', ' '], "_");
        let tmux = Tmux::new(&tag, 80, 24);
        tmux.type_line(&top_line(&["--pid", &target.pid().to_string()]));
        let version = format!("Python {}", interp.version_string());
        let screen = tmux.wait("hot_spin as the top row", SCREEN_TIMEOUT, |s| {
            row_function(&first_row(s, "OWN%")) == "hot_spin" && s.contains(&version)
        });
        match screen {
            Ok(s) => {
                c.check("screen", s.contains("warm_spin"), || {
                    format!("no warm_spin row:\n{s}")
                });
                c.check("screen", s.contains("top_busy.py:"), || {
                    format!("no file:line:\n{s}")
                });
            }
            Err(e) => c.fail("screen", e),
        }
        tmux.keys(&["q"]);
        match tmux.wait("the exit code", SCREEN_TIMEOUT, |s| exit_code(s).is_some()) {
            Ok(s) => {
                c.check("quit", exit_code(&s).as_deref() == Some("0"), || {
                    format!("exit:\n{s}")
                });
                c.check("quit", !tmux.alternate_screen_on(), || {
                    "alternate screen still on".into()
                });
                c.check("quit", !s.contains("pyrometer top  functions"), || {
                    format!("UI left on screen:\n{s}")
                });
            }
            Err(e) => c.fail("quit", e),
        }
        drop(target);
        c
    });
    finish("pyrometer top", &["screen", "quit"], &rows);
}

#[test]
fn top_keys_sort_filter_views_and_target_exit() {
    let interp = pick_one(&require_all());
    let _cpu = cpu_lock();
    let (mut target, _) =
        start_target(&interp, "top_busy.py", &["120"]).unwrap_or_else(|e| panic!("{e}"));
    let pid = target.pid().to_string();
    let tmux = Tmux::new("keys", 80, 24);
    tmux.type_line(&top_line(&["--pid", &pid]));

    // Sorted by own time: hot_spin first.
    tmux.expect("hot_spin on top", |s| {
        row_function(&first_row(s, "OWN%")) == "hot_spin"
    });
    // By function name (column 9): "<module>" sorts first; reversed, warm_spin.
    tmux.keys(&["9"]);
    tmux.expect("sorted by name", |s| {
        row_function(&first_row(s, "OWN%")) == "<module>" && s.contains("FUNCTION▼")
    });
    tmux.keys(&["r"]);
    let reversed = tmux.expect("reversed", |s| {
        row_function(&first_row(s, "OWN%")) == "warm_spin" && s.contains("FUNCTION▲")
    });
    // Z to A by name (the napping thread, caught waking, may add rows).
    let names: Vec<String> = rows_under(&reversed, "OWN%")
        .iter()
        .map(|r| row_function(r).to_lowercase())
        .collect();
    let mut descending = names.clone();
    descending.sort_by(|a, b| b.cmp(a));
    assert_eq!(names, descending, "{reversed}");
    assert!(
        names.iter().position(|n| n == "warm_spin") < names.iter().position(|n| n == "hot_spin"),
        "{reversed}"
    );
    tmux.keys(&["1"]);
    tmux.expect("sorted by own time again", |s| {
        row_function(&first_row(s, "OWN%")) == "hot_spin"
    });

    // A filter: only matching rows.
    tmux.keys(&["/"]);
    tmux.run(&["send-keys", "-t", "t", "-l", "warm"]).unwrap();
    tmux.keys(&["Enter"]);
    let filtered = tmux.expect("the filter", |s| {
        let rows = rows_under(s, "OWN%");
        s.contains("filter: warm") && rows.len() == 1 && row_function(&rows[0]) == "warm_spin"
    });
    assert!(!filtered.contains("hot_spin"), "{filtered}");
    // Esc alone (a pause first: ESC followed by a key would be Alt-key).
    std::thread::sleep(Duration::from_millis(300));
    tmux.keys(&["Escape"]);
    tmux.expect("the filter cleared", |s| {
        !s.contains("filter:") && s.contains("hot_spin") && s.contains("warm_spin")
    });
    std::thread::sleep(Duration::from_millis(300));

    // Views.
    tmux.keys(&["l"]);
    let lines = tmux.expect("the lines view", |s| {
        let header = s.lines().find(|l| l.starts_with("OWN%")).unwrap_or("");
        header.contains("FILE:LINE") && header.find("FILE:LINE") < header.find("FUNCTION")
    });
    // A line of hot_spin's body, attributed to hot_spin.
    let source = std::fs::read_to_string(common::target("top_busy.py")).expect("top_busy.py");
    let def = source
        .lines()
        .position(|l| l.starts_with("def hot_spin"))
        .expect("def hot_spin")
        + 1;
    assert!(
        rows_under(&lines, "OWN%").iter().any(|r| {
            r.ends_with("hot_spin")
                && (def + 1..=def + 3).any(|n| r.contains(&format!("top_busy.py:{n} ")))
        }),
        "no line {}..={} of hot_spin:\n{lines}",
        def + 1,
        def + 3
    );
    tmux.keys(&["p"]);
    // With its RSS from the last memory reading (every 100 ms).
    tmux.expect("the processes view with RSS", |s| {
        rows_under(s, "PID")
            .iter()
            .any(|r| r.starts_with(&pid) && r.contains(" MiB "))
            && s.contains("SAMP/s")
            && s.contains("RSS")
    });
    tmux.keys(&["e"]);
    tmux.expect("the endpoints view", |s| {
        s.contains("ENDPOINT") && s.contains("P95 ms")
    });
    tmux.keys(&["Tab"]);
    tmux.expect("Tab to processes", |s| s.contains("SAMP/s"));
    tmux.keys(&["Tab"]);
    tmux.expect("Tab round to functions", |s| {
        s.contains("FILE:LINE") && s.contains("hot_spin")
    });
    tmux.keys(&["?"]);
    tmux.expect("the help", |s| s.contains("reverse the sort"));
    tmux.keys(&["x"]);
    tmux.expect("the help closed", |s| !s.contains("reverse the sort"));
    tmux.keys(&["Space"]);
    tmux.expect("paused", |s| s.contains("PAUSED"));
    tmux.keys(&["Space"]);
    tmux.expect("running again", |s| !s.contains("PAUSED"));
    tmux.keys(&["c"]);
    tmux.expect("cumulative", |s| s.contains("cumulative"));
    let samples = |s: &str| -> Option<u64> {
        let line = s.lines().find(|l| l.starts_with("Python "))?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let i = words.iter().position(|w| *w == "samples")?;
        words.get(i.checked_sub(1)?)?.parse().ok()
    };
    tmux.expect("some samples", |s| samples(s).is_some_and(|n| n >= 300));
    tmux.keys(&["0"]);
    tmux.expect("reset", |s| samples(s).is_some_and(|n| n < 250));

    // The target exits: the notice, and the last view stays.
    // SAFETY: kill(2) of the target this test started.
    unsafe { libc::kill(target.pid(), libc::SIGKILL) };
    let _ = target.wait_timeout(Duration::from_secs(10));
    let ended = tmux.expect("the target-exited notice", |s| s.contains("target exited"));
    assert!(ended.contains("hot_spin"), "{ended}");
    std::thread::sleep(Duration::from_millis(1500));
    let still = tmux.screen();
    assert!(
        still.contains("target exited") && still.contains("hot_spin"),
        "{still}"
    );
    tmux.keys(&["q"]);
    check_restored(&tmux, "0");
}

/// PIDs of the `pyrometer top` processes whose command line has `marker`.
fn top_pids(marker: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.starts_with(PYROMETER) && cmd.contains(" top ") && cmd.contains(marker) {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn top_exits_when_its_terminal_goes_away_after_the_target() {
    // A terminal that hangs up (its window closed, tmux killed) while the
    // view shows an exited target: nobody can press q any more, so top must
    // end by itself instead of polling a dead terminal for ever.
    let interp = pick_one(&require_all());
    let (mut target, _) =
        start_target(&interp, "top_busy.py", &["60"]).unwrap_or_else(|e| panic!("{e}"));
    let pid = target.pid().to_string();
    let tmux = Tmux::new("hangup", 80, 24);
    tmux.type_line(&top_line(&["--pid", &pid]));
    tmux.expect("the hot function", |s| s.contains("hot_spin"));
    // SAFETY: kill(2) of the target this test started.
    unsafe { libc::kill(target.pid(), libc::SIGKILL) };
    let _ = target.wait_timeout(Duration::from_secs(10));
    tmux.expect("the target-exited notice", |s| s.contains("target exited"));
    let marker = format!("--pid {pid}");
    let tops = top_pids(&marker);
    assert_eq!(tops.len(), 1, "one top process for {marker}: {tops:?}");
    drop(tmux); // kill-server: the pane's terminal hangs up
    let deadline = Instant::now() + Duration::from_secs(15);
    while !top_pids(&marker).is_empty() {
        assert!(
            Instant::now() < deadline,
            "top {tops:?} still runs 15 s after its terminal went away"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn top_in_a_small_terminal_with_a_launched_command() {
    let interp = pick_one(&require_all());
    let _cpu = cpu_lock();
    let tmux = Tmux::new("small", 40, 10);
    let python = interp.path.to_string_lossy().into_owned();
    let script = target("top_busy.py").to_string_lossy().into_owned();
    tmux.type_line(&top_line(&["--", &python, "-u", &script, "8"]));
    let screen = tmux.expect("hot_spin in 40x10", |s| {
        s.contains("OWN%") && s.contains("hot_spin")
    });
    for l in screen.lines() {
        assert!(l.chars().count() <= 40, "{l:?}");
    }
    tmux.expect("the target-exited notice", |s| s.contains("target exited"));
    let last = tmux.screen();
    assert!(last.contains("hot_spin"), "{last}");
    tmux.keys(&["C-c"]);
    check_restored(&tmux, "0");
}

#[test]
fn a_panic_in_top_restores_the_terminal() {
    let interp = pick_one(&require_all());
    let _cpu = cpu_lock();
    let (target, _) =
        start_target(&interp, "top_busy.py", &["60"]).unwrap_or_else(|e| panic!("{e}"));
    let tmux = Tmux::new("panic", 80, 24);
    let line = format!(
        "PYROMETER_TEST_PANIC_IN_TOP=1 {}",
        top_line(&["--pid", &target.pid().to_string()])
    );
    tmux.type_line(&line);
    let screen = tmux.expect("the panic message", |s| exit_code(s).is_some());
    assert!(
        screen.contains("panicking as the tests asked"),
        "the panic message is not on the normal screen:\n{screen}"
    );
    // Rust's exit code for a panic.
    check_restored(&tmux, "101");
}

#[test]
fn top_on_gunicorn_shows_endpoints_and_workers() {
    let scratch = Scratch::new("top-web");
    venv("image-service");
    let _cpu = cpu_lock();
    let (server, workers) = image_service(&scratch, 2, "sync");
    let load = start_load(&scratch, server.port, 25.0, 4, IMAGE_MIX, &[]);
    let tmux = Tmux::new("web", 100, 30);
    let master = server.master().to_string();
    tmux.type_line(&top_line(&["--pid", &master, "--subprocesses"]));
    tmux.expect("the top UI", |s| s.contains("pyrometer top"));

    tmux.keys(&["e"]);
    let endpoints = tmux.expect("POST app.process with a rate and latency", |s| {
        rows_under(s, "REQ/s").iter().any(|r| {
            let w: Vec<&str> = r.split_whitespace().collect();
            r.ends_with("POST app.process")
                && w.first()
                    .and_then(|x| x.parse::<f64>().ok())
                    .is_some_and(|x| x > 0.0)
                && w.get(2)
                    .and_then(|x| x.parse::<f64>().ok())
                    .is_some_and(|x| x > 0.0)
                && w.get(3)
                    .and_then(|x| x.parse::<f64>().ok())
                    .is_some_and(|x| x > 0.0)
        })
    });
    println!("{endpoints}");

    tmux.keys(&["p"]);
    let procs = tmux.expect("master and workers", |s| {
        let rows = rows_under(s, "PID");
        rows.iter()
            .any(|r| r.starts_with(&master) && r.contains("master"))
            && workers.iter().all(|w| {
                rows.iter()
                    .any(|r| r.starts_with(&w.to_string()) && r.contains("worker"))
            })
    });
    println!("{procs}");

    // A worker killed: gunicorn starts another, which shows up as a worker.
    let victim = workers[0];
    // SAFETY: kill(2) of a gunicorn worker this test started.
    unsafe { libc::kill(victim, libc::SIGKILL) };
    let replaced = tmux.expect("the replacement worker", |s| {
        rows_under(s, "PID").iter().any(|r| {
            let pid = r.split_whitespace().next().unwrap_or("");
            r.contains("worker") && pid != master && !workers.iter().any(|w| w.to_string() == pid)
        })
    });
    println!("{replaced}");
    // The exit came through the same tick path as record's (which drops
    // the worker's caches): the status line counts it, and the killed
    // worker's row says it exited.
    let exited = tmux.expect("an exited process in the status line", |s| {
        exited_count(s).is_some_and(|n| n >= 1)
    });
    println!("{exited}");
    // Cumulative: the killed worker's samples stay, under an exited row.
    tmux.keys(&["c"]);
    let row = tmux.expect("the killed worker's row, exited", |s| {
        rows_under(s, "PID").iter().any(|r| {
            r.split_whitespace().next() == Some(victim.to_string().as_str()) && r.contains("exited")
        })
    });
    println!("{row}");
    tmux.keys(&["c"]);

    tmux.keys(&["f"]);
    tmux.keys(&["c"]);
    tmux.expect("noise_reduction among the functions", |s| {
        rows_under(s, "OWN%")
            .iter()
            .any(|r| row_function(r) == "noise_reduction")
    });

    // SIGTERM from outside: the terminal is restored all the same.
    let shell: i32 = tmux
        .run(&["display-message", "-p", "-t", "t", "#{pane_pid}"])
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .expect("the pane's shell pid");
    let top_pid = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|p| p.parse::<i32>().ok())
        })
        .expect("top's pid (the shell's child)");
    // SAFETY: kill(2) of the pyrometer this test started in the pane.
    unsafe { libc::kill(top_pid, libc::SIGTERM) };
    check_restored(&tmux, "0");
    let doc = load.finish();
    assert!(doc["ok"].as_u64().unwrap_or(0) > 0, "{doc}");
    drop(server);
}

/// The target execs a non-Python program under `top`: top says so (as
/// record's summary does), keeps the last view, and quits cleanly.
#[test]
fn top_when_the_target_execs_another_program() {
    let interp = pick_one(&require_all());
    let _cpu = cpu_lock();
    let (target, _) =
        start_target(&interp, "faults.py", &["exec", "3"]).unwrap_or_else(|e| panic!("{e}"));
    let pid = target.pid().to_string();
    let tmux = Tmux::new("exec", 120, 24);
    tmux.type_line(&top_line(&["--pid", &pid]));
    tmux.expect("spin_here sampled", |s| s.contains("spin_here"));
    let ended = tmux.expect("the exec notice", |s| {
        s.contains("the target replaced itself with another program (exec)")
    });
    println!("{ended}");
    assert!(ended.contains(&format!("pid {pid}")), "{ended}");
    assert!(
        ended.contains("spin_here"),
        "the last view is gone:\n{ended}"
    );
    assert_eq!(exited_count(&ended), Some(1), "{ended}");
    // The exec'd program runs on: top stopped on the exec, not on an exit.
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    assert!(
        exe.as_deref()
            .and_then(|p| p.file_name())
            .is_some_and(|n| n == "sleep"),
        "the target should be running sleep now, not {exe:?}"
    );
    tmux.keys(&["q"]);
    check_restored(&tmux, "0");
}

#[test]
fn top_idle_shows_sleeping_threads() {
    let interp = pick_one(&require_all());
    let _cpu = cpu_lock();
    let (target, _) =
        start_target(&interp, "top_busy.py", &["60"]).unwrap_or_else(|e| panic!("{e}"));
    let tmux = Tmux::new("idle", 80, 24);
    tmux.type_line(&top_line(&["--pid", &target.pid().to_string(), "--idle"]));
    // Half the samples are the sleeping thread's: nap_forever leads, all idle;
    // hot_spin runs Python.
    let screen = tmux.expect("nap_forever idle and hot_spin running", |s| {
        let rows = rows_under(s, "OWN%");
        let cells = |name: &str| -> Vec<String> {
            rows.iter()
                .find(|r| row_function(r) == name)
                .map(|r| r.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        // OWN% TOTAL% OWN s TOTAL s PY NAT GIL IDLE FUNCTION FILE:LINE
        let nap = cells("nap_forever");
        let hot = cells("hot_spin");
        nap.get(7).map(String::as_str) == Some("100")
            && nap.get(4).map(String::as_str) == Some("0")
            && hot.get(4).map(String::as_str) == Some("100")
            && row_function(rows.first().map(String::as_str).unwrap_or("")) == "nap_forever"
    });
    println!("{screen}");
    tmux.keys(&["q"]);
    check_restored(&tmux, "0");
}

#[test]
fn top_refuses_bad_input_with_clear_messages() {
    // Not a terminal: told to use record instead.
    let out = pyrometer(&["top", "--pid", "1"]);
    assert_eq!(out.status.code(), Some(EXIT_FAILURE), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("needs a terminal"),
        "{}",
        stderr_of(&out)
    );
    let out = pyrometer(&["top", "--pid", "1", "-r", "0"]);
    assert_eq!(out.status.code(), Some(EXIT_USAGE), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("--rate"), "{}", stderr_of(&out));
    let out = pyrometer(&["top"]);
    assert_eq!(out.status.code(), Some(EXIT_USAGE), "{}", stderr_of(&out));

    // In a terminal: a PID that does not exist (3), a process that is not
    // Python (the pane's own shell: 5); the terminal is left as it was.
    let tmux = Tmux::new("bad", 80, 24);
    tmux.type_line(&top_line(&["--pid", "2147483647"]));
    let screen = tmux.expect("no such process", |s| exit_code(s).is_some());
    assert_eq!(exit_code(&screen).as_deref(), Some("3"), "{screen}");
    assert!(screen.contains("no process with PID"), "{screen}");
    tmux.type_line("clear");
    tmux.expect("a clear screen", |s| !s.contains("TOP-EXIT"));
    let shell = tmux
        .run(&["display-message", "-p", "-t", "t", "#{pane_pid}"])
        .unwrap_or_default();
    tmux.type_line(&top_line(&["--pid", shell.trim()]));
    let screen = tmux.expect("not a Python process", |s| exit_code(s).is_some());
    assert!(
        screen.contains("does not look like a Python program"),
        "{screen}"
    );
    check_restored(&tmux, "5");
}
