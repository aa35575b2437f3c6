//! Pushing profiles to Grafana Pyroscope's push API: `POST
//! {URL}/push.v1.PusherService/Push`, Connect unary with a binary body
//! (`Content-Type: application/proto`), a `push.v1.PushRequest` holding
//! one series with one gzipped pprof (`api/push/v1/push.proto`,
//! `api/types/v1/types.proto`).
//!
//! A [`Pusher`] owns one thread that encodes and sends; the sampler only
//! hands it interval profiles, so it never waits on the network. The queue
//! is bounded ([`MAX_QUEUED`] intervals; when full the oldest is dropped
//! and counted), a failed push is retried with a growing pause (bounded;
//! intervals older than [`MAX_AGE`] are dropped, Pyroscope rejects them
//! anyway), and at the end [`Pusher::finish`] waits a bounded time for what
//! is left. The HTTP/1.1 client is a small one of our own; `https://`
//! URLs go through rustls (see `pyroscope_tls`).

use std::collections::VecDeque;
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use pyrometer_profile::Profile;

use crate::pprof::{pprof_message, proto as pprof};
use crate::pyroscope_tls::{client_config, connect as connect_tls, Io};

/// Pyroscope rejects a profile with more samples than this.
pub const MAX_SAMPLES_PER_PROFILE: usize = 16_000;
/// Intervals waiting to be pushed, at most.
pub const MAX_QUEUED: usize = 64;
/// Intervals older than this are not pushed (Pyroscope refuses profiles
/// more than an hour old).
pub const MAX_AGE: Duration = Duration::from_secs(50 * 60);
/// The longest one HTTP exchange may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// First pause after a failure; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// Most response bytes read (status line, headers, an error message).
const MAX_RESPONSE: usize = 64 * 1024;

/// The messages of the push API, by their field numbers.
pub mod proto {
    /// `push.v1.PushRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PushRequest {
        /// Series of profiles.
        #[prost(message, repeated, tag = "1")]
        pub series: Vec<RawProfileSeries>,
    }

    /// `push.v1.RawProfileSeries`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RawProfileSeries {
        /// Series labels (`service_name`, `__name__`, tags).
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<LabelPair>,
        /// Profiles of the series.
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<RawSample>,
    }

    /// `push.v1.RawSample`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RawSample {
        /// A pprof profile (gzipped).
        #[prost(bytes = "vec", tag = "1")]
        pub raw_profile: Vec<u8>,
        /// A unique id of this profile.
        #[prost(string, tag = "2")]
        pub id: String,
    }

    /// `types.v1.LabelPair`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPair {
        /// Label name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// Label value.
        #[prost(string, tag = "2")]
        pub value: String,
    }
}

/// A bad Pyroscope setting.
#[derive(Debug, thiserror::Error)]
pub enum PyroscopeError {
    /// The URL is not `http[s]://HOST[:PORT][/PREFIX]`.
    #[error("bad Pyroscope URL {0:?}: {1}")]
    Url(String, String),
    /// A tag, the app name, auth or tenant is unusable.
    #[error("{0}")]
    Setting(String),
}

/// What the pushed profiles measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileKind {
    /// CPU time: samples of threads on a CPU (`process_cpu`,
    /// `cpu/nanoseconds`), Pyroscope's usual Python profile type.
    Cpu,
    /// Wall-clock time of every sampled thread (`wall`, `wall/nanoseconds`).
    Wall,
}

impl ProfileKind {
    /// The `__name__` series label.
    pub fn metric_name(self) -> &'static str {
        match self {
            ProfileKind::Cpu => "process_cpu",
            ProfileKind::Wall => "wall",
        }
    }

    fn sample_type(self) -> &'static str {
        match self {
            ProfileKind::Cpu => "cpu",
            ProfileKind::Wall => "wall",
        }
    }
}

/// Where and how to push.
#[derive(Debug, Clone)]
pub struct PyroscopeConfig {
    /// `http[s]://HOST[:PORT][/PREFIX]`.
    pub url: String,
    /// PEM certificates to trust besides the system's (https only).
    pub ca_file: Option<std::path::PathBuf>,
    /// `service_name`.
    pub app_name: String,
    /// Extra series labels.
    pub tags: Vec<(String, String)>,
    /// HTTP basic auth (user, password).
    pub basic_auth: Option<(String, String)>,
    /// `X-Scope-OrgID`.
    pub tenant_id: Option<String>,
    /// What the profiles measure.
    pub kind: ProfileKind,
}

/// How pushing went.
#[derive(Debug, Clone, Default)]
pub struct PushStats {
    /// Intervals accepted by the server.
    pub pushed: u64,
    /// Failed attempts (connection errors, timeouts, 5xx, 429), retried.
    pub failed_attempts: u64,
    /// Intervals the server refused (other 4xx), not retried.
    pub rejected: u64,
    /// Intervals dropped because the queue was full or they grew too old.
    pub dropped: u64,
    /// Intervals still unsent when the wait at the end ran out.
    pub unsent: u64,
    /// The last failure, for the summary.
    pub last_error: Option<String>,
}

/// A parsed `http://` or `https://` URL.
#[derive(Debug, Clone)]
struct Endpoint {
    host: String,
    port: u16,
    path: String,
    tls: bool,
}

/// Check a Pyroscope URL (`http[s]://HOST[:PORT][/PREFIX]`) without using it.
pub fn check_url(url: &str) -> Result<(), PyroscopeError> {
    parse_url(url).map(|_| ())
}

/// Check the TLS settings of a Pyroscope URL (the `--pyroscope-ca` file
/// is read and parsed) without connecting.
pub fn check_tls(url: &str, ca_file: Option<&std::path::Path>) -> Result<(), PyroscopeError> {
    tls_config(&parse_url(url)?, ca_file).map(|_| ())
}

/// The TLS client configuration for an https endpoint.
fn tls_config(
    endpoint: &Endpoint,
    ca_file: Option<&std::path::Path>,
) -> Result<Option<Arc<rustls::ClientConfig>>, PyroscopeError> {
    match (endpoint.tls, ca_file) {
        (true, ca) => Ok(Some(client_config(ca).map_err(PyroscopeError::Setting)?)),
        (false, Some(_)) => Err(PyroscopeError::Setting(
            "--pyroscope-ca is for https:// URLs".into(),
        )),
        (false, None) => Ok(None),
    }
}

fn parse_url(url: &str) -> Result<Endpoint, PyroscopeError> {
    let bad = |why: &str| PyroscopeError::Url(url.to_string(), why.to_string());
    let (rest, tls) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (rest, false),
        (_, Some(rest)) => (rest, true),
        _ => return Err(bad("it must start with http:// or https://")),
    };
    let (authority, prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(bad(
            "no host (give credentials with --pyroscope-basic-auth)",
        ));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            let port = p
                .parse::<u16>()
                .map_err(|_| bad("the port is not a number from 1 to 65535"))?;
            (h.to_string(), port)
        }
        _ => (authority.to_string(), if tls { 443 } else { 80 }),
    };
    if host.is_empty() || port == 0 {
        return Err(bad("no host or port"));
    }
    if prefix.chars().any(|c| c.is_control() || c == ' ') {
        return Err(bad("the path has spaces or control characters"));
    }
    Ok(Endpoint {
        host,
        port,
        path: format!("{prefix}/push.v1.PusherService/Push"),
        tls,
    })
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Parse `KEY=VALUE` tags, refusing what Pyroscope would reject.
pub fn parse_tags(tags: &[String]) -> Result<Vec<(String, String)>, PyroscopeError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for t in tags {
        let Some((k, v)) = t.split_once('=') else {
            return Err(PyroscopeError::Setting(format!(
                "--tag {t:?}: expected KEY=VALUE"
            )));
        };
        let valid_name = k
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !valid_name || k.starts_with("__") {
            return Err(PyroscopeError::Setting(format!(
                "--tag {t:?}: a tag name is letters, digits, `_` and `.`, starts with a letter or `_`, and does not start with `__`"
            )));
        }
        if k == "service_name" || out.iter().any(|(o, _)| o == k) {
            return Err(PyroscopeError::Setting(format!(
                "--tag {t:?}: {k} is given twice (service_name comes from --app-name)"
            )));
        }
        if v.is_empty() || v.len() > 2048 {
            return Err(PyroscopeError::Setting(format!(
                "--tag {t:?}: the value must have 1 to 2048 bytes"
            )));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// The pprof pushed for one interval: the sample type of `kind` only,
/// samples with a zero value left out, and only the `endpoint` label
/// (Pyroscope turns string labels into series, so per-thread labels would
/// multiply them).
pub fn push_pprof(profile: &Profile, kind: ProfileKind) -> pprof::Profile {
    let mut m = pprof_message(profile);
    let s = |m: &pprof::Profile, i: i64| {
        usize::try_from(i)
            .ok()
            .and_then(|i| m.string_table.get(i))
            .cloned()
            .unwrap_or_default()
    };
    let index = m
        .sample_type
        .iter()
        .position(|t| s(&m, t.r#type) == kind.sample_type())
        .unwrap_or(0);
    let Some(value_type) = m.sample_type.get(index).cloned() else {
        return m;
    };
    let endpoint = m.string_table.iter().position(|x| x == "endpoint");
    let samples = std::mem::take(&mut m.sample);
    m.sample = samples
        .into_iter()
        .filter_map(|mut x| {
            let v = x.value.get(index).copied().unwrap_or(0);
            if v <= 0 {
                return None;
            }
            x.value = vec![v];
            x.label
                .retain(|l| endpoint.is_some_and(|e| l.key == e as i64) && l.str != 0);
            Some(x)
        })
        .collect();
    m.sample_type = vec![value_type.clone()];
    m.period_type = Some(value_type.clone());
    m.default_sample_type = value_type.r#type;
    m.comment.clear();
    m
}

/// The body of one push. An interval with more pprof samples than
/// Pyroscope takes in one profile ([`MAX_SAMPLES_PER_PROFILE`]) is split
/// into several profiles of the same series.
pub fn push_request(config: &PyroscopeConfig, profile: &Profile, id: String) -> Vec<u8> {
    let mut whole = push_pprof(profile, config.kind);
    let samples = std::mem::take(&mut whole.sample);
    let chunks: Vec<Vec<pprof::Sample>> = if samples.len() <= MAX_SAMPLES_PER_PROFILE {
        vec![samples]
    } else {
        samples
            .chunks(MAX_SAMPLES_PER_PROFILE)
            .map(<[pprof::Sample]>::to_vec)
            .collect()
    };
    let several = chunks.len() > 1;
    let raw_samples = chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            let mut part = whole.clone();
            part.sample = chunk;
            let raw = part.encode_to_vec();
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            let raw_profile = match gz.write_all(&raw).and_then(|_| gz.finish()) {
                Ok(v) => v,
                Err(_) => raw, // Writing to memory does not fail; ungzipped is accepted too.
            };
            proto::RawSample {
                raw_profile,
                id: if several {
                    format!("{id}-{i}")
                } else {
                    id.clone()
                },
            }
        })
        .collect();
    let mut labels = vec![
        proto::LabelPair {
            name: "__name__".into(),
            value: config.kind.metric_name().into(),
        },
        proto::LabelPair {
            name: "service_name".into(),
            value: config.app_name.clone(),
        },
    ];
    for (k, v) in &config.tags {
        labels.push(proto::LabelPair {
            name: k.clone(),
            value: v.clone(),
        });
    }
    proto::PushRequest {
        series: vec![proto::RawProfileSeries {
            labels,
            samples: raw_samples,
        }],
    }
    .encode_to_vec()
}

/// Why one push failed.
enum Failure {
    /// Worth retrying: network, timeout, 5xx, 408, 429.
    Retry(String),
    /// The server refused the data.
    Refused(String),
}

struct Request<'a> {
    endpoint: &'a Endpoint,
    /// Set for https.
    tls: Option<&'a Arc<rustls::ClientConfig>>,
    headers: &'a [(String, String)],
    body: &'a [u8],
    timeout: Duration,
}

fn post(req: &Request) -> Result<(), Failure> {
    let retry = |what: &str, e: std::io::Error| Failure::Retry(format!("{what}: {e}"));
    let ep = req.endpoint;
    let addrs: Vec<_> = (
        ep.host.trim_start_matches('[').trim_end_matches(']'),
        ep.port,
    )
        .to_socket_addrs()
        .map_err(|e| retry(&format!("cannot resolve {}", ep.host), e))?
        .collect();
    let timeout = req.timeout.max(Duration::from_millis(50));
    let mut last = None;
    let mut stream = None;
    for a in addrs.iter().take(4) {
        match TcpStream::connect_timeout(a, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let stream = match stream {
        Some(s) => s,
        None => {
            let e = last.unwrap_or_else(|| std::io::Error::other("no address"));
            return Err(retry(
                &format!("cannot connect to {}:{}", ep.host, ep.port),
                e,
            ));
        }
    };
    let started = Instant::now();
    stream
        .set_write_timeout(Some(timeout))
        .and_then(|_| stream.set_read_timeout(Some(timeout)))
        .map_err(|e| retry("socket", e))?;
    let mut tls_stream;
    let mut plain_stream;
    let stream: &mut dyn Io = match req.tls {
        Some(config) => {
            tls_stream = connect_tls(config, &ep.host, stream).map_err(Failure::Retry)?;
            &mut tls_stream
        }
        None => {
            plain_stream = stream;
            &mut plain_stream
        }
    };
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: pyrometer/{}\r\nContent-Type: application/proto\r\nConnect-Protocol-Version: 1\r\nContent-Length: {}\r\nConnection: close\r\n",
        ep.path,
        ep.host,
        ep.port,
        env!("CARGO_PKG_VERSION"),
        req.body.len()
    );
    for (k, v) in req.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .and_then(|_| stream.write_all(req.body))
        .and_then(|_| stream.flush())
        .map_err(|e| retry("sending", e))?;
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if started.elapsed() > timeout {
            break;
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                response.extend_from_slice(&buf[..n]);
                if response.len() >= MAX_RESPONSE || complete(&response) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if response.is_empty() => return Err(retry("reading the response", e)),
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&response);
    let status = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| Failure::Retry("no HTTP status in the response".into()))?;
    if (200..300).contains(&status) {
        return Ok(());
    }
    let body: String = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect();
    let why = format!("HTTP {status} from {}:{}: {body}", ep.host, ep.port);
    if status >= 500 || status == 429 || status == 408 {
        Err(Failure::Retry(why))
    } else {
        Err(Failure::Refused(why))
    }
}

/// Whether a response holds its headers and the whole body its
/// Content-Length announces.
fn complete(response: &[u8]) -> bool {
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match length {
        Some(n) => response.len().saturating_sub(end + 4) >= n,
        None => false,
    }
}

struct Batch {
    profile: Option<Profile>,
    body: Option<Vec<u8>>,
    queued: Instant,
}

#[derive(Default)]
struct Shared {
    queue: VecDeque<Batch>,
    closing: Option<Instant>,
    /// A batch is being sent (popped from the queue).
    in_flight: bool,
    /// The thread has returned.
    finished: bool,
    stats: PushStats,
}

/// Pushes interval profiles from its own thread.
pub struct Pusher {
    shared: Arc<(Mutex<Shared>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Pusher {
    /// Check the settings and start the pushing thread.
    pub fn start(config: PyroscopeConfig) -> Result<Pusher, PyroscopeError> {
        let endpoint = parse_url(&config.url)?;
        if config.app_name.is_empty() || config.app_name.chars().any(|c| c.is_control()) {
            return Err(PyroscopeError::Setting(
                "--app-name must be a non-empty name without control characters".into(),
            ));
        }
        let mut headers = Vec::new();
        let header_safe = |s: &str| !s.chars().any(|c| c.is_control());
        if let Some((user, pass)) = &config.basic_auth {
            if !header_safe(user) || !header_safe(pass) {
                return Err(PyroscopeError::Setting(
                    "--pyroscope-basic-auth must not contain control characters".into(),
                ));
            }
            headers.push((
                "Authorization".to_string(),
                format!("Basic {}", base64(format!("{user}:{pass}").as_bytes())),
            ));
        }
        if let Some(t) = &config.tenant_id {
            if t.is_empty() || !header_safe(t) {
                return Err(PyroscopeError::Setting(
                    "--pyroscope-tenant-id must be non-empty, without control characters".into(),
                ));
            }
            headers.push(("X-Scope-OrgID".to_string(), t.clone()));
        }
        let tls = tls_config(&endpoint, config.ca_file.as_deref())?;
        let shared: Arc<(Mutex<Shared>, Condvar)> = Arc::default();
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("pyroscope-push".into())
            .spawn(move || run(&worker, &config, &endpoint, tls.as_ref(), &headers))
            .map_err(|e| PyroscopeError::Setting(format!("cannot start the push thread: {e}")))?;
        Ok(Pusher {
            shared,
            thread: Some(thread),
        })
    }

    /// Queue the profile of one interval (its `meta.start_time` and
    /// `meta.duration` say which). Never blocks on the network.
    pub fn push(&self, profile: Profile) {
        let (lock, cv) = &*self.shared;
        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
        if s.queue.len() >= MAX_QUEUED {
            s.queue.pop_front();
            s.stats.dropped += 1;
        }
        s.queue.push_back(Batch {
            profile: Some(profile),
            body: None,
            queued: Instant::now(),
        });
        cv.notify_all();
    }

    /// A copy of the counters so far.
    pub fn stats(&self) -> PushStats {
        let (lock, _) = &*self.shared;
        lock.lock().unwrap_or_else(|e| e.into_inner()).stats.clone()
    }

    /// Push what is queued, waiting at most `wait`, then stop. A request
    /// still blocked in the network then (a server that accepts and never
    /// answers) is abandoned with its thread and counted as unsent.
    pub fn finish(mut self, wait: Duration) -> PushStats {
        let (lock, cv) = &*self.shared;
        let deadline = Instant::now() + wait;
        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
        s.closing = Some(deadline);
        cv.notify_all();
        // A little grace past the deadline for an exchange to end cleanly.
        let give_up = deadline + Duration::from_millis(200);
        while !s.finished {
            let now = Instant::now();
            if now >= give_up {
                break;
            }
            s = cv
                .wait_timeout(s, give_up - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        let finished = s.finished;
        s.stats.unsent += s.queue.len() as u64 + u64::from(s.in_flight);
        s.queue.clear();
        let stats = s.stats.clone();
        drop(s);
        if let Some(t) = self.thread.take() {
            if finished {
                let _ = t.join();
            }
        }
        stats
    }
}

impl Drop for Pusher {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let (lock, cv) = &*self.shared;
            if let Ok(mut s) = lock.lock() {
                s.closing = Some(Instant::now());
                cv.notify_all();
            }
        }
    }
}

fn unique_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!("{t:016x}{:08x}{n:08x}", std::process::id())
}

fn run(
    shared: &(Mutex<Shared>, Condvar),
    config: &PyroscopeConfig,
    endpoint: &Endpoint,
    tls: Option<&Arc<rustls::ClientConfig>>,
    headers: &[(String, String)],
) {
    let (lock, cv) = shared;
    send_all(shared, config, endpoint, tls, headers);
    let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
    s.finished = true;
    cv.notify_all();
}

fn send_all(
    shared: &(Mutex<Shared>, Condvar),
    config: &PyroscopeConfig,
    endpoint: &Endpoint,
    tls: Option<&Arc<rustls::ClientConfig>>,
    headers: &[(String, String)],
) {
    let (lock, cv) = shared;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
        while s.queue.is_empty() && s.closing.is_none() {
            s = cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        let deadline = s.closing;
        if s.queue.is_empty() || deadline.is_some_and(|d| Instant::now() >= d) {
            return;
        }
        let Some(mut batch) = s.queue.pop_front() else {
            return;
        };
        if batch.queued.elapsed() > MAX_AGE {
            s.stats.dropped += 1;
            continue;
        }
        s.in_flight = true;
        drop(s);
        if batch.body.is_none() {
            if let Some(p) = batch.profile.take() {
                batch.body = Some(push_request(config, &p, unique_id()));
            }
        }
        let body = batch.body.as_deref().unwrap_or_default();
        let timeout = match deadline {
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .min(REQUEST_TIMEOUT),
            None => REQUEST_TIMEOUT,
        };
        let result = post(&Request {
            endpoint,
            tls,
            headers,
            body,
            timeout,
        });
        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
        s.in_flight = false;
        match result {
            Ok(()) => {
                s.stats.pushed += 1;
                backoff = FIRST_BACKOFF;
            }
            Err(Failure::Refused(why)) => {
                s.stats.rejected += 1;
                s.stats.last_error = Some(why);
            }
            Err(Failure::Retry(why)) => {
                s.stats.failed_attempts += 1;
                s.stats.last_error = Some(why);
                if s.queue.len() >= MAX_QUEUED {
                    // Full while this one was out: it is the oldest.
                    s.stats.dropped += 1;
                } else {
                    s.queue.push_front(batch);
                }
                // Pause before retrying, waking early only to stop.
                let until = Instant::now() + backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                loop {
                    let now = Instant::now();
                    let stop_at = s.closing.map_or(until, |d| d.min(until));
                    if now >= stop_at {
                        break;
                    }
                    s = cv
                        .wait_timeout(s, stop_at - now)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let e = parse_url("http://127.0.0.1:4040").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 4040));
        assert_eq!(e.path, "/push.v1.PusherService/Push");
        let e = parse_url("http://pyro.example/prefix/").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("pyro.example", 80));
        assert_eq!(e.path, "/prefix/push.v1.PusherService/Push");
        assert!(!e.tls);
        let e = parse_url("https://pyro.example").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.tls),
            ("pyro.example", 443, true)
        );
        let e = parse_url("https://127.0.0.1:4443/p").unwrap();
        assert_eq!(
            (e.port, e.path.as_str()),
            (4443, "/p/push.v1.PusherService/Push")
        );
        for bad in [
            "https://",
            "ftp://x",
            "http://",
            "http://h:99999",
            "http://u:p@h",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts_everything() {
        // Port 1 on the loopback: nobody listens, every attempt fails.
        let pusher = Pusher::start(PyroscopeConfig {
            url: "http://127.0.0.1:1".into(),
            ca_file: None,
            app_name: "t".into(),
            tags: Vec::new(),
            basic_auth: None,
            tenant_id: None,
            kind: ProfileKind::Cpu,
        })
        .unwrap();
        let n = MAX_QUEUED as u64 + 10;
        for _ in 0..n {
            pusher.push(Profile::new());
        }
        let s = pusher.finish(Duration::from_millis(300));
        assert_eq!(s.pushed, 0);
        assert!(s.dropped >= 9, "{s:?}");
        // Every interval is accounted for: dropped, or still unsent.
        assert_eq!(s.dropped + s.unsent, n, "{s:?}");
        assert!(s.failed_attempts >= 1, "{s:?}");
        assert!(s.last_error.unwrap().contains("cannot connect"));
    }

    #[test]
    fn big_intervals_are_split_into_profiles_pyroscope_accepts() {
        use pyrometer_profile::{FrameInfo, ThreadInfo};
        use pyrometer_sampler::ThreadState;
        let mut p = Profile::new();
        p.meta.rate = 100.0;
        let thread = p.thread_key(ThreadInfo {
            pid: 1,
            thread_id: 1,
            native_id: Some(1),
            name: None,
        });
        let n = 2 * MAX_SAMPLES_PER_PROFILE + 5;
        for i in 0..n {
            let frame = FrameInfo {
                name: p.intern(&format!("f{i}")),
                filename: p.intern("/x.py"),
                line: 1,
                first_line: 1,
            };
            p.add_stack(&[frame], thread, ThreadState::Python, 2);
        }
        let config = PyroscopeConfig {
            url: "http://127.0.0.1:1".into(),
            ca_file: None,
            app_name: "t".into(),
            tags: Vec::new(),
            basic_auth: None,
            tenant_id: None,
            kind: ProfileKind::Cpu,
        };
        let body = push_request(&config, &p, "id".into());
        let req = proto::PushRequest::decode(body.as_slice()).unwrap();
        let parts = &req.series[0].samples;
        assert_eq!(parts.len(), 3);
        let mut total = 0;
        let mut ids = std::collections::BTreeSet::new();
        for part in parts {
            let m = crate::decode_pprof(&part.raw_profile).unwrap();
            assert!(m.sample.len() <= MAX_SAMPLES_PER_PROFILE);
            total += m.sample.iter().map(|x| x.value[0]).sum::<i64>();
            ids.insert(part.id.clone());
        }
        assert_eq!(ids.len(), 3);
        assert_eq!(total, 2 * n as i64 * 10_000_000);
    }

    #[test]
    fn base64_matches_rfc4648() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn tags() {
        let ok = parse_tags(&["env=staging".into(), "region.zone=eu_1".into()]).unwrap();
        assert_eq!(ok[0], ("env".into(), "staging".into()));
        for bad in [
            "env",
            "=x",
            "__name__=x",
            "service_name=a",
            "1a=b",
            "a b=c",
            "e=",
        ] {
            assert!(parse_tags(&[bad.into()]).is_err(), "{bad}");
        }
        assert!(parse_tags(&["a=1".into(), "a=2".into()]).is_err());
    }
}
