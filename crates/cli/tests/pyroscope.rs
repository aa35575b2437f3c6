//! `record --pyroscope` against a Pyroscope stand-in: an HTTP/1.1 server in
//! this test process, on 127.0.0.1, that decodes each push as the protocol
//! defines it (Connect unary `POST /push.v1.PusherService/Push`, body a
//! protobuf `push.v1.PushRequest`, whose `raw_profile` is a gzipped pprof)
//! with message definitions written here from push.proto/types.proto.
//! The target is tests/targets/wsgi_app.py (a wsgiref service that drives
//! itself; /slow burns 50 ms in `slow_view`).
//!
//! * labels (`service_name`, `__name__`, tags), headers (basic auth,
//!   tenant), the stacks and `endpoint` labels of the real target, and
//!   that the pushes add up to the samples of the saved profile;
//! * a server that answers 500 for a while: the pushes are retried, none
//!   is lost, the failures are counted in the summary;
//! * a server that is down: pyrometer still ends on time and reports the
//!   failures, and the output file is written;
//! * the same server over https (rustls, a self-signed certificate made by
//!   rcgen): pushes arrive when `--pyroscope-ca` trusts the certificate,
//!   and are refused by pyrometer, with a message saying what to do, when
//!   nothing does.

#[allow(unused_imports)]
mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use prost::Message;
use pyrometer_outputs::pprof_proto;

/// push.v1 / types.v1 messages, by their field numbers in the .proto files.
#[derive(Clone, PartialEq, prost::Message)]
struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    series: Vec<RawProfileSeries>,
}
#[derive(Clone, PartialEq, prost::Message)]
struct RawProfileSeries {
    #[prost(message, repeated, tag = "1")]
    labels: Vec<LabelPair>,
    #[prost(message, repeated, tag = "2")]
    samples: Vec<RawSample>,
}
#[derive(Clone, PartialEq, prost::Message)]
struct RawSample {
    #[prost(bytes = "vec", tag = "1")]
    raw_profile: Vec<u8>,
    #[prost(string, tag = "2")]
    id: String,
}
#[derive(Clone, PartialEq, prost::Message)]
struct LabelPair {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    value: String,
}

/// One HTTP request as received.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The status answered.
    status: u16,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The stand-in server: answers `status_for(n)` to the n-th request (0-based).
struct Server {
    port: u16,
    tls: bool,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(status_for: impl Fn(usize) -> u16 + Send + 'static) -> Server {
        Server::start_with(status_for, None)
    }

    /// The same server behind TLS with this certificate and key (PEM).
    fn start_tls(
        status_for: impl Fn(usize) -> u16 + Send + 'static,
        cert: &str,
        key: &str,
    ) -> Server {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = vec![CertificateDer::from_pem_slice(cert.as_bytes()).expect("certificate PEM")];
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key PEM");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server certificate");
        Server::start_with(status_for, Some(Arc::new(config)))
    }

    fn start_with(
        status_for: impl Fn(usize) -> u16 + Send + 'static,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Server {
        let is_tls = tls.is_some();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (rx, st) = (received.clone(), stop.clone());
        let count = AtomicUsize::new(0);
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if stream.set_nonblocking(false).is_err()
                            || stream
                                .set_read_timeout(Some(Duration::from_secs(10)))
                                .is_err()
                        {
                            continue;
                        }
                        let received = match &tls {
                            None => {
                                serve(stream, || status_for(count.fetch_add(1, Ordering::SeqCst)))
                            }
                            Some(config) => {
                                let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                                    continue;
                                };
                                // The handshake happens on the first read;
                                // a client that refuses the certificate
                                // ends there (no request, not counted).
                                serve(rustls::StreamOwned::new(conn, stream), || {
                                    status_for(count.fetch_add(1, Ordering::SeqCst))
                                })
                            }
                        };
                        if let Some(r) = received {
                            rx.lock().unwrap().push(r);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server {
            port,
            tls: is_tls,
            received,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Read one request (headers, then Content-Length bytes), answer the
/// status `status()` gives (asked once a request has arrived).
fn serve(mut stream: impl Read + Write, status: impl FnOnce() -> u16) -> Option<Received> {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut buf).ok()?;
        if n == 0 || data.len() > 1 << 20 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = data[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&buf[..n]);
    }
    let status = status();
    let reply = if status == 200 {
        "{}"
    } else {
        r#"{"code":"unavailable","message":"try later"}"#
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    );
    let _ = stream.flush();
    Some(Received {
        method,
        path,
        headers,
        body,
        status,
    })
}

/// A decoded push: series labels, the pprof, and its sample count.
struct Push {
    labels: Vec<(String, String)>,
    id: String,
    profile: pprof_proto::Profile,
}

impl Push {
    fn s(&self, i: i64) -> &str {
        self.profile
            .string_table
            .get(i as usize)
            .map(String::as_str)
            .unwrap_or("?")
    }

    fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Samples: the values divided by the period.
    fn samples(&self) -> u64 {
        let total: i64 = self.profile.sample.iter().map(|s| s.value[0]).sum();
        (total as f64 / self.profile.period as f64).round() as u64
    }

    fn functions(&self) -> BTreeSet<String> {
        self.profile
            .function
            .iter()
            .map(|f| self.s(f.name).to_string())
            .collect()
    }

    fn endpoints(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for x in &self.profile.sample {
            for l in &x.label {
                if self.s(l.key) == "endpoint" {
                    out.insert(self.s(l.str).to_string());
                }
            }
        }
        out
    }
}

/// Decode a request exactly as the protocol defines it.
fn decode(r: &Received) -> Result<Push, String> {
    if r.method != "POST" || r.path != "/push.v1.PusherService/Push" {
        return Err(format!("{} {}", r.method, r.path));
    }
    if r.header("content-type") != Some("application/proto") {
        return Err(format!("content-type {:?}", r.header("content-type")));
    }
    let req = PushRequest::decode(r.body.as_slice()).map_err(|e| format!("PushRequest: {e}"))?;
    let [series] = req.series.as_slice() else {
        return Err(format!("{} series", req.series.len()));
    };
    let [sample] = series.samples.as_slice() else {
        return Err(format!("{} samples in the series", series.samples.len()));
    };
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(sample.raw_profile.as_slice())
        .read_to_end(&mut raw)
        .map_err(|e| format!("raw_profile is not gzip: {e}"))?;
    let profile =
        pprof_proto::Profile::decode(raw.as_slice()).map_err(|e| format!("pprof: {e}"))?;
    Ok(Push {
        labels: series
            .labels
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect(),
        id: sample.id.clone(),
        profile,
    })
}

fn newest() -> Interp {
    let mut interps = require_all();
    interps.sort_by_key(|i| i.minor());
    interps.pop().expect("an interpreter")
}

/// `record -f pprof -- python wsgi_app.py SECONDS` with extra flags; the
/// output, the stderr, how long it took, and the saved profile's non-idle
/// samples (what the pushes must add up to).
fn record(
    interp: &Interp,
    scratch: &Scratch,
    seconds: &str,
    extra: &[&str],
) -> (std::process::Output, Duration, u64) {
    let out_file = scratch.file("run.pb.gz");
    let python = interp.path.to_string_lossy().into_owned();
    let script = target("wsgi_app.py").to_string_lossy().into_owned();
    let mut args: Vec<&str> = vec!["record", "-r", "100", "-f", "pprof", "-o"];
    let out_path = out_file.to_string_lossy().into_owned();
    args.push(&out_path);
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", &python, &script, seconds]);
    let t = Instant::now();
    let out = pyrometer(&args);
    let took = t.elapsed();
    let saved = std::fs::read(&out_file)
        .ok()
        .and_then(|b| pyrometer_outputs::read_pprof(&b).ok())
        .map(|p| {
            p.counts()
                .iter()
                .filter(|(k, _)| k.state.is_active())
                .map(|(_, c)| *c)
                .sum()
        })
        .unwrap_or_else(|| {
            panic!(
                "{} wrote no readable pprof: {}",
                show(&args),
                stderr_of(&out)
            )
        });
    (out, took, saved)
}

/// The numbers of the summary's `pyroscope:` line.
fn summary_numbers(stderr: &str) -> Vec<u64> {
    let line = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("pyroscope:") && l.contains("intervals pushed"))
        .unwrap_or_else(|| panic!("no pyroscope summary in: {stderr}"));
    line.split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .filter_map(|w| w.parse().ok())
        .collect()
}

#[test]
fn pushes_labelled_profiles_with_the_targets_stacks() {
    let interp = newest();
    let _cpu = cpu_lock();
    let scratch = Scratch::new("pyroscope-push");
    let server = Server::start(|_| 200);
    let url = server.url();
    let (out, _, saved) = record(
        &interp,
        &scratch,
        "3.5",
        &[
            "--pyroscope",
            &url,
            "--app-name",
            "shop",
            "--tag",
            "env=test",
            "--tag",
            "region=eu-1",
            "--pyroscope-basic-auth",
            "alice:s3cret",
            "--pyroscope-tenant-id",
            "tenant-7",
            "--pyroscope-interval",
            "1",
        ],
    );
    let stderr = stderr_of(&out);
    assert!(out.status.success(), "record failed: {stderr}");
    let received = server.received();
    assert!(
        received.len() >= 3,
        "{} pushes in 3.5 s at 1 s: {stderr}",
        received.len()
    );
    let mut ids = BTreeSet::new();
    let mut starts = Vec::new();
    let mut total = 0;
    let mut functions = BTreeSet::new();
    let mut endpoints = BTreeSet::new();
    for r in &received {
        // "alice:s3cret", base64.
        assert_eq!(r.header("authorization"), Some("Basic YWxpY2U6czNjcmV0"));
        assert_eq!(r.header("x-scope-orgid"), Some("tenant-7"));
        let push = decode(r).unwrap_or_else(|e| panic!("undecodable push: {e}"));
        assert_eq!(push.label("service_name"), Some("shop"));
        assert_eq!(push.label("__name__"), Some("process_cpu"));
        assert_eq!(push.label("env"), Some("test"));
        assert_eq!(push.label("region"), Some("eu-1"));
        assert_eq!(push.labels.len(), 4, "{:?}", push.labels);
        let types: Vec<_> = push
            .profile
            .sample_type
            .iter()
            .map(|t| format!("{}/{}", push.s(t.r#type), push.s(t.unit)))
            .collect();
        assert_eq!(types, ["cpu/nanoseconds"]);
        let pt = push.profile.period_type.as_ref().unwrap();
        assert_eq!((push.s(pt.r#type), push.s(pt.unit)), ("cpu", "nanoseconds"));
        assert_eq!(push.profile.period, 10_000_000);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64;
        let age = now - push.profile.time_nanos;
        assert!(age > 0 && age < 120_000_000_000, "time_nanos {age} ns ago");
        // Each push covers the interval since the one before (the last
        // one, the partial interval at exit, may be shorter).
        let secs = push.profile.duration_nanos as f64 / 1e9;
        assert!(secs > 0.0 && secs < 3.0, "a 1 s interval lasted {secs} s");
        // Only the endpoint label: Pyroscope makes series of string labels.
        for x in &push.profile.sample {
            for l in &x.label {
                assert_eq!(push.s(l.key), "endpoint");
            }
        }
        assert!(ids.insert(push.id.clone()), "repeated id {}", push.id);
        starts.push(push.profile.time_nanos);
        total += push.samples();
        functions.extend(push.functions());
        endpoints.extend(push.endpoints());
    }
    for f in ["slow_view", "app", "load"] {
        assert!(functions.contains(f), "{f} not pushed: {functions:?}");
    }
    assert!(
        endpoints.contains("GET wsgi_app.slow_view"),
        "endpoints pushed: {endpoints:?}"
    );
    assert_eq!(
        total, saved,
        "the pushes add up to the saved profile's CPU samples"
    );
    let n = summary_numbers(&stderr);
    assert_eq!(n[0], received.len() as u64, "{stderr}");
    assert_eq!(n[0], n[1], "every interval pushed: {stderr}");
    println!(
        "{} pushes, {total} samples; {:?}",
        received.len(),
        endpoints
    );
}

#[test]
fn failed_pushes_are_retried_and_counted() {
    let interp = newest();
    let _cpu = cpu_lock();
    let scratch = Scratch::new("pyroscope-retry");
    // The first three attempts fail with 500.
    let server = Server::start(|n| if n < 3 { 500 } else { 200 });
    let url = server.url();
    let (out, _, saved) = record(
        &interp,
        &scratch,
        "3",
        &[
            "--pyroscope",
            &url,
            "--app-name",
            "shop",
            "--pyroscope-interval",
            "1",
        ],
    );
    let stderr = stderr_of(&out);
    assert!(out.status.success(), "record failed: {stderr}");
    let received = server.received();
    let accepted: Vec<_> = received.iter().filter(|r| r.status == 200).collect();
    let failed = received.len() - accepted.len();
    assert_eq!(failed, 3, "{stderr}");
    let total: u64 = accepted
        .iter()
        .map(|r| decode(r).unwrap_or_else(|e| panic!("{e}")).samples())
        .sum();
    assert_eq!(total, saved, "nothing lost: {stderr}");
    // "N of M intervals pushed; F failed attempts (retried), R refused, D dropped, U unsent"
    let n = summary_numbers(&stderr);
    assert_eq!(n[0], accepted.len() as u64, "{stderr}");
    assert_eq!(n[0], n[1], "{stderr}");
    assert_eq!(n[2], 3, "{stderr}");
    assert_eq!(&n[3..6], &[0, 0, 0], "{stderr}");
    assert!(stderr.contains("HTTP 500"), "{stderr}");
}

#[test]
fn a_server_that_is_down_does_not_hold_the_recording() {
    let interp = newest();
    let _cpu = cpu_lock();
    let scratch = Scratch::new("pyroscope-down");
    // A port nobody listens on.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let (out, took, _) = record(
        &interp,
        &scratch,
        "2",
        &[
            "--pyroscope",
            &url,
            "--app-name",
            "shop",
            "--pyroscope-interval",
            "1",
        ],
    );
    let stderr = stderr_of(&out);
    assert!(out.status.success(), "record failed: {stderr}");
    // 2 s of target, at most 5 s of waiting for the last pushes, slack
    // for a loaded machine.
    assert!(took < Duration::from_secs(15), "took {took:?}: {stderr}");
    let n = summary_numbers(&stderr);
    assert_eq!(n[0], 0, "{stderr}");
    assert!(n[1] >= 2, "{stderr}");
    assert!(n[2] >= 1, "failed attempts: {stderr}");
    assert_eq!(n[5], n[1], "every interval unsent: {stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
    println!("down server: took {took:?}");
}

#[test]
fn bad_pyroscope_settings_are_refused_before_anything_starts() {
    let scratch = Scratch::new("pyroscope-bad");
    let marker = scratch.file("started");
    // The command would create `marker` if it were launched.
    let touch = format!("open({:?}, 'w').close()", marker.to_string_lossy());
    let out_file = scratch.file("out.svg");
    let cases: [(&[&str], &str); 7] = [
        (
            &[
                "--pyroscope",
                "http://pyro:4040",
                "--app-name",
                "a",
                "--pyroscope-ca",
                "/etc/hostname",
            ],
            "--pyroscope-ca is for https:// URLs",
        ),
        (
            &["--pyroscope", "pyro:4040", "--app-name", "a"],
            "must start with http://",
        ),
        (&["--pyroscope", "http://pyro:4040"], "--app-name"),
        (
            &[
                "--pyroscope",
                "http://pyro:4040",
                "--app-name",
                "a",
                "--tag",
                "env",
            ],
            "KEY=VALUE",
        ),
        (
            &[
                "--pyroscope",
                "http://pyro:4040",
                "--app-name",
                "a",
                "--tag",
                "__name__=x",
            ],
            "does not start with `__`",
        ),
        (&["--app-name", "a"], "--pyroscope"),
        (
            &[
                "--pyroscope",
                "http://pyro:4040",
                "--app-name",
                "a",
                "--pyroscope-basic-auth",
                "alice",
            ],
            "USER:PASSWORD",
        ),
    ];
    for (flags, message) in cases {
        let mut args = vec!["record", "-o", out_file.to_str().unwrap()];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--", "python3", "-c", &touch]);
        let out = pyrometer(&args);
        let stderr = stderr_of(&out);
        assert!(
            matches!(out.status.code(), Some(EXIT_FAILURE) | Some(EXIT_USAGE)),
            "{}: {:?} {stderr}",
            show(&args),
            out.status
        );
        assert!(stderr.contains(message), "{}: {stderr}", show(&args));
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            !marker.exists(),
            "{}: the command was launched",
            show(&args)
        );
    }
}

#[test]
fn a_server_that_never_answers_does_not_hold_the_recording() {
    let interp = newest();
    let _cpu = cpu_lock();
    let scratch = Scratch::new("pyroscope-hang");
    // Accepts connections and holds them open without a word.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        while !st.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((s, _)) => held.push(s),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        held.len()
    });
    let url = format!("http://127.0.0.1:{port}");
    let (out, took, _) = record(
        &interp,
        &scratch,
        "2",
        &[
            "--pyroscope",
            &url,
            "--app-name",
            "shop",
            "--pyroscope-interval",
            "1",
        ],
    );
    stop.store(true, Ordering::SeqCst);
    let connections = holder.join().unwrap();
    let stderr = stderr_of(&out);
    assert!(out.status.success(), "record failed: {stderr}");
    assert!(connections >= 1, "pyrometer never connected: {stderr}");
    // 2 s of target, 5 s of waiting for the stuck push, slack.
    assert!(took < Duration::from_secs(15), "took {took:?}: {stderr}");
    let n = summary_numbers(&stderr);
    assert_eq!(n[0], 0, "{stderr}");
    assert!(n[5] >= 1, "unsent intervals: {stderr}");
    println!("silent server: took {took:?}, {connections} connections");
}

/// A self-signed certificate for 127.0.0.1 and localhost: (cert, key) PEM.
fn self_signed() -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".into()])
        .expect("rcgen");
    (c.cert.pem(), c.key_pair.serialize_pem())
}

#[test]
fn pushes_over_https_when_the_certificate_is_trusted() {
    let interp = newest();
    let _cpu = cpu_lock();
    let scratch = Scratch::new("pyroscope-https");
    let (cert, key) = self_signed();
    let ca = scratch.file("ca.pem");
    std::fs::write(&ca, &cert).unwrap();
    let ca = ca.to_string_lossy().into_owned();
    let server = Server::start_tls(|_| 200, &cert, &key);
    let url = server.url();
    assert!(url.starts_with("https://"));

    let (out, _, saved) = record(
        &interp,
        &scratch,
        "2.5",
        &[
            "--pyroscope",
            &url,
            "--app-name",
            "shop",
            "--pyroscope-interval",
            "1",
            "--pyroscope-ca",
            &ca,
        ],
    );
    let stderr = stderr_of(&out);
    assert!(out.status.success(), "record failed: {stderr}");
    let received = server.received();
    assert!(
        received.len() >= 2,
        "{} pushes over https: {stderr}",
        received.len()
    );
    let mut total = 0;
    let mut functions = BTreeSet::new();
    for r in &received {
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/push.v1.PusherService/Push")
        );
        let push = decode(r).unwrap_or_else(|e| panic!("undecodable push: {e}"));
        assert_eq!(push.label("service_name"), Some("shop"));
        assert_eq!(push.label("__name__"), Some("process_cpu"));
        total += push.samples();
        functions.extend(push.functions());
    }
    assert!(functions.contains("slow_view"), "{functions:?}");
    assert_eq!(total, saved, "the https pushes add up to the saved profile");
    let n = summary_numbers(&stderr);
    assert_eq!(n[0], n[1], "every interval pushed: {stderr}");

    // Trusted through SSL_CERT_FILE instead (the system's roots replaced
    // by that file, as OpenSSL does).
    let before = server.received().len();
    let python = interp.path.to_string_lossy().into_owned();
    let script = target("wsgi_app.py").to_string_lossy().into_owned();
    let out = pyrometer_testsupport::run_with_timeout(
        std::process::Command::new(PYROMETER)
            .args([
                "record",
                "-f",
                "raw",
                "-o",
                &scratch.file("env.txt").to_string_lossy(),
                "--pyroscope",
                &url,
                "--app-name",
                "shop",
                "--pyroscope-interval",
                "1",
                "--",
                &python,
                &script,
                "1.5",
            ])
            .env("SSL_CERT_FILE", &ca),
        RUN_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let stderr = stderr_of(&out);
    assert!(out.status.success(), "record failed: {stderr}");
    assert!(
        server.received().len() > before,
        "nothing pushed with SSL_CERT_FILE: {stderr}"
    );

    // Not trusted (no --pyroscope-ca, and the system's CAs do not know
    // it): nothing is sent, the recording still succeeds, and the summary
    // says what failed and what to do.
    let before = server.received().len();
    let (out, _, _) = record(
        &interp,
        &scratch,
        "1.2",
        &[
            "--pyroscope",
            &url,
            "--app-name",
            "shop",
            "--pyroscope-interval",
            "1",
        ],
    );
    let stderr = stderr_of(&out);
    assert!(out.status.success(), "record failed: {stderr}");
    assert_eq!(
        server.received().len(),
        before,
        "pushed to an untrusted server"
    );
    assert!(
        stderr.contains("TLS handshake") && stderr.contains("--pyroscope-ca"),
        "no TLS error in the summary: {stderr}"
    );
    assert_eq!(summary_numbers(&stderr)[0], 0, "{stderr}");

    // --pyroscope-ca with a file that is not a certificate: refused at once.
    let out = pyrometer(&[
        "record",
        "-d",
        "1",
        "--pyroscope",
        &url,
        "--app-name",
        "shop",
        "--pyroscope-ca",
        "/etc/hostname",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("/etc/hostname"),
        "{}",
        stderr_of(&out)
    );
}
