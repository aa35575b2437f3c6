//! Which web request a thread serves, read from its frames' locals: a WSGI
//! `environ` dict (`REQUEST_METHOD`, `PATH_INFO`) or an ASGI `scope` dict
//! (`type`, `method`, `path`). Everything is bounded: at most one dict is
//! read per thread, a few keys of it, short strings.
//!
//! A sync endpoint that an ASGI framework runs in anyio's thread pool
//! (FastAPI's `def` endpoints, Starlette's `run_in_threadpool`) has no
//! `scope` on its worker thread's stack. There the request is found from
//! anyio's `WorkerThread.run` frame: its `cancel_scope` local knows the task
//! that awaits the call (`_host_task`), whose coroutine (uvicorn's
//! `RequestResponseCycle.run_asgi`, or any coroutine with a `scope` local)
//! holds the scope. When that chain cannot be followed the request is still
//! a request, with `?` for its method and no path.

use std::sync::Arc;

use pyrometer_process::{Memory, Transient};

use crate::layout::{CoroFrame, FrameModel};
use crate::objects;
use crate::stack::{StackReader, ThreadStack, MAX_USER_ADDRESS};

/// Which protocol a request came in by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// A WSGI `environ`.
    Wsgi,
    /// An ASGI `scope`.
    Asgi,
}

/// A request seen in a thread's stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// Identity of the request while it lives: the address of its dict.
    pub key: u64,
    /// WSGI or ASGI.
    pub kind: RequestKind,
    /// `GET`, `POST`, ...
    pub method: Arc<str>,
    /// The raw path (capped at [`MAX_PATH`] characters).
    pub path: Arc<str>,
    /// Index (innermost first) of the frame holding the request dict.
    pub frame_index: usize,
}

/// Entries read from a request dict (a WSGI environ has a few dozen).
const MAX_DICT_ITEMS: usize = 512;
const KEY_OTHER: u8 = 0;

/// The slot a request-dict key fills: 1 method, 2 path, 3 ASGI type.
fn key_slot(name: &str) -> u8 {
    match name {
        "REQUEST_METHOD" | "method" => 1,
        "PATH_INFO" | "path" => 2,
        "type" => 3,
        _ => KEY_OTHER,
    }
}

/// Longest path kept.
pub const MAX_PATH: usize = 200;
/// Frames examined per thread, innermost first.
const MAX_FRAMES_SEARCHED: usize = 256;

/// The local that holds a request dict in a code object, if any: its index
/// among the fast locals, and the protocol.
pub fn request_slot(varnames: &[Arc<str>], nlocals: usize) -> Option<(usize, RequestKind)> {
    varnames
        .iter()
        .take(nlocals.max(1).min(varnames.len()))
        .enumerate()
        .find_map(|(i, n)| match &**n {
            "environ" => Some((i, RequestKind::Wsgi)),
            "scope" => Some((i, RequestKind::Asgi)),
            _ => None,
        })
}

/// The locals of anyio's `WorkerThread.run` that identify the call it is
/// running: indexes of `future`, `func`, `context` and `cancel_scope`
/// among the fast locals (any but `future` may be missing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerSlots {
    /// `future`: a new `asyncio.Future` per call.
    pub future: usize,
    /// `func`: the callable (FastAPI: a new `functools.partial` per call).
    pub func: Option<usize>,
    /// `context`: a new `contextvars.Context` per call.
    pub context: Option<usize>,
    /// `cancel_scope`: anyio's scope, whose `_host_task` awaits the call.
    pub cancel_scope: Option<usize>,
}

/// The [`WorkerSlots`] of a code object if it is anyio's worker loop
/// (`WorkerThread.run` in `anyio/_backends/_asyncio.py`, anyio 3 and 4).
pub fn worker_slots(
    filename: &str,
    name: &str,
    varnames: &[Arc<str>],
    nlocals: usize,
) -> Option<WorkerSlots> {
    if name != "run" || !filename.ends_with("anyio/_backends/_asyncio.py") {
        return None;
    }
    let locals = &varnames[..nlocals.max(1).min(varnames.len())];
    let slot = |want: &str| locals.iter().position(|n| &**n == want);
    Some(WorkerSlots {
        future: slot("future")?,
        func: slot("func"),
        context: slot("context"),
        cancel_scope: slot("cancel_scope"),
    })
}

/// Whether a frame directly inside anyio's worker loop means the worker is
/// not running a call: waiting for work (`Queue.get`), or handing a result
/// back to the event loop (`call_soon_threadsafe`), by when the request may
/// have moved on.
fn worker_waits(filename: &str) -> bool {
    filename.ends_with("/queue.py")
        || filename.ends_with("anyio/_backends/_asyncio.py")
        || filename.contains("/asyncio/")
}

/// Threadpool requests whose scope was looked up, kept per call identity.
const MAX_THREADPOOL_CACHED: usize = 4096;
/// Base classes followed to find the C task under a subclass.
const MAX_TASK_BASES: usize = 8;

/// Whether `obj` is a C `_asyncio.Task` or an instance of a subclass of it;
/// `None` when its type cannot be read.
fn is_c_task<M: Memory>(m: &M, l: &crate::Layout, obj: u64) -> Option<bool> {
    let mut tp = objects::type_of(m, l, obj).ok()?;
    for _ in 0..MAX_TASK_BASES {
        if objects::type_name_of_type(m, l, tp, 64).ok().as_deref() == Some("_asyncio.Task") {
            return Some(true);
        }
        tp = m.read_u64(tp.checked_add(l.type_tp_base)?).ok()?;
        if tp == 0 || tp > MAX_USER_ADDRESS {
            return Some(false);
        }
    }
    Some(false)
}

/// Lookups of a threadpool call's scope before it is named without it.
const MAX_LOOKUPS: u8 = 3;
/// The path of a threadpool request whose scope was not found.
const NO_PATH: &str = "";

impl<M: Memory> StackReader<M> {
    /// The request a thread of anyio's thread pool is running, if it is
    /// running one: the innermost `WorkerThread.run` frame with a call under
    /// it. Its key is the call's identity (or the scope's when found);
    /// `frame_index` is the worker frame's, so the endpoint's view is the
    /// outermost application frame inside it. Lookups of the scope are
    /// cached per call, so a long call costs a few reads per sample.
    pub fn threadpool_request_of(&mut self, stack: &ThreadStack) -> Option<RequestInfo> {
        let (index, slots) = stack
            .frames
            .iter()
            .enumerate()
            .take(MAX_FRAMES_SEARCHED)
            .find_map(|(i, f)| f.code.worker_slots.map(|s| (i, s)))?;
        // Nothing inside the worker loop, or only its queue: it is idle, and
        // what was looked up for its last call is forgotten (a next call's
        // objects may well reuse the same addresses).
        let idle = index
            .checked_sub(1)
            .and_then(|i| stack.frames.get(i))
            .is_none_or(|f| worker_waits(&f.code.filename));
        if idle {
            if let Some(last) = self.threadpool_last.borrow_mut().remove(&stack.tstate) {
                self.threadpool_requests.borrow_mut().remove(&last);
            }
            return None;
        }
        let inner = stack.frames.get(index.checked_sub(1)?)?;
        let frame = stack.frames.get(index)?;
        let future = self.local_value(frame, slots.future)?;
        let other =
            |slot: Option<usize>| slot.and_then(|s| self.local_value(frame, s)).unwrap_or(0);
        // A call is its future, callable and context, and the function it
        // runs: objects that live as long as the call.
        let call = future
            ^ other(slots.func).rotate_left(16)
            ^ other(slots.context).rotate_left(32)
            ^ inner.code.addr.rotate_left(48);
        {
            let mut last = self.threadpool_last.borrow_mut();
            if last.len() >= MAX_THREADPOOL_CACHED {
                last.clear();
            }
            last.insert(stack.tstate, call);
        }
        let misses = match self.threadpool_requests.borrow().get(&call) {
            Some((info, misses)) if info.method.as_ref() != "?" || *misses >= MAX_LOOKUPS => {
                return Some(RequestInfo {
                    frame_index: index,
                    ..info.clone()
                });
            }
            Some((_, misses)) => *misses,
            None => 0,
        };
        let scope = slots
            .cancel_scope
            .and_then(|s| self.local_value(frame, s))
            .and_then(|cs| self.awaiting_scope(cs))
            .and_then(|dict| self.read_request_dict(dict, RequestKind::Asgi, index));
        let info = scope.unwrap_or_else(|| RequestInfo {
            key: call,
            kind: RequestKind::Asgi,
            method: Arc::from("?"),
            path: Arc::from(NO_PATH),
            frame_index: index,
        });
        let mut cache = self.threadpool_requests.borrow_mut();
        if cache.len() >= MAX_THREADPOOL_CACHED {
            cache.clear();
        }
        // A failed lookup (a read torn while the event loop ran) is tried
        // again on the next samples of the call, a few times.
        let misses = if info.method.as_ref() == "?" {
            misses + 1
        } else {
            misses
        };
        cache.insert(call, (info.clone(), misses));
        Some(info)
    }

    /// The ASGI scope dict of the task awaiting an anyio cancel scope:
    /// `cancel_scope._host_task` → the task's coroutine → its frame's
    /// `scope` local, or the `scope` attribute of its `self` (uvicorn's
    /// `RequestResponseCycle.run_asgi`).
    fn awaiting_scope(&mut self, cancel_scope: u64) -> Option<u64> {
        let (m, l) = (&Transient(self.memory()), self.layout());
        // anyio 4 declares `__slots__`; older releases used a `__dict__`.
        let task = match objects::get_slot(m, l, cancel_scope, "_host_task").ok()? {
            Some(t) => t,
            None => objects::get_attr(m, l, cancel_scope, "_host_task").ok()??,
        };
        // The C task (or a Python subclass of it) keeps its coroutine in a
        // struct field; asyncio's pure-Python task in `_coro`.
        let coro = if is_c_task(m, l, task)? {
            m.read_u64(task + l.asyncio_task_coro?).ok()?
        } else {
            objects::get_attr(m, l, task, "_coro").ok()??
        };
        if coro == 0
            || coro > MAX_USER_ADDRESS
            || objects::type_name(m, l, coro).ok()? != "coroutine"
        {
            return None;
        }
        let frame_addr = match l.coro_frame {
            CoroFrame::Pointer(off) => m.read_u64(coro + off).ok()?,
            CoroFrame::Inline(off) => coro.checked_add(off)?,
            CoroFrame::Unknown => return None,
        };
        if frame_addr == 0 || frame_addr > MAX_USER_ADDRESS {
            return None;
        }
        let code_addr = match l.frame {
            FrameModel::FrameObject { code, .. } => m.read_u64(frame_addr + code).ok()?,
            FrameModel::Interpreter {
                executable,
                executable_tag_mask,
                ..
            } => m.read_u64(frame_addr + executable).ok()? & !executable_tag_mask,
        };
        if code_addr == 0 || code_addr > MAX_USER_ADDRESS {
            return None;
        }
        let code = self.code(code_addr).ok()?;
        let frame = crate::stack::Frame {
            name: code.qualname.clone(),
            line: None,
            frame_addr,
            code,
        };
        if let Some((slot, RequestKind::Asgi)) = frame.code.request_slot {
            return self.local_value(&frame, slot);
        }
        let this = (frame.code.argcount > 0
            && frame.code.varnames.first().is_some_and(|n| &**n == "self"))
        .then(|| self.local_value(&frame, 0))??;
        objects::get_attr(self.memory(), self.layout(), this, "scope").ok()?
    }

    /// The request the thread is serving, found in the innermost frame whose
    /// code has an `environ` or `scope` local holding a dict of the right
    /// shape.
    pub fn request_of(&self, stack: &ThreadStack) -> Option<RequestInfo> {
        for (i, frame) in stack.frames.iter().enumerate().take(MAX_FRAMES_SEARCHED) {
            let Some((slot, kind)) = frame.code.request_slot else {
                continue;
            };
            let Some(dict) = self.local_value(frame, slot) else {
                continue;
            };
            if let Some(info) = self.read_request_dict(dict, kind, i) {
                return Some(info);
            }
        }
        None
    }

    fn read_request_dict(
        &self,
        dict: u64,
        kind: RequestKind,
        frame_index: usize,
    ) -> Option<RequestInfo> {
        // Read the request's objects as transient: they are new with every
        // request, and the snapshot need not keep fetching them after it.
        let m = &Transient(self.memory());
        let l = self.layout();
        if dict == 0 || dict > MAX_USER_ADDRESS {
            return None;
        }
        if objects::type_name(m, l, dict).ok()? != "dict" {
            return None;
        }
        // Read the dict's entries once (key and value pointers); name each
        // key through a cache of key-string addresses, so the strings of a
        // server's constant keys ("REQUEST_METHOD", "path", ...) are read
        // once per process rather than on every sample.
        let items = objects::dict_items(m, l, dict, MAX_DICT_ITEMS).ok()?;
        let mut found: [u64; 4] = [0; 4];
        {
            let mut names = self.request_keys.borrow_mut();
            if names.len() > 65_536 {
                names.clear();
            }
            for (k, v) in items {
                let slot = match names.get(&k) {
                    Some(s) => *s,
                    None => {
                        let s = objects::read_str_prefix(m, l, k, 20)
                            .map(|(name, _)| key_slot(&name))
                            .unwrap_or(KEY_OTHER);
                        names.insert(k, s);
                        s
                    }
                };
                if slot != KEY_OTHER {
                    found[slot as usize] = v;
                }
            }
        }
        let value = |key: &str| -> Option<u64> {
            let slot = key_slot(key);
            Some(found[slot as usize]).filter(|v| *v != 0)
        };
        let text = |key: &str, max: usize| -> Option<String> {
            objects::read_str_prefix(m, l, value(key)?, max)
                .ok()
                .map(|(s, _)| s)
        };
        // A server may reuse one dict's memory for the next request: the
        // path string (a new object per request) tells them apart.
        let path_key = match kind {
            RequestKind::Wsgi => "PATH_INFO",
            RequestKind::Asgi => "path",
        };
        let identity = dict ^ value(path_key).unwrap_or(0).rotate_left(29);
        let (method, path) = match kind {
            RequestKind::Wsgi => (text("REQUEST_METHOD", 16)?, text("PATH_INFO", MAX_PATH)?),
            RequestKind::Asgi => {
                let ty = text("type", 16)?;
                if ty != "http" && ty != "websocket" {
                    return None;
                }
                let method = if ty == "websocket" {
                    "WEBSOCKET".to_string()
                } else {
                    text("method", 16)?
                };
                (method, text("path", MAX_PATH)?)
            }
        };
        // A dict read while the server fills or clears it can hold anything:
        // only a plausible method and an absolute path make a request.
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            return None;
        }
        if !path.starts_with('/') || path.chars().any(|c| c.is_control()) {
            return None;
        }
        Some(RequestInfo {
            key: identity,
            kind,
            method: Arc::from(method),
            path: Arc::from(path),
            frame_index,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<Arc<str>> {
        list.iter().map(|n| Arc::from(*n)).collect()
    }

    #[test]
    fn worker_slots_find_anyio_worker_locals() {
        let file = "/venv/lib/python3.11/site-packages/anyio/_backends/_asyncio.py";
        let locals = names(&[
            "self",
            "item",
            "context",
            "func",
            "args",
            "future",
            "cancel_scope",
            "result",
        ]);
        assert_eq!(
            worker_slots(file, "run", &locals, locals.len()),
            Some(WorkerSlots {
                future: 5,
                func: Some(3),
                context: Some(2),
                cancel_scope: Some(6),
            })
        );
        // anyio 3 had no cancel scope in the item.
        let old = names(&["self", "item", "context", "func", "args", "future"]);
        let slots = worker_slots(file, "run", &old, old.len()).expect("anyio 3");
        assert_eq!((slots.future, slots.cancel_scope), (5, None));
        // Other functions, other files, or no `future`: not the worker loop.
        assert_eq!(worker_slots(file, "_report_result", &locals, 8), None);
        assert_eq!(worker_slots("/srv/anyio_like.py", "run", &locals, 8), None);
        assert_eq!(
            worker_slots(file, "run", &names(&["self", "item"]), 2),
            None
        );
        // Only real locals count (not cells or free variables beyond nlocals).
        assert_eq!(worker_slots(file, "run", &locals, 5), None);
    }

    #[test]
    fn the_worker_waits_in_its_queue_or_handing_back() {
        assert!(worker_waits("/usr/lib/python3.11/queue.py"));
        assert!(worker_waits("/usr/lib/python3.11/asyncio/base_events.py"));
        assert!(worker_waits(
            "/venv/lib/python3.11/site-packages/anyio/_backends/_asyncio.py"
        ));
        assert!(!worker_waits("/srv/app.py"));
        assert!(!worker_waits(
            "/venv/lib/python3.11/site-packages/fastapi/routing.py"
        ));
    }
}
