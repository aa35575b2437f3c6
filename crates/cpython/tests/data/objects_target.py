"""Target for tests/objects_live.rs: builds objects, describes them as one
JSON line on stdout (addresses are id()s), then sleeps until killed.

Nothing here may touch an instance's __dict__ unless the test wants it
materialized: on 3.11+ that moves attributes from values into a dict.
"""
import json
import struct
import sys
import threading
import time

KEEP = []  # keeps every described object (and its parts) alive


class Plain:
    def __init__(self):
        self.alpha = 1
        self.beta = "two"
        self.gamma = [3]


class Reordered:
    pass


class MyStr(str):
    pass


def ident(o):
    KEEP.append(o)
    return id(o)


def describe(o, kind, **extra):
    d = {"addr": ident(o), "kind": kind, "type": type(o).__name__}
    r = repr(o) if kind != "instance" else None
    d["render"] = r if r is not None and len(r) <= 200 else None
    d.update(extra)
    return d


def main():
    objects = {}

    def s(label, value):
        objects[label] = describe(value, "str", value=value, len=len(value))

    s("str_empty", "")
    s("str_ascii", "hello world")
    s("str_latin1", "h\xe9llo w\xf6rld \xff")
    s("str_bmp", "\u4e2d\u6587 ok \u20ac")
    s("str_astral", "emoji \U0001F600!")
    s("str_escapes", "it's \"quoted\"\n\ttab\\ \x00 \x7f \xa0 \u200b")
    s("str_legacy_ascii", MyStr("legacy ascii"))
    s("str_legacy_wide", MyStr("l\xe9gacy \u4e2d \U0001F600"))
    long = "x" * 1000
    objects["str_long"] = describe(
        long, "str", value=long, len=1000, render_prefix="'xxxxxxxx", render_suffix="'..."
    )

    b = b"bytes\x00\xff'"
    objects["bytes"] = describe(b, "bytes", hex=b.hex())
    b = b""
    objects["bytes_empty"] = describe(b, "bytes", hex="")

    for label, v in [
        ("int_zero", 0),
        ("int_small", 7),
        ("int_negative", -7),
        ("int_2_62", 2 ** 62),
        ("int_min_i64", -(2 ** 63)),
        ("int_2_64", 2 ** 64),
        ("int_neg_big", -(10 ** 40)),
        ("int_googol", 10 ** 100),
        ("int_computed", int("123456789" * 3)),
    ]:
        objects[label] = describe(v, "int", dec=str(v))

    for label, v in [
        ("float_pi", 3.14159),
        ("float_neg_zero", -0.0),
        ("float_1e16", 1e16),
        ("float_1e_7", 1e-7),
        ("float_inf", float("inf")),
        ("float_nan", float("nan")),
        ("float_one", 1.0),
        ("float_frac", 123456789.125),
        ("float_small", 2.5e-05),
    ]:
        bits = struct.unpack("<Q", struct.pack("<d", v))[0]
        objects[label] = describe(v, "float", bits=str(bits))

    objects["bool_true"] = describe(True, "bool", value=True)
    objects["bool_false"] = describe(False, "bool", value=False)
    objects["none"] = describe(None, "none")

    def seq(label, o, kind, **extra):
        objects[label] = describe(o, kind, items=[ident(x) for x in o], **extra)

    seq("tuple", (1, "two", 3.0, None), "tuple")
    seq("tuple_one", (1,), "tuple")
    seq("tuple_empty", (), "tuple")
    seq("list", [1, "x", b"y", None, True], "list")
    seq("list_nested", [1, [2, [3, [4]]], "x"], "list")
    objects["list_nested"]["render"] = "[1, [2, [3, [...]]], 'x']"
    seq("list_many", list(range(50)), "list",
        render_prefix="[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...]", render_suffix="...]")
    objects["list_many"]["render"] = None
    cyc = [1]
    cyc.append(cyc)
    seq("list_cycle", cyc, "list")
    objects["list_cycle"]["render"] = "[1, [1, [1, [...]]]]"

    def dct(label, d, **extra):
        items = [[ident(k), ident(v)] for k, v in d.items()]
        str_keys = {k: ident(v) for k, v in d.items() if type(k) is str}
        objects[label] = describe(d, "dict", items=items, len=len(d), str_keys=str_keys, **extra)

    dct("dict_str", {"a": 1, "b": "two", "c": [3]})
    dct("dict_int", {1: "one", 2: "two", -3: None})
    dct("dict_nested", {"outer": {1: "one", "inner": {"deep": True}}, 5: "five"})
    dct("dict_empty", {})
    d = {"k%d" % i: i for i in range(20)}
    for k in ("k3", "k10", "k0"):
        del d[k]
    d["k3"] = 33
    dct("dict_str_deleted", d)
    objects["dict_str_deleted"]["render"] = None
    d = {i: str(i) for i in range(12)}
    del d[5]
    del d[0]
    d[100] = "hundred"
    dct("dict_int_deleted", d)
    objects["dict_int_deleted"]["render"] = None
    big = {i: i for i in range(400)}
    dct("dict_big", big, render_prefix="{0: 0, 1: 1, 2: 2", render_suffix=", ...}")
    objects["dict_big"]["render"] = None

    def inst(label, o, names, ordered=True):
        attrs = [[n, ident(getattr(o, n))] for n in names]
        objects[label] = describe(o, "instance", attrs=attrs, ordered=ordered)
        objects[label]["render"] = "<%s at %#x>" % (type(o).__name__, id(o))

    p = Plain()
    inst("instance_plain", p, ["alpha", "beta", "gamma"])
    p = Plain()
    p.delta = "extra"
    p.__dict__  # materialize the dict (3.11+)
    inst("instance_materialized", p, ["alpha", "beta", "gamma", "delta"])
    p = Plain()
    del p.beta
    p.beta = "again"
    inst("instance_deleted", p, ["alpha", "gamma", "beta"])
    r = Reordered()
    r.x = 1
    r.y = 2
    inst("instance_xy", r, ["x", "y"])
    r = Reordered()
    r.y = 3
    r.x = 4
    inst("instance_yx", r, ["y", "x"])
    e = Reordered()
    inst("instance_empty", e, [])
    t = threading.Thread(name="worker-1", target=print)
    inst("thread", t, ["_name", "_target"], ordered=False)

    print(json.dumps({"version": list(sys.version_info[:3]), "objects": objects}), flush=True)
    while True:
        time.sleep(60)


main()
