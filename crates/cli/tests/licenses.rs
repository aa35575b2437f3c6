//! Every crate compiled into the `pyrometer` binary may be shipped in a
//! MIT OR Apache-2.0 project, and THIRD-PARTY.md (scripts/third-party.py)
//! covers each of their licenses.
//!
//! The graph is `cargo metadata` resolved for x86_64 Linux: normal and build
//! dependencies of the `pyrometer` package, transitively (dev-dependencies
//! are not shipped). A license expression (SPDX, with the legacy `/` for
//! OR) passes when it can be satisfied with [`PERMISSIVE`] licenses, or the
//! crate is one of the [`REVIEWED`] exceptions.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pyrometer_testsupport::serde_json::{self, Value};

/// Licenses compatible with distributing pyrometer under MIT OR Apache-2.0.
const PERMISSIVE: &[&str] = &[
    "MIT",
    "Apache-2.0",
    "Apache-2.0 WITH LLVM-exception",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "ISC",
    "Zlib",
    "Unicode-3.0",
    "Unicode-DFS-2016",
    "Unlicense",
    "0BSD",
    "BSL-1.0",
    "CC0-1.0",
];

/// Crates under other licenses, reviewed one by one (see THIRD-PARTY.md):
/// (crate, its license).
const REVIEWED: &[(&str, &str)] = &[
    // File-level copyleft; allowed in a larger work under other terms.
    ("inferno", "CDDL-1.0"),
];

/// Whether `expr` can be satisfied with licenses `ok` accepts.
fn satisfiable(expr: &str, ok: &dyn Fn(&str) -> bool) -> Result<bool, String> {
    let spaced = expr
        .replace('(', " ( ")
        .replace(')', " ) ")
        .replace('/', " OR ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    let mut pos = 0;
    let value = or_expr(&tokens, &mut pos, ok)?;
    if pos != tokens.len() {
        return Err(format!("trailing tokens in {expr:?}"));
    }
    Ok(value)
}

fn or_expr(t: &[&str], pos: &mut usize, ok: &dyn Fn(&str) -> bool) -> Result<bool, String> {
    let mut value = and_expr(t, pos, ok)?;
    while t.get(*pos) == Some(&"OR") {
        *pos += 1;
        value |= and_expr(t, pos, ok)?;
    }
    Ok(value)
}

fn and_expr(t: &[&str], pos: &mut usize, ok: &dyn Fn(&str) -> bool) -> Result<bool, String> {
    let mut value = atom(t, pos, ok)?;
    while t.get(*pos) == Some(&"AND") {
        *pos += 1;
        value &= atom(t, pos, ok)?;
    }
    Ok(value)
}

fn atom(t: &[&str], pos: &mut usize, ok: &dyn Fn(&str) -> bool) -> Result<bool, String> {
    match t.get(*pos) {
        Some(&"(") => {
            *pos += 1;
            let value = or_expr(t, pos, ok)?;
            if t.get(*pos) != Some(&")") {
                return Err("unbalanced parenthesis".into());
            }
            *pos += 1;
            Ok(value)
        }
        Some(&id) if !matches!(id, ")" | "OR" | "AND" | "WITH") => {
            *pos += 1;
            if t.get(*pos) == Some(&"WITH") {
                let exception = t.get(*pos + 1).ok_or("WITH without an exception")?;
                *pos += 2;
                return Ok(ok(&format!("{id} WITH {exception}")));
            }
            Ok(ok(id))
        }
        other => Err(format!("unexpected {other:?}")),
    }
}

fn permissive(id: &str) -> bool {
    PERMISSIVE.contains(&id)
}

#[test]
fn the_expression_checker_follows_spdx() {
    let cases = [
        ("MIT OR Apache-2.0", true),
        ("MIT/Apache-2.0", true),
        ("(MIT OR Apache-2.0) AND Unicode-3.0", true),
        ("Apache-2.0 WITH LLVM-exception OR Apache-2.0 OR MIT", true),
        ("GPL-3.0-only", false),
        ("MIT AND GPL-3.0-only", false),
        ("GPL-3.0-only OR MIT", true),
        ("Apache-2.0 WITH Classpath-exception-2.0", false),
        ("CDDL-1.0", false),
    ];
    for (expr, want) in cases {
        assert_eq!(satisfiable(expr, &permissive), Ok(want), "{expr}");
    }
    assert!(satisfiable("MIT OR", &permissive).is_err());
    assert!(satisfiable("(MIT", &permissive).is_err());
}

/// (crate name, version, license) of every registry crate in the binary.
fn shipped_crates() -> Vec<(String, String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = pyrometer_testsupport::run_with_timeout(
        Command::new(cargo).current_dir(&root).args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--filter-platform",
            "x86_64-unknown-linux-gnu",
        ]),
        Duration::from_secs(300),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let packages: BTreeMap<&str, &Value> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p)))
        .collect();
    let nodes: BTreeMap<&str, &Value> = meta["resolve"]["nodes"]
        .as_array()
        .expect("resolve.nodes")
        .iter()
        .filter_map(|n| Some((n["id"].as_str()?, n)))
        .collect();
    let root_id = packages
        .iter()
        .find(|(_, p)| p["name"] == "pyrometer" && p["source"].is_null())
        .map(|(id, _)| *id)
        .expect("the pyrometer package");
    let mut seen = BTreeSet::new();
    let mut todo = vec![root_id];
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        for dep in nodes[id]["deps"].as_array().into_iter().flatten() {
            let shipped = dep["dep_kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|k| k["kind"].is_null() || k["kind"] == "build");
            if shipped {
                if let Some(pkg) = dep["pkg"].as_str() {
                    todo.push(pkg);
                }
            }
        }
    }
    seen.iter()
        .map(|id| packages[id])
        .filter(|p| !p["source"].is_null())
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().to_string(),
                p["version"].as_str().unwrap_or_default().to_string(),
                p["license"].as_str().unwrap_or("(none)").to_string(),
            )
        })
        .collect()
}

#[test]
fn every_shipped_crate_has_a_compatible_license_listed_in_third_party() {
    let crates = shipped_crates();
    assert!(
        crates.len() > 20 && crates.iter().any(|(n, _, _)| n == "clap"),
        "the dependency walk found too little: {crates:?}"
    );
    let third_party =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../THIRD-PARTY.md"))
            .expect("THIRD-PARTY.md");
    let mut problems = Vec::new();
    for (name, version, license) in &crates {
        let reviewed = REVIEWED.iter().any(|(n, l)| n == name && l == license);
        match satisfiable(license, &permissive) {
            Ok(true) => {}
            Ok(false) if reviewed => {}
            Ok(false) => problems.push(format!(
                "{name} {version}: {license} is not a permissive license: review it \
                 (REVIEWED in this test, THIRD-PARTY.md) or drop the crate"
            )),
            Err(e) => problems.push(format!("{name} {version}: license {license:?}: {e}")),
        }
        let row = format!("| {license} |");
        if !third_party.contains(&row) || !third_party.contains(&format!("{name} {version}")) {
            problems.push(format!(
                "THIRD-PARTY.md does not list {name} {version} ({license}): run \
                 python3 scripts/third-party.py"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_workspace_is_dual_licensed_with_both_texts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    assert!(
        manifest.contains("license = \"MIT OR Apache-2.0\""),
        "the workspace license is not MIT OR Apache-2.0"
    );
    for (file, marker) in [
        (
            "LICENSE-MIT",
            "Permission is hereby granted, free of charge",
        ),
        (
            "LICENSE-APACHE",
            "Apache License\n                        Version 2.0",
        ),
        ("LICENSE", "MIT OR Apache-2.0"),
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap_or_default();
        assert!(
            text.contains(marker),
            "{file} is missing or lacks {marker:?}"
        );
    }
}
