#!/usr/bin/env python3
"""Write THIRD-PARTY.md: the crates compiled into the `pyrometer` binary
(normal and build dependencies, transitively, for x86_64 Linux) grouped by
license, from `cargo metadata`. Run it after changing dependencies:

    python3 scripts/third-party.py

crates/cli/tests/licenses.rs checks every license is one pyrometer may
ship under MIT OR Apache-2.0, and that this file covers each of them.
"""
import collections
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HEADER = """\
# Third-party licenses

pyrometer is MIT OR Apache-2.0 (LICENSE). The `pyrometer` binary and the
wheel contain these crates from crates.io, all under licenses that allow
that: permissive ones (MIT, Apache-2.0, BSD, ISC, Zlib, Unicode-3.0,
Unlicense, 0BSD), and one weak, file-level copyleft:

- **inferno** (flame graphs) is **CDDL-1.0**. The CDDL covers inferno's own
  files only, and allows them in a larger work under other terms
  (CDDL §3.6), so pyrometer stays MIT OR Apache-2.0. Whoever distributes
  the binary must tell recipients that inferno's source code is available
  and keep its license notice: this file does both. pyrometer uses inferno
  unmodified; its complete source is the published `inferno` crate of the
  version in the table below (Rust's package registry), which includes its
  LICENSE file. Flame-graph SVGs that pyrometer writes embed inferno's
  script and so carry the same terms. pyrometer does not modify inferno.
- Apache-2.0-only crates (prost) ask that their NOTICE files be passed on;
  none of them ships one.

Checked by `crates/cli/tests/licenses.rs`; regenerate the table below with
`python3 scripts/third-party.py` after changing dependencies.

| license | crates |
|---|---|
"""


def main():
    meta = json.loads(subprocess.check_output(
        ["cargo", "metadata", "--format-version", "1", "--locked",
         "--filter-platform", "x86_64-unknown-linux-gnu"], cwd=ROOT))
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    root = next(p["id"] for p in meta["packages"]
                if p["name"] == "pyrometer" and p["source"] is None)
    seen, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        for dep in nodes[pid]["deps"]:
            if any(k["kind"] in (None, "build") for k in dep["dep_kinds"]):
                todo.append(dep["pkg"])
    by_license = collections.defaultdict(list)
    for pid in seen:
        p = packages[pid]
        if p["source"] is None:
            continue
        by_license[p.get("license") or "(none)"].append(f'{p["name"]} {p["version"]}')
    rows = sorted(by_license.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    with open(os.path.join(ROOT, "THIRD-PARTY.md"), "w") as out:
        out.write(HEADER)
        for lic, crates in rows:
            out.write(f"| {lic} | {', '.join(sorted(crates))} |\n")
    print(f"THIRD-PARTY.md: {len(seen) - 1} crates, {len(rows)} license expressions",
          file=sys.stderr)


if __name__ == "__main__":
    main()
