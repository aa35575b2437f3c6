"""Ground truth for pyrometer's integration tests (crates/cli/tests).

Target scripts block their threads at lines marked with `# @tag` comments,
then describe every thread's stack as CPython itself sees it
(sys._current_frames(), f_back chains, f_lineno) and print that as one JSON
line on stdout. Before printing, they check that each thread is really
parked at its marked line, so the expectations do not depend on hardcoded
line numbers.

Frame names follow pyrometer's documented rule: co_qualname on 3.11+; on
3.8-3.10 (no co_qualname) `Class.method` when the first argument is named
self or cls (the class of self, or cls itself), else co_name.
"""
import json
import os
import sys
import threading
import time

QUALNAME = sys.version_info >= (3, 11)


def markers(path):
    """{tag: line} for every `# @tag` comment of a source file."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for no, text in enumerate(f, 1):
            i = text.find("# @")
            if i >= 0:
                tag = text[i + 3:].split()[0]
                if tag in out:
                    raise SystemExit("marker %s twice in %s" % (tag, path))
                out[tag] = no
    return out


def frame_name(frame):
    code = frame.f_code
    if QUALNAME:
        return code.co_qualname
    if code.co_argcount >= 1 and code.co_varnames:
        first = code.co_varnames[0]
        if first in ("self", "cls") and first in frame.f_locals:
            obj = frame.f_locals[first]
            cls = obj if first == "cls" else type(obj)
            return "%s.%s" % (cls.__name__, code.co_name)
    return code.co_name


def describe(frame, limit=100000):
    """The stack from `frame` outwards (innermost first)."""
    frames = []
    while frame is not None and len(frames) < limit:
        frames.append({
            "name": frame_name(frame),
            "co_name": frame.f_code.co_name,
            "filename": frame.f_code.co_filename,
            "line": frame.f_lineno,
        })
        frame = frame.f_back
    return frames


def native_state(native_id):
    """The scheduler state letter of one of our threads (R, S, ...)."""
    try:
        with open("/proc/self/task/%d/stat" % native_id) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "?"


def wait_parked(threads, timeout=15.0):
    """Wait until each thread's stack contains a frame of `func` at `line`
    and (for blocked threads) the thread sleeps in the kernel.

    `threads`: {thread: (func_co_name, line, blocked)}.
    Returns {thread: stack} as seen once all are parked.
    """
    deadline = time.monotonic() + timeout
    stable = 0
    last = None
    while True:
        frames = sys._current_frames()
        ok = True
        snap = {}
        for t, (func, line, blocked) in threads.items():
            f = frames.get(t.ident)
            stack = describe(f) if f is not None else []
            snap[t] = stack
            at = [fr for fr in stack if fr["co_name"] == func and fr["line"] == line]
            if not at:
                ok = False
            elif blocked and native_state(t.native_id) not in ("S", "D"):
                ok = False
        if ok:
            # The same snapshot twice, 50 ms apart: nothing is moving.
            key = json.dumps({t.ident: s for t, s in snap.items()}, sort_keys=True)
            stable = stable + 1 if key == last else 0
            last = key
            if stable >= 2:
                return snap
        if time.monotonic() > deadline:
            raise SystemExit(
                "threads did not park: %r" % {t.name: s[:3] for t, s in snap.items()})
        time.sleep(0.05)


def thread_doc(t, stack, blocked):
    return {
        "name": t.name,
        "ident": t.ident,
        "native_id": t.native_id,
        "blocked": blocked,
        "frames": stack,
    }


def emit(doc):
    """Print the ready line (UTF-8, not escaped, so the test also reads raw
    non-ASCII)."""
    doc.setdefault("pid", os.getpid())
    # The caller parks right after: the test waits for this thread to be
    # asleep before it reads stacks (crates/cli/tests/common start_target).
    doc.setdefault("emitter_native_id", threading.get_native_id())
    doc.setdefault("version", "%d.%d.%d" % sys.version_info[:3])
    line = json.dumps(doc, ensure_ascii=False) + "\n"
    sys.stdout.buffer.write(line.encode("utf-8"))
    sys.stdout.flush()


def self_stack(parked_line):
    """The caller's own stack as it will be when it is parked at
    `parked_line` in its own frame (the caller's caller, if called
    through a helper, is not involved)."""
    stack = describe(sys._getframe(1))
    stack[0]["line"] = parked_line
    return stack
