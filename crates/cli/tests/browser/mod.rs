//! Headless Chromium driven over the DevTools protocol (CDP), for tests
//! that open pyrometer's outputs in a real browser: Debian's `chromium`
//! (scripts/setup.sh installs it), started with its own profile directory
//! and no network (every host name resolves to nothing but 127.0.0.1),
//! spoken to over a websocket. Every wait has a deadline.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

/// Chromium is slow to start and to render on a loaded 2-core machine.
pub const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

/// Where tests leave what a person may want to look at (screenshots).
pub fn artifacts_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(tmp).join("test-artifacts");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

pub struct Browser {
    child: Child,
    ws: WebSocket<TcpStream>,
    next_id: u64,
    /// Every event received so far.
    pub events: Vec<Value>,
    stderr_path: PathBuf,
}

fn chromium_binary() -> Result<&'static str, String> {
    for b in ["chromium", "chromium-browser"] {
        if Command::new(b)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            return Ok(b);
        }
    }
    Err("chromium is not installed: run scripts/setup.sh (it installs Debian's chromium)".into())
}

impl Browser {
    /// Start Chromium with a blank page and attach to that page.
    pub fn launch(scratch: &Path) -> Result<Browser, String> {
        let bin = chromium_binary()?;
        let profile = scratch.join("chromium-profile");
        std::fs::create_dir_all(&profile).map_err(|e| format!("{}: {e}", profile.display()))?;
        let stderr_path = scratch.join("chromium.stderr");
        let stderr = std::fs::File::create(&stderr_path).map_err(|e| e.to_string())?;
        let mut child = Command::new(bin)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                "--metrics-recording-only",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--window-size=1400,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {bin}: {e}"))?;
        // Chromium writes its port to DevToolsActivePort once it listens.
        let port_file = profile.join("DevToolsActivePort");
        let deadline = Instant::now() + BROWSER_TIMEOUT;
        let port: u16 = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                if let Some(p) = text.lines().next().and_then(|l| l.trim().parse().ok()) {
                    if text.lines().count() >= 2 {
                        break p;
                    }
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "chromium exited ({status}) before it listened: {}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                ));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "chromium did not listen within {BROWSER_TIMEOUT:?}: {}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut b = None;
        let mut last = String::new();
        while Instant::now() < deadline {
            match page_socket(port) {
                Ok(ws) => {
                    b = Some(ws);
                    break;
                }
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let Some(ws) = b else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("cannot attach to chromium's page: {last}"));
        };
        let mut browser = Browser {
            child,
            ws,
            next_id: 1,
            events: Vec::new(),
            stderr_path,
        };
        for domain in [
            "Runtime.enable",
            "Log.enable",
            "Page.enable",
            "Network.enable",
        ] {
            browser.call(domain, json!({}))?;
        }
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": false}),
        )?;
        Ok(browser)
    }

    /// Send a command and wait for its answer (events meanwhile are kept).
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws
            .send(Message::text(msg))
            .map_err(|e| format!("{method}: cannot send: {e}"))?;
        let deadline = Instant::now() + BROWSER_TIMEOUT;
        loop {
            if Instant::now() > deadline {
                return Err(format!("{method}: no answer within {BROWSER_TIMEOUT:?}"));
            }
            let Some(v) = self.read_one()? else { continue };
            if v["id"].as_u64() == Some(id) {
                if let Some(e) = v.get("error") {
                    return Err(format!("{method}: {e}"));
                }
                return Ok(v["result"].clone());
            }
            if v.get("method").is_some() {
                self.events.push(v);
            }
        }
    }

    /// One message, or None after the socket's read timeout.
    fn read_one(&mut self) -> Result<Option<Value>, String> {
        match self.ws.read() {
            Ok(Message::Text(t)) => serde_json::from_str(t.as_str())
                .map(Some)
                .map_err(|e| format!("bad CDP message ({e})")),
            Ok(_) => Ok(None),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(format!(
                "the connection to chromium failed: {e}; its stderr: {}",
                std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
            )),
        }
    }

    /// Take in events for `d`.
    pub fn pump(&mut self, d: Duration) -> Result<(), String> {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if let Some(v) = self.read_one()? {
                if v.get("method").is_some() {
                    self.events.push(v);
                }
            }
        }
        Ok(())
    }

    pub fn navigate(&mut self, url: &str) -> Result<(), String> {
        let r = self.call("Page.navigate", json!({ "url": url }))?;
        if let Some(e) = r.get("errorText").and_then(Value::as_str) {
            return Err(format!("cannot open {url}: {e}"));
        }
        Ok(())
    }

    /// The value of a JavaScript expression (promises awaited).
    pub fn eval(&mut self, expr: &str) -> Result<Value, String> {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        )?;
        if let Some(d) = r.get("exceptionDetails") {
            return Err(format!("{expr}: threw {d}"));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Wait until `expr` is truthy; its value.
    pub fn wait_for(&mut self, expr: &str, timeout: Duration) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            match self.eval(expr) {
                Ok(v) if truthy(&v) => return Ok(v),
                Ok(v) => last = v,
                Err(e) => last = Value::String(e),
            }
            self.pump(Duration::from_millis(150))?;
        }
        Err(format!(
            "`{expr}` still not true after {timeout:?} (last: {last})"
        ))
    }

    /// A real mouse click (pressed and released) at the middle of the
    /// first element matching `selector`, scrolled into view first.
    pub fn click(&mut self, selector: &str) -> Result<(), String> {
        let sel = serde_json::to_string(selector).unwrap_or_default();
        let r = self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); if (!e) return null; \
             e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
             return [r.left + r.width / 2, r.top + r.height / 2]; }})()"
        ))?;
        let (Some(x), Some(y)) = (r[0].as_f64(), r[1].as_f64()) else {
            return Err(format!("nothing matches {selector}"));
        };
        for (kind, buttons) in [("mouseMoved", 0), ("mousePressed", 1), ("mouseReleased", 0)] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left",
                       "buttons": buttons, "clickCount": 1}),
            )?;
        }
        Ok(())
    }

    /// A PNG of the whole page (up to 8000 px tall).
    pub fn screenshot(&mut self, path: &Path) -> Result<(), String> {
        let h = self
            .eval("Math.ceil(document.documentElement.scrollHeight)")?
            .as_f64()
            .unwrap_or(1000.0)
            .clamp(600.0, 8000.0);
        self.eval("window.scrollTo(0, 0)")?;
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true,
                   "clip": {"x": 0, "y": 0, "width": 1400, "height": h, "scale": 1}}),
        )?;
        let data = r["data"].as_str().ok_or("no screenshot data")?;
        let png = base64_decode(data).ok_or("screenshot is not base64")?;
        if !png.starts_with(b"\x89PNG") {
            return Err("screenshot is not a PNG".into());
        }
        std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Console errors, uncaught exceptions and error log entries (CSP
    /// violations, failed loads) seen so far.
    pub fn errors(&self) -> Vec<String> {
        let mut out = Vec::new();
        for e in &self.events {
            let p = &e["params"];
            match e["method"].as_str() {
                Some("Runtime.consoleAPICalled")
                    if matches!(p["type"].as_str(), Some("error" | "assert")) =>
                {
                    out.push(format!("console.{}: {}", p["type"], p["args"]));
                }
                Some("Runtime.exceptionThrown") => {
                    out.push(format!("exception: {}", p["exceptionDetails"]))
                }
                Some("Log.entryAdded") if p["entry"]["level"] == "error" => {
                    out.push(format!("log: {}", p["entry"]["text"]))
                }
                _ => {}
            }
        }
        out
    }

    /// Every URL the page asked for.
    pub fn requested_urls(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e["method"] == "Network.requestWillBeSent")
            .filter_map(|e| e["params"]["request"]["url"].as_str().map(str::to_string))
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.ws.close(None);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        _ => true,
    }
}

/// The websocket of the browser's first page, from `/json/list`.
fn page_socket(port: u16) -> Result<WebSocket<TcpStream>, String> {
    let body = http_get(port, "/json/list")?;
    let list: Value = serde_json::from_str(&body).map_err(|e| format!("/json/list: {e}"))?;
    let url = list
        .as_array()
        .and_then(|l| l.iter().find(|t| t["type"] == "page"))
        .and_then(|t| t["webSocketDebuggerUrl"].as_str())
        .ok_or_else(|| format!("no page in /json/list: {body}"))?
        .to_string();
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let (ws, _) = tungstenite::client(url.as_str(), stream.try_clone().map_err(|e| e.to_string())?)
        .map_err(|e| format!("websocket {url}: {e}"))?;
    // Reads wake up regularly so that every wait can check its deadline.
    stream
        .set_read_timeout(Some(Duration::from_millis(250)))
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

fn http_get(port: u16, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    // Chromium may keep the connection open: read the headers, then
    // Content-Length bytes.
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = s.read(&mut buf).map_err(|e| format!("GET {path}: {e}"))?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())
                    .flatten()
            });
            if len.is_some_and(|len| body.len() >= len) {
                return Ok(body.to_string());
            }
        }
        if raw.len() > 1 << 20 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&raw);
    Ok(text
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string())
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// A static file server on 127.0.0.1 for one directory, in a thread, for
/// as long as it lives (GET only, no directory listings).
pub struct StaticServer {
    pub port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StaticServer {
    pub fn start(roots: Vec<PathBuf>) -> Result<StaticServer, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let _ = serve_one(s, &roots);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(StaticServer {
            port,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_one(mut s: TcpStream, roots: &[PathBuf]) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 65536 {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        req.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&req);
    let path = text
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("/")
        .split(['?', '#'])
        .next()
        .unwrap_or("/")
        .trim_start_matches('/')
        .to_string();
    let safe = !path.split('/').any(|c| c == ".." || c.is_empty()) || path.is_empty();
    let path = if path.is_empty() {
        "index.html".to_string()
    } else {
        path
    };
    let file = roots
        .iter()
        .map(|r| r.join(&path))
        .find(|p| safe && p.is_file());
    match file.and_then(|f| std::fs::read(f).ok()) {
        Some(body) => {
            let ct = match path.rsplit('.').next() {
                Some("html") => "text/html; charset=utf-8",
                Some("js") => "text/javascript",
                Some("css") => "text/css",
                Some("json") => "application/json",
                Some("png") => "image/png",
                Some("wasm") => "application/wasm",
                Some("woff2") => "font/woff2",
                _ => "application/octet-stream",
            };
            write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            s.write_all(&body)
        }
        None => {
            s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        }
    }
}
