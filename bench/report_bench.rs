//! Report generation at scale: synthesizes a profile of 1 million thread
//! samples with the shape of a busy web service (8 worker processes of 8
//! threads, 200 endpoints of 30 call paths each, 3000 functions in 300
//! files, tens of thousands of distinct stacks, requests, categories,
//! 100 Hz ticks), aggregated through the same `Profile::add_sample` path a
//! recording uses, then renders it in every format and prints the time
//! (wall and CPU, best of 3) and size of each as a Markdown table.
//!
//! ```sh
//! cargo run --release -p pyrometer-outputs --example report_bench [-- SAMPLES [ONLY]]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use pyrometer_outputs::{
    decode_pprof, read_pprof, write_chrometrace, write_flamegraph, write_folded, write_html,
    write_pprof, write_speedscope, StackOptions,
};
use pyrometer_profile::Profile;
use pyrometer_sampler::{Category, Sample, SampledFrame, SampledRequest, ThreadState};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const PROCESSES: i32 = 8;
const THREADS_PER_PROCESS: i32 = 8;
const ENDPOINTS: usize = 200;
const FUNCTIONS: usize = 3000;
const RATE: f64 = 100.0;
const PATHS_PER_ENDPOINT: usize = 30;

struct Func {
    name: Arc<str>,
    file: Arc<str>,
    first_line: i32,
}

/// Frames for a path of functions, root first: a caller is at the line
/// that calls its callee (fixed per pair), the leaf at one of a few lines.
fn frames_of(funcs: &[Func], path: &[usize], rng: &mut Rng) -> Vec<SampledFrame> {
    path.iter()
        .enumerate()
        .map(|(k, &i)| {
            let f = &funcs[i % funcs.len()];
            let offset = match path.get(k + 1) {
                Some(callee) => (callee * 7919 % 12) as i32,
                None => rng.below(6) as i32,
            };
            SampledFrame {
                name: f.name.clone(),
                filename: f.file.clone(),
                line: f.first_line + 1 + offset,
                first_line: f.first_line,
                code_key: i as u64 + 1,
            }
        })
        .collect()
}

fn synthesize(samples: u64) -> Profile {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let funcs: Vec<Func> = (0..FUNCTIONS)
        .map(|i| {
            let pkg = ["app", "flask", "werkzeug", "sqlalchemy", "jinja2", "json"][i % 6];
            Func {
                name: Arc::from(format!("{pkg}_function_{i}")),
                file: Arc::from(format!(
                    "/srv/venv/lib/python3.12/site-packages/{pkg}/module_{}.py",
                    i % 300
                )),
                first_line: 10 + (i % 500) as i32 * 3,
            }
        })
        .collect();
    // The server's own frames, then per endpoint a view and the code it
    // calls (a pool of functions each endpoint draws its tails from).
    let server: Vec<usize> = (0..14).map(|i| 6 * i + 1).collect();
    let views: Vec<(String, usize, Vec<Vec<usize>>)> = (0..ENDPOINTS)
        .map(|e| {
            // The code an endpoint runs: a few dozen call paths.
            let pool = (0..PATHS_PER_ENDPOINT)
                .map(|_| {
                    (0..(2 + rng.below(14)))
                        .map(|_| rng.below(FUNCTIONS as u64) as usize)
                        .collect()
                })
                .collect();
            let method = ["GET", "POST", "PUT", "DELETE"][e % 4];
            (format!("{method} app.views.view_{e}"), 6 * (100 + e), pool)
        })
        .collect();
    let mut p = Profile::new();
    for pid in 0..PROCESSES {
        p.set_process(1000 + pid, &format!("gunicorn: worker [app:{pid}]"));
    }
    p.set_period(Duration::from_secs_f64(1.0 / RATE));
    let threads = (PROCESSES * THREADS_PER_PROCESS) as u64;
    // Each thread serves one request for a number of ticks, then the next.
    let mut current: Vec<(usize, u64, u64)> = (0..threads).map(|_| (0, 0, 0)).collect();
    let mut key = 0u64;
    let mut left = samples;
    let mut tick = 0u64;
    while left > 0 {
        for t in 0..threads {
            if left == 0 {
                break;
            }
            left -= 1;
            let (endpoint, req_key, ticks_left) = &mut current[t as usize];
            if *ticks_left == 0 {
                // Endpoint popularity is skewed: a few are hot.
                let r = rng.below(1000) as usize;
                *endpoint = (r * r / 1000) * ENDPOINTS / 1000;
                key += 1;
                *req_key = key;
                *ticks_left = 1 + rng.below(30);
            }
            *ticks_left -= 1;
            let (name, view, pool) = &views[*endpoint];
            let idle = rng.below(100) < 12;
            let mut path: Vec<usize> = server.clone();
            let request = if idle {
                None
            } else {
                path.push(*view);
                path.extend_from_slice(&pool[rng.below(pool.len() as u64) as usize]);
                Some(SampledRequest {
                    key: *req_key,
                    method: Arc::from(&name[..name.find(' ').unwrap_or(0)]),
                    path: Arc::from(format!("/view/{endpoint}/{req_key}")),
                    endpoint: Arc::from(name.as_str()),
                })
            };
            // Samples hold frames innermost first.
            let mut frames = frames_of(&funcs, &path, &mut rng);
            frames.reverse();
            let state = if idle {
                ThreadState::Idle
            } else {
                match rng.below(100) {
                    0..=64 => ThreadState::Python,
                    65..=89 => ThreadState::Native,
                    _ => ThreadState::GilWait,
                }
            };
            // As the sampler does: the category follows from the innermost frame.
            let leaf = *path.last().unwrap_or(&0);
            let category = request.as_ref().map(|_| {
                [
                    Category::App,
                    Category::Framework,
                    Category::Framework,
                    Category::Database,
                    Category::Templates,
                    Category::Serialization,
                ][leaf % 6]
            });
            p.add_sample(&Sample {
                time: Duration::from_secs_f64(tick as f64 / RATE),
                pid: 1000 + (t as i32 / THREADS_PER_PROCESS),
                thread_id: 0x7f00_0000_0000 + t * 0x1000,
                native_id: Some(5000 + t as i32),
                thread_name: Some(Arc::from(format!("worker-{}", t % 8))),
                state,
                holds_gil: state == ThreadState::Python,
                frames,
                truncated: false,
                walked: true,
                request,
                category,
            });
        }
        tick += 1;
    }
    p.finish();
    p.meta.target = "gunicorn: master [app]".into();
    p.meta.python_version = "3.12.1".into();
    p.meta.rate = RATE;
    p.meta.ticks = tick;
    p.meta.duration = Duration::from_secs_f64(tick as f64 / RATE);
    p
}

/// This thread's time on a CPU (`/proc/thread-self/schedstat`, ns): on a
/// shared machine, wall time also counts the time other work held the CPU.
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

/// Best wall time, best CPU time and size of three renderings.
fn best_of_3(mut render: impl FnMut() -> Vec<u8>) -> (Duration, Duration, usize) {
    let (mut wall, mut cpu) = (Duration::MAX, Duration::MAX);
    let mut size = 0;
    for _ in 0..3 {
        let (t0, c0) = (Instant::now(), thread_cpu());
        let out = render();
        wall = wall.min(t0.elapsed());
        cpu = cpu.min(thread_cpu().saturating_sub(c0));
        size = out.len();
    }
    (wall, cpu, size)
}

fn main() {
    let samples: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let t0 = Instant::now();
    let p = synthesize(samples);
    let built = t0.elapsed();
    let distinct_stacks = {
        let mut s: Vec<_> = p.counts().iter().filter_map(|(k, _)| k.stack).collect();
        s.sort_unstable();
        s.dedup();
        s.len()
    };
    println!(
        "profile: {} thread samples, {} distinct stacks, {} (stack, thread, state, endpoint, category) keys, \
         {} endpoints, {} processes, {:.0} s of ticks at {RATE} Hz; aggregated in {:.0} ms\n",
        p.total_samples(),
        distinct_stacks,
        p.counts().len(),
        p.requests().endpoints().count(),
        p.processes().count(),
        p.meta.duration.as_secs_f64(),
        built.as_secs_f64() * 1e3
    );
    let mut opts = StackOptions::new();
    opts.processes = true;
    let pprof = {
        let mut out = Vec::new();
        write_pprof(&p, &mut out).unwrap();
        out
    };
    type Render<'a> = Box<dyn FnMut() -> Vec<u8> + 'a>;
    let runs: Vec<(&str, Render)> = vec![
        (
            "html (`-f html`)",
            Box::new(|| {
                let mut out = Vec::new();
                write_html(&p, &opts, "bench", &mut out).unwrap();
                out
            }),
        ),
        (
            "flamegraph SVG (`-f flamegraph`)",
            Box::new(|| {
                let mut out = Vec::new();
                write_flamegraph(&p, &opts, "bench", &mut out).unwrap();
                out
            }),
        ),
        (
            "folded stacks (`-f raw`)",
            Box::new(|| {
                let mut out = Vec::new();
                write_folded(&p, &opts, &mut out).unwrap();
                out
            }),
        ),
        (
            "Chrome trace (`-f chrometrace`)",
            Box::new(|| {
                let mut out = Vec::new();
                write_chrometrace(&p, &opts, "bench", &mut out).unwrap();
                out
            }),
        ),
        (
            "speedscope (`-f speedscope`)",
            Box::new(|| {
                let mut out = Vec::new();
                write_speedscope(&p, &opts, "bench", &mut out).unwrap();
                out
            }),
        ),
        (
            "pprof (`-f pprof`)",
            Box::new(|| {
                let mut out = Vec::new();
                write_pprof(&p, &mut out).unwrap();
                out
            }),
        ),
        (
            "gunzip + protobuf decoding of the pprof alone",
            Box::new(|| {
                let m = decode_pprof(&pprof).unwrap();
                vec![0; m.sample.len().min(1)]
            }),
        ),
        (
            "reading the pprof (`report`'s first step)",
            Box::new(|| {
                let q = read_pprof(&pprof).unwrap();
                vec![0; q.total_samples().min(1) as usize]
            }),
        ),
        (
            "`report -f html` from the pprof (read + html)",
            Box::new(|| {
                let q = read_pprof(&pprof).unwrap();
                let mut out = Vec::new();
                write_html(&q, &opts, "bench", &mut out).unwrap();
                out
            }),
        ),
    ];
    println!("| output | wall time (best of 3) | CPU time (best of 3) | size |");
    println!("|---|---|---|---|");
    // A second argument keeps only the outputs whose name contains it.
    let only = std::env::args().nth(2).unwrap_or_default();
    for (what, mut render) in runs {
        if !what.contains(only.as_str()) {
            continue;
        }
        let (wall, cpu, size) = best_of_3(&mut render);
        println!(
            "| {what} | {:.0} ms | {:.0} ms | {:.2} MB |",
            wall.as_secs_f64() * 1e3,
            cpu.as_secs_f64() * 1e3,
            size as f64 / 1e6
        );
    }
}
