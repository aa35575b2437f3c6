//! A deterministic stream of samples shaped like a busy gunicorn service
//! sampled fast: several worker processes, threads whose idents are reused
//! as they come and go, a web stack under a dozen views whose lines rotate,
//! requests of varying length with high-cardinality raw paths, idle gaps in
//! the accept loop. Shared by the soak replay benchmark and the soak test.

use std::sync::Arc;
use std::time::Duration;

use pyrometer_sampler::{Category, Sample, SampledFrame, SampledRequest, ThreadState};

/// Worker processes.
pub const PROCESSES: i32 = 4;
/// Thread idents per process that threads come and go on (CPython reuses
/// idents of finished threads).
pub const THREAD_IDENTS: u64 = 6;
/// Threads alive per process at once.
const THREADS_ALIVE: usize = 3;
/// Views (endpoints).
pub const VIEWS: usize = 12;

struct Function {
    name: Arc<str>,
    filename: Arc<str>,
    first_line: i32,
    /// Lines the function's samples rotate over.
    lines: i32,
    code_key: u64,
}

struct Thread {
    ident: u64,
    native_id: i32,
    /// A pool thread's name: a thread that replaces an ended one on the
    /// same ident has the same name (as a thread pool's threads do).
    name: Arc<str>,
    request: Option<OpenRequest>,
    /// Samples until the thread leaves the accept loop (when idle).
    idle_left: u32,
}

struct OpenRequest {
    key: u64,
    view: usize,
    left: u32,
    path: Arc<str>,
}

/// The generator; `next_tick` yields the samples of one tick.
pub struct ServiceStream {
    rng: u64,
    functions: Vec<Function>,
    threads: Vec<Vec<Thread>>,
    next_native: i32,
    next_request: u64,
    tick: u64,
    /// Distinct raw paths handed out so far (an upper bound: ids repeat rarely).
    pub paths_generated: u64,
    endpoints: Vec<Arc<str>>,
    methods: [Arc<str>; 2],
}

const SERVER: &[&str] = &[
    "gunicorn.app.base:run",
    "gunicorn.arbiter:Arbiter.run",
    "gunicorn.arbiter:Arbiter.spawn_worker",
    "gunicorn.workers.base:Worker.init_process",
    "gunicorn.workers.sync:SyncWorker.run",
    "gunicorn.workers.sync:SyncWorker.run_for_one",
    "gunicorn.workers.sync:SyncWorker.accept",
    "gunicorn.workers.sync:SyncWorker.handle",
    "gunicorn.workers.sync:SyncWorker.handle_request",
    "flask.app:Flask.wsgi_app",
    "flask.app:Flask.full_dispatch_request",
    "flask.app:Flask.dispatch_request",
];
/// Helpers views call, each a few levels deep.
const HELPERS: usize = 24;

impl ServiceStream {
    /// A stream seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        let mut functions = Vec::new();
        let mut add = |name: String, filename: String, lines: i32| {
            let i = functions.len() as i32;
            functions.push(Function {
                name: name.into(),
                filename: filename.into(),
                first_line: 10 + i * 40,
                lines,
                code_key: 0x7f00_0000_0000 + (i as u64) * 0x140,
            });
        };
        for s in SERVER {
            let (module, name) = s.split_once(':').unwrap_or(("", s));
            add(
                name.to_string(),
                format!(
                    "/venv/lib/python3.12/site-packages/{}.py",
                    module.replace('.', "/")
                ),
                3,
            );
        }
        for v in 0..VIEWS {
            add(format!("view_{v}"), "/srv/app/views.py".to_string(), 12);
        }
        for h in 0..HELPERS {
            add(
                format!("helper_{h}"),
                format!("/srv/app/lib/mod{}.py", h % 5),
                20,
            );
        }
        let endpoints = (0..VIEWS)
            .map(|v| Arc::from(format!("GET app.view_{v}")))
            .collect();
        let mut s = ServiceStream {
            rng: seed | 1,
            functions,
            threads: Vec::new(),
            next_native: 1000,
            next_request: 1,
            tick: 0,
            paths_generated: 0,
            endpoints,
            methods: [Arc::from("GET"), Arc::from("POST")],
        };
        for _ in 0..PROCESSES {
            let mut threads = Vec::new();
            for ident in 0..THREADS_ALIVE as u64 {
                threads.push(s.new_thread(0x7000 + ident));
            }
            s.threads.push(threads);
        }
        s
    }

    fn next(&mut self) -> u64 {
        // xorshift64*: deterministic, no dependency.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn new_thread(&mut self, ident: u64) -> Thread {
        self.next_native += 1;
        Thread {
            ident,
            native_id: self.next_native,
            name: Arc::from(format!("pool worker {:x}", ident & 0xffff)),
            request: None,
            idle_left: 0,
        }
    }

    /// Frame of function `f`: a caller stands at the call site of its
    /// callee (a fixed line), the innermost frame on any of its lines.
    fn frame(&mut self, f: usize, callee: Option<usize>) -> SampledFrame {
        let lines = self.functions[f].lines;
        let line_offset = match callee {
            Some(c) => ((c * 7 + f) % lines.max(1) as usize) as i32,
            None => self.below(lines as u64) as i32,
        };
        let func = &self.functions[f];
        SampledFrame {
            name: func.name.clone(),
            filename: func.filename.clone(),
            line: func.first_line + 1 + line_offset,
            first_line: func.first_line,
            code_key: func.code_key,
        }
    }

    /// The samples of the next tick, one per live thread of every process;
    /// the tick is `period` after the previous one.
    pub fn next_tick(&mut self, period: Duration, out: &mut Vec<Sample>) {
        out.clear();
        let time = period.saturating_mul(self.tick as u32);
        self.tick += 1;
        for p in 0..self.threads.len() {
            // Threads come and go: now and then one ends and a new one starts
            // on a free ident.
            if self.below(20_000) == 0 {
                let slot = self.below(THREADS_ALIVE as u64) as usize;
                let used: Vec<u64> = self.threads[p].iter().map(|t| t.ident).collect();
                let free = (0..THREAD_IDENTS)
                    .map(|i| 0x7000 + i)
                    .find(|i| !used.contains(i));
                if let Some(ident) = free {
                    let t = self.new_thread(ident);
                    self.threads[p][slot] = t;
                }
            }
            for t in 0..self.threads[p].len() {
                let s = self.sample_thread(p, t, time);
                out.push(s);
            }
        }
    }

    fn sample_thread(&mut self, p: usize, t: usize, time: Duration) -> Sample {
        let pid = 2000 + p as i32;
        let busy_server_depth = SERVER.len();
        let mut frames = Vec::with_capacity(24);
        let mut state = ThreadState::Idle;
        let mut request = None;
        let mut category = None;
        let mut starts_request = false;
        {
            let th = &mut self.threads[p][t];
            if th.request.is_none() && th.idle_left > 0 {
                th.idle_left -= 1;
            } else if th.request.is_none() {
                starts_request = true;
            }
        }
        if starts_request {
            let view = self.below(VIEWS as u64) as usize;
            let left = 1 + self.below(if view.is_multiple_of(4) { 200 } else { 30 }) as u32;
            let path: Arc<str> = Arc::from(format!(
                "/items/{}?page={}",
                self.below(1_000_000),
                self.below(50)
            ));
            self.paths_generated += 1;
            let key = self.next_request;
            self.next_request += 1;
            self.threads[p][t].request = Some(OpenRequest {
                key,
                view,
                left,
                path,
            });
        }
        let open = self.threads[p][t]
            .request
            .as_ref()
            .map(|r| (r.key, r.view, r.path.clone()));
        match open {
            Some((key, view, path)) => {
                for f in (0..busy_server_depth).rev() {
                    frames.push(f);
                }
                frames.push(SERVER.len() + view);
                // A view calls a chain of helpers, 1–8 deep, chosen per view.
                let depth = 1 + self.below(8) as usize;
                for d in 0..depth {
                    frames.push(SERVER.len() + VIEWS + (view * 3 + d * 5) % HELPERS);
                }
                state = match self.below(10) {
                    0 => ThreadState::Native,
                    1 => ThreadState::GilWait,
                    2 => ThreadState::Idle,
                    _ => ThreadState::Python,
                };
                category = Some(if self.below(3) == 0 {
                    Category::Database
                } else {
                    Category::App
                });
                let method = self.methods[view % 2].clone();
                request = Some(SampledRequest {
                    key,
                    method,
                    path,
                    endpoint: self.endpoints[view].clone(),
                });
                let th = &mut self.threads[p][t];
                if let Some(r) = th.request.as_mut() {
                    r.left = r.left.saturating_sub(1);
                    if r.left == 0 {
                        th.request = None;
                        th.idle_left = self.rng as u32 % 20;
                    }
                }
            }
            None => {
                // Waiting in accept().
                for f in (0..7).rev() {
                    frames.push(f);
                }
            }
        }
        // Frames were pushed root first; samples carry them innermost first.
        frames.reverse();
        let frames = (0..frames.len())
            .map(|i| {
                let callee = i.checked_sub(1).and_then(|c| frames.get(c)).copied();
                self.frame(frames[i], callee)
            })
            .collect();
        let th = &self.threads[p][t];
        Sample {
            time,
            pid,
            thread_id: th.ident,
            native_id: Some(th.native_id),
            thread_name: Some(th.name.clone()),
            state,
            holds_gil: state == ThreadState::Python,
            frames,
            truncated: false,
            walked: true,
            request,
            category,
        }
    }
}
