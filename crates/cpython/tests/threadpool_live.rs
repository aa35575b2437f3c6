//! Sync endpoints in an anyio thread pool, on every interpreter of the
//! machine (pyenv 3.8–3.13 and Debian's /usr/bin/python3.11, see
//! `pyrometer-testsupport`): `tests/data/threadpool_target.py` runs four
//! calls in worker threads shaped like anyio 4's (`WorkerThread.run` with its
//! locals, `CancelScope.__slots__` holding the awaiting task: C tasks for
//! two, asyncio's pure-Python task, a Python subclass of the C task) and one
//! idle worker. From
//! outside, each busy worker's request must be found through
//! `cancel_scope._host_task` → the task's coroutine → its `self.scope` or
//! `scope` local — which exercises the measured `asyncio_task_coro` and
//! `coro_frame` offsets of each version — and the idle one must have none.

use std::path::Path;
use std::time::{Duration, Instant};

use pyrometer_cpython::{locate, RequestInfo, StackReader};
use pyrometer_process::Process;
use pyrometer_testsupport::serde_json::{self, Value};
use pyrometer_testsupport::{par_map, require_all, spawn_python, Interp};

/// How long the target may take until both calls are seen running.
const SETTLE: Duration = Duration::from_secs(20);

/// Each worker's request (by `threading.get_ident()`), read until the four busy
/// workers show their view on the stack.
fn requests_by_worker(i: &Interp) -> [Option<RequestInfo>; 5] {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/threadpool_target.py");
    let (child, ready) = spawn_python(i, &script, &[]);
    let doc: Value = serde_json::from_str(&ready).unwrap_or_else(|e| panic!("{i}: {ready}: {e}"));
    let ids = ["cycle", "app", "pytask", "subtask", "idle"].map(|k| {
        doc[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{i}: no {k} in {ready}"))
    });
    let process = Process::attach(child.pid()).expect("attach");
    let interp = locate(&process).expect("locate");
    let mut reader = StackReader::new(&process, interp);
    let deadline = Instant::now() + SETTLE;
    loop {
        let stacks = reader.read_all().expect("read the stacks");
        let by_id = |id: u64| stacks.iter().find(|s| s.thread_id == id);
        let busy_seen = ids[..4].iter().all(|id| {
            by_id(*id).is_some_and(|s| s.frames.iter().any(|f| &*f.code.name == "sync_view"))
        });
        if busy_seen {
            return ids.map(|id| {
                let s = by_id(id).unwrap_or_else(|| panic!("{i}: no thread {id}"));
                let r = reader.threadpool_request_of(s);
                if let Some(r) = &r {
                    let at = s.frames.get(r.frame_index).map(|f| f.name.to_string());
                    assert_eq!(
                        at.as_deref(),
                        Some("WorkerThread.run"),
                        "{i}: the request's frame is the worker loop's"
                    );
                }
                r
            });
        }
        assert!(
            Instant::now() < deadline,
            "{i}: the four calls were not seen in sync_view within {SETTLE:?}: {stacks:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn threadpool_calls_are_attributed_to_the_awaiting_request() {
    let interps = require_all();
    let report = par_map(&interps, 3, |i| {
        let [cycle, app, pytask, subtask, idle] = requests_by_worker(i);
        let got = |r: &Option<RequestInfo>| {
            r.as_ref()
                .map(|r| format!("{} {}", r.method, r.path))
                .unwrap_or_else(|| "none".into())
        };
        let line = format!(
            "{i}: self.scope → {}, scope local → {}, Python task → {}, C task subclass → {}, idle → {}",
            got(&cycle),
            got(&app),
            got(&pytask),
            got(&subtask),
            got(&idle)
        );
        let ok = got(&cycle) == "PATCH /items/42"
            && got(&app) == "DELETE /orders/7"
            && got(&pytask) == "PUT /py/1"
            && got(&subtask) == "POST /sub/2"
            && idle.is_none();
        (ok, line)
    });
    for (_, line) in &report {
        println!("{line}");
    }
    assert!(
        report.iter().all(|(ok, _)| *ok),
        "expected PATCH /items/42, DELETE /orders/7, PUT /py/1, POST /sub/2 and no request on the idle worker:\n{}",
        report
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}
