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
        let value = |key: &str| objects::dict_get_str(m, l, dict, key).ok().flatten();
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
