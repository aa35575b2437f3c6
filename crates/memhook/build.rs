//! Builds the preloaded allocation hook (C) as a shared library in OUT_DIR;
//! src/lib.rs embeds it.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = PathBuf::from("src/memhook.c");
    println!("cargo:rerun-if-changed={}", source.display());
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let library = out.join("libpyrometer_memhook.so");
    let compiler = cc::Build::new().opt_level(2).get_compiler();
    let mut cmd: Command = compiler.to_command();
    cmd.args([
        "-shared",
        "-fPIC",
        "-O2",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-fno-strict-aliasing",
        "-pthread",
    ])
    .arg("-o")
    .arg(&library)
    .arg(&source)
    .args(["-ldl", "-lm"]);
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler for the memory hook: {e}"));
    assert!(
        status.success(),
        "building the memory hook failed: {status}"
    );
}
