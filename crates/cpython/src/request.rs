//! Which web request a thread serves, read from its frames' locals: a WSGI
//! `environ` dict (`REQUEST_METHOD`, `PATH_INFO`) or an ASGI `scope` dict
//! (`type`, `method`, `path`). Everything is bounded: at most one dict is
//! read per thread, a few keys of it, short strings.

use std::sync::Arc;

use pyrometer_process::Memory;

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

impl<M: Memory> StackReader<M> {
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
        let m = self.memory();
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
