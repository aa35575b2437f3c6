//! Web attribution: which endpoint a sample belongs to, and which category
//! of code (the application, the framework, the database driver, ...) it
//! is spending its time in.

use std::sync::Arc;

use pyrometer_cpython::{Frame, RequestInfo};

/// A request as carried by a sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampledRequest {
    /// Identity of the request within its thread while it lives.
    pub key: u64,
    /// `GET`, `POST`, ...
    pub method: Arc<str>,
    /// Raw path, capped.
    pub path: Arc<str>,
    /// `METHOD module.view`, or `METHOD /normalized/path` until the view is
    /// seen: low cardinality by construction.
    pub endpoint: Arc<str>,
}

/// Names endpoints: the view function the framework dispatched to, found
/// as the outermost application frame inside the frame holding the request.
#[derive(Debug)]
pub struct EndpointNamer {
    /// Endpoint names by request key, bounded by entries and bytes.
    by_request: pyrometer_cpython::cache::BoundedMap<u64, Arc<str>>,
}

impl Default for EndpointNamer {
    fn default() -> Self {
        EndpointNamer {
            by_request: pyrometer_cpython::cache::BoundedMap::new(10_000, 2 << 20),
        }
    }
}

impl EndpointNamer {
    /// Name the endpoint of `req`, seen in `frames` (innermost first).
    pub fn name(&mut self, req: &RequestInfo, frames: &[Frame]) -> Arc<str> {
        // The view is the outermost application frame from the frame that
        // holds the request inward (inclusive: a plain WSGI app's own
        // functions may take `environ`).
        let upto = (req.frame_index + 1).min(frames.len());
        let view = frames[..upto]
            .iter()
            .rev()
            .find(|f| category_of(&f.code.filename) == Category::App);
        if let Some(v) = view {
            let module = module_of(&v.code.filename);
            let name: Arc<str> = Arc::from(format!("{} {}.{}", req.method, module, v.name));
            self.by_request.insert(req.key, name.clone());
            return name;
        }
        if let Some(n) = self.by_request.get(&req.key) {
            return n.clone();
        }
        if req.path.is_empty() {
            // A threadpool call whose request was not found, running no
            // application code.
            return Arc::from(format!("{} threadpool", req.method));
        }
        Arc::from(format!("{} {}", req.method, normalize_path(&req.path)))
    }
}

/// `/users/123/orders/9f8e...` → `/users/{id}/orders/{id}`: ids out of
/// paths keep endpoint names few.
pub fn normalize_path(path: &str) -> String {
    let mut out = String::new();
    for seg in path.split('/').filter(|s| !s.is_empty()).take(6) {
        out.push('/');
        let idlike = seg.bytes().any(|b| b.is_ascii_digit())
            && (seg.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') || seg.len() > 24);
        if idlike || seg.parse::<u64>().is_ok() {
            out.push_str("{id}");
        } else {
            out.push_str(seg);
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// `/srv/app/views.py` → `views`.
fn module_of(filename: &str) -> &str {
    let base = filename.rsplit('/').next().unwrap_or(filename);
    base.strip_suffix(".py").unwrap_or(base)
}

/// What kind of code a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// The application's own code.
    App,
    /// Web framework and server.
    Framework,
    /// Database drivers and ORMs.
    Database,
    /// Template rendering.
    Templates,
    /// JSON, pickle and friends.
    Serialization,
    /// HTTP clients.
    HttpClient,
    /// Other installed libraries.
    Library,
    /// The standard library.
    Stdlib,
}

impl Category {
    /// The label used in outputs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Category::App => "app",
            Category::Framework => "framework",
            Category::Database => "database",
            Category::Templates => "templates",
            Category::Serialization => "serialization",
            Category::HttpClient => "http-client",
            Category::Library => "library",
            Category::Stdlib => "stdlib",
        }
    }
}

/// The category of a file, from its path.
pub fn category_of(filename: &str) -> Category {
    let pkg_path = ["/site-packages/", "/dist-packages/"]
        .iter()
        .find_map(|m| filename.rfind(m).map(|i| &filename[i + m.len()..]));
    if let Some(rel) = pkg_path {
        let top = rel.split('/').next().unwrap_or(rel);
        let top = top.strip_suffix(".py").unwrap_or(top);
        return match top {
            "flask" | "werkzeug" | "starlette" | "fastapi" | "gunicorn" | "uvicorn" | "anyio"
            | "h11" | "httptools" | "uvloop" | "click" | "itsdangerous" | "asgiref" => {
                Category::Framework
            }
            "django" => {
                if rel.starts_with("django/db/") {
                    Category::Database
                } else if rel.starts_with("django/template/") {
                    Category::Templates
                } else {
                    Category::Framework
                }
            }
            "psycopg" | "psycopg2" | "pymysql" | "MySQLdb" | "sqlalchemy" | "asyncpg"
            | "aiosqlite" | "pymongo" | "redis" => Category::Database,
            "jinja2" | "mako" | "markupsafe" => Category::Templates,
            "orjson" | "ujson" | "simplejson" | "msgpack" | "pydantic" | "pydantic_core" => {
                Category::Serialization
            }
            "requests" | "urllib3" | "httpx" | "httpcore" | "aiohttp" => Category::HttpClient,
            _ => Category::Library,
        };
    }
    if filename.starts_with("<frozen ") {
        return Category::Stdlib;
    }
    if let Some(i) = filename.find("/lib/python3.") {
        let rest = &filename[i + "/lib/python3.".len()..];
        let rel = rest.split_once('/').map(|(_, r)| r).unwrap_or("");
        let top = rel.split('/').next().unwrap_or("");
        return match top.strip_suffix(".py").unwrap_or(top) {
            "sqlite3" => Category::Database,
            "json" | "pickle" | "copyreg" | "marshal" | "csv" => Category::Serialization,
            "urllib" => Category::HttpClient,
            "http" if rel.starts_with("http/client") => Category::HttpClient,
            _ => Category::Stdlib,
        };
    }
    Category::App
}

/// Categories of the files of one process's code objects, so that a
/// sample's category costs lookups, not path searches for every frame.
/// Keyed by the filename string the code cache shares between a file's code
/// objects; holding it keeps its address from being reused by another.
#[derive(Debug, Default)]
pub struct CategoryCache {
    by_filename: rustc_hash::FxHashMap<usize, (Arc<str>, Category)>,
}

/// Filenames remembered before the cache starts afresh (a process that
/// keeps compiling code under new names must not grow pyrometer's memory).
const MAX_CACHED_FILENAMES: usize = 4096;

impl CategoryCache {
    /// [`category_of`] `filename`.
    pub fn category(&mut self, filename: &Arc<str>) -> Category {
        let key = Arc::as_ptr(filename) as *const u8 as usize;
        if let Some((_, c)) = self.by_filename.get(&key) {
            return *c;
        }
        let c = category_of(filename);
        if self.by_filename.len() >= MAX_CACHED_FILENAMES {
            self.by_filename.clear();
        }
        self.by_filename.insert(key, (filename.clone(), c));
        c
    }

    /// The category of a stack: that of the innermost frame outside the
    /// generic standard library (so `socket` under a database driver counts
    /// as the driver, `json` under the app as serialization); the standard
    /// library when the stack has nothing else.
    pub fn stack_category(&mut self, frames: &[Frame]) -> Option<Category> {
        frames.first()?;
        Some(
            frames
                .iter()
                .take(256)
                .map(|f| self.category(&f.code.filename))
                .find(|c| *c != Category::Stdlib)
                .unwrap_or(Category::Stdlib),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_categories_are_those_of_the_paths() {
        let mut cache = CategoryCache::default();
        let paths = [
            "/venv/lib/python3.11/site-packages/flask/app.py",
            "/usr/lib/python3.11/json/decoder.py",
            "/srv/app/views.py",
        ];
        let names: Vec<Arc<str>> = paths.iter().map(|p| Arc::from(*p)).collect();
        for _ in 0..2 {
            for (name, path) in names.iter().zip(paths) {
                assert_eq!(cache.category(name), category_of(path), "{path}");
            }
        }
        // More filenames than it keeps: it starts afresh and stays right.
        for i in 0..MAX_CACHED_FILENAMES + 10 {
            let name: Arc<str> =
                Arc::from(format!("/venv/lib/python3.11/site-packages/redis/m{i}.py"));
            assert_eq!(cache.category(&name), Category::Database);
        }
        assert!(cache.by_filename.len() <= MAX_CACHED_FILENAMES);
        assert_eq!(cache.category(&names[2]), Category::App);
    }

    #[test]
    fn categories_from_paths() {
        let sp = "/venv/lib/python3.11/site-packages";
        assert_eq!(
            category_of(&format!("{sp}/flask/app.py")),
            Category::Framework
        );
        assert_eq!(
            category_of(&format!("{sp}/django/db/models/query.py")),
            Category::Database
        );
        assert_eq!(
            category_of(&format!("{sp}/django/template/base.py")),
            Category::Templates
        );
        assert_eq!(
            category_of(&format!("{sp}/jinja2/environment.py")),
            Category::Templates
        );
        assert_eq!(
            category_of(&format!("{sp}/numpy/core/numeric.py")),
            Category::Library
        );
        assert_eq!(
            category_of("/usr/lib/python3.11/json/encoder.py"),
            Category::Serialization
        );
        assert_eq!(
            category_of("/usr/lib/python3.11/sqlite3/dbapi2.py"),
            Category::Database
        );
        assert_eq!(
            category_of("/usr/lib/python3.11/threading.py"),
            Category::Stdlib
        );
        assert_eq!(
            category_of("/usr/lib/python3.11/http/client.py"),
            Category::HttpClient
        );
        assert_eq!(
            category_of("/usr/lib/python3.11/http/server.py"),
            Category::Stdlib
        );
        assert_eq!(
            category_of("<frozen importlib._bootstrap>"),
            Category::Stdlib
        );
        assert_eq!(category_of("/srv/app/views.py"), Category::App);
    }

    fn frame(name: &str, filename: &str) -> Frame {
        let code = pyrometer_cpython::CodeInfo {
            name: Arc::from(name),
            qualname: Arc::from(name),
            filename: Arc::from(filename),
            first_line: 1,
            argcount: 0,
            varnames: Vec::new(),
            kinds: Vec::new(),
            nlocals: 0,
            cellvars: Vec::new(),
            lines: Default::default(),
            code_start: 0,
            calls: Default::default(),
            request_slot: None,
            worker_slots: None,
            addr: 0,
            identity: (0, 0),
        };
        Frame {
            code: Arc::new(code),
            line: None,
            name: Arc::from(name),
            frame_addr: 0,
        }
    }

    fn request(method: &str, path: &str, key: u64, frame_index: usize) -> RequestInfo {
        RequestInfo {
            key,
            kind: pyrometer_cpython::RequestKind::Asgi,
            method: Arc::from(method),
            path: Arc::from(path),
            frame_index,
        }
    }

    /// A worker thread of anyio's pool, innermost first: app code, the
    /// view, anyio's worker loop, threading.
    fn worker_stack(view: &str) -> Vec<Frame> {
        let sp = "/venv/lib/python3.11/site-packages";
        vec![
            frame("count_primes", "/srv/app.py"),
            frame(view, "/srv/app.py"),
            frame(
                "WorkerThread.run",
                &format!("{sp}/anyio/_backends/_asyncio.py"),
            ),
            frame(
                "Thread._bootstrap_inner",
                "/usr/lib/python3.11/threading.py",
            ),
        ]
    }

    #[test]
    fn threadpool_calls_are_named_by_their_view() {
        let mut namer = EndpointNamer::default();
        // The scope was found: its method and the view under the worker loop.
        let frames = worker_stack("sync_burn");
        let found = request("GET", "/burn", 1, 2);
        assert_eq!(&*namer.name(&found, &frames), "GET app.sync_burn");
        // It was not: `?` and the view.
        let unknown = request("?", "", 2, 2);
        assert_eq!(&*namer.name(&unknown, &frames), "? app.sync_burn");
        // Nothing of the application's is running (a framework call in the
        // pool, or the worker before the view is on the stack).
        let sp = "/venv/lib/python3.11/site-packages";
        let framework_only = vec![
            frame("serialize", &format!("{sp}/fastapi/routing.py")),
            frame(
                "WorkerThread.run",
                &format!("{sp}/anyio/_backends/_asyncio.py"),
            ),
        ];
        assert_eq!(
            &*namer.name(&request("?", "", 3, 1), &framework_only),
            "? threadpool"
        );
        // ... unless the same request was named before: the name sticks.
        assert_eq!(
            &*namer.name(&request("?", "", 2, 1), &framework_only),
            "? app.sync_burn"
        );
        // A found request running framework code only is named by its path.
        assert_eq!(
            &*namer.name(&request("GET", "/items/42", 4, 1), &framework_only),
            "GET /items/{id}"
        );
    }

    #[test]
    fn paths_normalize_ids_away() {
        assert_eq!(normalize_path("/users/123/orders"), "/users/{id}/orders");
        assert_eq!(
            normalize_path("/a/9f8e7d6c-1111-2222-3333-444455556666"),
            "/a/{id}"
        );
        assert_eq!(normalize_path("/process"), "/process");
        assert_eq!(normalize_path(""), "/");
        assert_eq!(normalize_path("/v2/items"), "/v2/items");
    }
}
