//! The speedscope output read by speedscope itself (the npm package
//! `speedscope`, which scripts/setup.sh installs under
//! ~/.cache/pyrometer/npm):
//!
//! * the recorded document validates against the JSON schema that ships in
//!   the package (`dist/release/file-format-schema.json`), with ajv; a
//!   broken document does not (the check can fail);
//! * the speedscope app, served on 127.0.0.1 by the test, loads it in
//!   headless Chromium (tests/browser): the profile's name is shown, the
//!   sandwich view lists the target's functions, no error is logged, and
//!   nothing outside 127.0.0.1 is fetched. A screenshot is left in
//!   target/test-artifacts/speedscope.png.

mod browser;
#[allow(unused)]
mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use browser::{artifacts_dir, Browser, StaticServer, BROWSER_TIMEOUT};
use common::*;
use serde_json::Value;

fn npm_modules() -> PathBuf {
    let cache = std::env::var_os("PYROMETER_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/pyrometer")
        });
    let dir = cache.join("npm/node_modules");
    for need in ["speedscope/dist/release/index.html", "ajv/package.json"] {
        assert!(
            dir.join(need).is_file(),
            "{} is missing: run scripts/setup.sh (it installs the npm packages speedscope and ajv)",
            dir.join(need).display()
        );
    }
    dir
}

const VALIDATE_JS: &str = r#"
const Ajv = require('ajv');
const fs = require('fs');
const [schemaPath, docPath] = process.argv.slice(2);
const ajv = new Ajv({ allErrors: true, strict: false });
const validate = ajv.compile(JSON.parse(fs.readFileSync(schemaPath, 'utf8')));
const ok = validate(JSON.parse(fs.readFileSync(docPath, 'utf8')));
console.log(JSON.stringify({ ok, errors: validate.errors || [] }));
"#;

/// Validate a document with ajv against speedscope's schema.
fn validate(modules: &std::path::Path, scratch: &Scratch, doc: &std::path::Path) -> Value {
    let script = scratch.file("validate.js");
    std::fs::write(&script, VALIDATE_JS).unwrap();
    let schema = modules.join("speedscope/dist/release/file-format-schema.json");
    let out = pyrometer_testsupport::run_with_timeout(
        Command::new("node")
            .arg(&script)
            .arg(&schema)
            .arg(doc)
            .env("NODE_PATH", modules),
        RUN_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("node: {e} (scripts/setup.sh installs nodejs)"));
    assert!(
        out.status.success(),
        "validator failed: {}",
        stderr_of(&out)
    );
    serde_json::from_str(stdout_of(&out).trim()).expect("validator prints JSON")
}

#[test]
fn speedscope_schema_and_app_accept_the_output() {
    let modules = npm_modules();
    let mut interps = require_all();
    interps.sort_by_key(|i| i.minor());
    let interp = interps.pop().unwrap();
    let scratch = Scratch::new("speedscope-app");
    let doc_path = scratch.file("profile.speedscope.json");
    {
        let _cpu = cpu_lock();
        let (guard, _) =
            start_target(&interp, "pprof_split.py", &["30"]).unwrap_or_else(|e| panic!("{e}"));
        let out = pyrometer(&[
            "record",
            "--pid",
            &guard.pid().to_string(),
            "-f",
            "speedscope",
            "-d",
            "2",
            "-r",
            "200",
            "--threads",
            "-o",
            doc_path.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "record failed: {}", stderr_of(&out));
    }
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&doc_path).unwrap()).unwrap();
    let profile_name = doc["profiles"][0]["name"].as_str().unwrap().to_string();
    assert!(profile_name.starts_with("cruncher"), "{profile_name}");

    // The schema accepts it; a document without `shared` it rejects.
    let v = validate(&modules, &scratch, &doc_path);
    assert_eq!(
        v["ok"], true,
        "speedscope's schema rejects the output: {v:#}"
    );
    let mut broken = doc.clone();
    broken.as_object_mut().unwrap().remove("shared");
    broken["profiles"][0]["type"] = "nonsense".into();
    let broken_path = scratch.file("broken.json");
    std::fs::write(&broken_path, broken.to_string()).unwrap();
    let v = validate(&modules, &scratch, &broken_path);
    assert_eq!(v["ok"], false, "the schema check cannot fail: {v:#}");

    // The app loads it.
    let server = StaticServer::start(vec![
        modules.join("speedscope/dist/release"),
        scratch.0.clone(),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let base = format!("http://127.0.0.1:{}", server.port);
    let mut b = Browser::launch(&scratch.0).unwrap_or_else(|e| panic!("{e}"));
    let profile_url = format!("{base}/profile.speedscope.json");
    b.navigate(&format!(
        "{base}/index.html#profileURL={}",
        profile_url.replace(':', "%3A").replace('/', "%2F")
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let needle = serde_json::to_string(&profile_name).unwrap();
    b.wait_for(
        &format!("document.body && document.body.innerText.includes({needle})"),
        BROWSER_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("speedscope does not show the profile name: {e}"));
    // The sandwich view is a table of functions, in the DOM.
    let clicked = b
        .eval(
            "(() => { const t = Array.from(document.querySelectorAll('div,span,button')).find(e => e.textContent.trim().endsWith('Sandwich') && e.textContent.trim().length < 16); if (!t) return false; t.setAttribute('data-pyrometer-tab', 'sandwich'); return true; })()",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let body = b.eval("document.body.innerText").unwrap();
    assert_eq!(clicked, true, "no Sandwich tab in speedscope: {body}");
    b.click("[data-pyrometer-tab=sandwich]")
        .unwrap_or_else(|e| panic!("{e}"));
    for f in ["heavy", "light", "crunch"] {
        b.wait_for(
            &format!("document.body.innerText.includes('{f}')"),
            Duration::from_secs(20),
        )
        .unwrap_or_else(|e| {
            let body = b.eval("document.body.innerText").unwrap_or_default();
            panic!("speedscope's sandwich view lacks {f}: {e}; the page: {body}")
        });
    }
    let text = b.eval("document.body.innerText").unwrap();
    let text = text.as_str().unwrap_or("");
    for bad in [
        "Something went wrong",
        "Unrecognized format",
        "failed to import",
    ] {
        assert!(!text.contains(bad), "speedscope shows an error: {text}");
    }
    b.pump(Duration::from_millis(300)).unwrap();
    let errors = b.errors();
    assert!(errors.is_empty(), "speedscope logged errors: {errors:#?}");
    let outside: Vec<String> = b
        .requested_urls()
        .into_iter()
        .filter(|u| !u.starts_with(&base) && !u.starts_with("data:") && !u.starts_with("blob:"))
        .collect();
    assert!(outside.is_empty(), "speedscope fetched: {outside:?}");
    let shot = artifacts_dir().join("speedscope.png");
    b.screenshot(&shot).unwrap_or_else(|e| panic!("{e}"));
    println!("screenshot: {}", shot.display());
}
