//! Installing pyrometer the way Python people install tools.
//!
//! * the wheel: `scripts/wheel.sh` builds it (maturin, release build reused
//!   from CARGO_TARGET_DIR), pip installs it into a fresh venv of Debian's
//!   python3.11 with every directory holding `cargo`/`rustc` removed from
//!   PATH, and then `pyrometer record` (found on PATH) attaches to a live
//!   target and `python -m pyrometer record -- python split.py` launches
//!   one; both profiles must hold the target's functions. The man pages,
//!   docs and licenses are installed too, and the binary needs no glibc
//!   newer than its manylinux2014 tag allows (2.17).
//! * `cargo install --path crates/cli` into a temporary root gives a
//!   working binary.

// Not every helper of the shared module is used here.
#[allow(unused_imports)]
mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use pyrometer_testsupport::{run_with_timeout, try_spawn_python, DEBIAN_PYTHON, READY_TIMEOUT};

/// A release build from nothing on a loaded 2-core machine, then maturin.
const BUILD_TIMEOUT: Duration = Duration::from_secs(40 * 60);
/// pip, venv creation, one recording.
const STEP_TIMEOUT: Duration = Duration::from_secs(180);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The target directory scripts/wheel.sh and `cargo install` build in: the
/// caller's CARGO_TARGET_DIR, else the repository's target/ (as wheel.sh).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

fn run(what: &str, cmd: &mut Command, timeout: Duration) -> Output {
    let out = run_with_timeout(cmd, timeout).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout_of(&out),
        stderr_of(&out)
    );
    out
}

fn has_executable(dir: &Path, name: &str) -> bool {
    dir.join(name).is_file()
}

/// The caller's PATH without any directory that provides a Rust toolchain,
/// so that nothing installed can lean on one.
fn path_without_rust() -> Vec<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .filter(|d| {
            !has_executable(d, "cargo")
                && !has_executable(d, "rustc")
                && !d.to_string_lossy().contains(".cargo")
                && !d.to_string_lossy().contains(".rustup")
        })
        .collect()
}

/// A command with an empty environment but for HOME, a PATH of `dirs`, and
/// pip told not to reach the network.
fn clean(program: impl AsRef<std::ffi::OsStr>, dirs: &[PathBuf]) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", std::env::join_paths(dirs).expect("PATH"))
        .env("PIP_NO_INDEX", "1")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    if let Some(home) = std::env::var_os("HOME") {
        cmd.env("HOME", home);
    }
    cmd
}

/// The newest `GLIBC_x.y[.z]` symbol version an executable refers to.
fn newest_glibc(binary: &Path) -> (u32, u32, u32) {
    let out = run(
        "objdump -T (binutils, installed with gcc by scripts/setup.sh)",
        Command::new("objdump").arg("-T").arg(binary),
        STEP_TIMEOUT,
    );
    let text = stdout_of(&out);
    let versions: Vec<(u32, u32, u32)> = text
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
            Some((
                parts.next()??,
                parts.next()??,
                parts.next().flatten().unwrap_or(0),
            ))
        })
        .collect();
    assert!(
        !versions.is_empty(),
        "objdump -T {} shows no GLIBC_ symbol versions",
        binary.display()
    );
    versions.into_iter().max().unwrap_or_default()
}

/// The leaf-function names of a folded-stacks file, and its total count.
fn folded_functions(path: &Path) -> (Vec<String>, u64) {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read the profile {}: {e}", path.display()));
    let folded = parse_folded(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let total = folded.iter().map(|(_, n)| n).sum();
    let names = folded
        .iter()
        .flat_map(|(stack, _)| stack.iter().map(|f| folded_name(f).to_string()))
        .collect();
    (names, total)
}

#[test]
fn wheel_installs_into_a_fresh_venv_and_profiles() {
    let scratch = Scratch::new("wheel");
    let root = repo_root();

    // Build.
    let out = run(
        "scripts/wheel.sh",
        Command::new("bash")
            .arg(root.join("scripts/wheel.sh"))
            .env("CARGO_TARGET_DIR", target_dir()),
        BUILD_TIMEOUT,
    );
    let wheel = PathBuf::from(stdout_of(&out).lines().last().unwrap_or_default().trim());
    let name = wheel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let want_name = format!(
        "pyrometer-{}-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        wheel.is_file() && name == want_name,
        "scripts/wheel.sh printed {wheel:?}: expected an existing {want_name}\nstderr:\n{}",
        stderr_of(&out)
    );

    // Install with no Rust anywhere on PATH.
    let bare_path = path_without_rust();
    assert!(
        !bare_path.iter().any(|d| has_executable(d, "cargo")),
        "cargo is still on the stripped PATH {bare_path:?}"
    );
    let venv = scratch.file("venv");
    assert!(
        Path::new(DEBIAN_PYTHON).is_file(),
        "{DEBIAN_PYTHON} is missing: run scripts/setup.sh"
    );
    run(
        "python3.11 -m venv",
        clean(DEBIAN_PYTHON, &bare_path)
            .arg("-m")
            .arg("venv")
            .arg(&venv),
        STEP_TIMEOUT,
    );
    let bin = venv.join("bin");
    let mut venv_path = vec![bin.clone()];
    venv_path.extend(bare_path.iter().cloned());
    run(
        "pip install WHEEL",
        clean(bin.join("pip"), &venv_path)
            .args(["install", "--quiet"])
            .arg(&wheel),
        STEP_TIMEOUT,
    );
    for installed in [
        bin.join("pyrometer"),
        venv.join("share/man/man1/pyrometer.1"),
        venv.join("share/man/man1/pyrometer-record.1"),
        venv.join("share/doc/pyrometer/SECURITY.md"),
        venv.join(format!(
            "lib/python3.11/site-packages/pyrometer-{}.dist-info/licenses/THIRD-PARTY.md",
            env!("CARGO_PKG_VERSION")
        )),
    ] {
        assert!(
            installed.is_file(),
            "the wheel did not install {}",
            installed.display()
        );
    }

    // The installed binary asks for nothing newer than glibc 2.17, as its
    // manylinux2014 tag promises.
    let newest = newest_glibc(&bin.join("pyrometer"));
    assert!(
        newest <= (2, 17, 0),
        "the installed binary needs glibc {newest:?}, newer than manylinux2014's 2.17"
    );

    // `pyrometer` is found on PATH and is the venv's.
    let out = run(
        "command -v pyrometer; pyrometer --version",
        clean("sh", &venv_path)
            .arg("-c")
            .arg("command -v pyrometer && pyrometer --version"),
        STEP_TIMEOUT,
    );
    let text = stdout_of(&out);
    let mut lines = text.lines();
    assert_eq!(
        lines.next().map(PathBuf::from),
        Some(bin.join("pyrometer")),
        "PATH lookup: {text}"
    );
    let version = lines.next().unwrap_or_default();
    let want = format!("pyrometer {} (CPython 3.8", env!("CARGO_PKG_VERSION"));
    assert!(
        version.starts_with(&want),
        "--version printed {version:?}, expected {want}…"
    );

    // Attach to a live target through `pyrometer` on PATH.
    let python = bin.join("python");
    let interp = pyrometer_testsupport::Interp {
        path: python.clone(),
        version: (3, 11, 0),
        label: "wheel-venv".into(),
    };
    let (live, _ready) = try_spawn_python(&interp, &target("mixed.py"), &[], READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let attached = scratch.file("attached.txt");
    let out = run(
        "pyrometer record --pid PID (from PATH)",
        clean("sh", &venv_path)
            .arg("-c")
            .arg("exec pyrometer \"$@\"")
            .arg("sh")
            .args(["record", "--quiet", "-d", "2", "-f", "raw", "-o"])
            .arg(&attached)
            .arg("--pid")
            .arg(live.pid().to_string()),
        STEP_TIMEOUT,
    );
    drop(live);
    let (names, total) = folded_functions(&attached);
    assert!(
        names.iter().any(|n| n == "busy_loop"),
        "the profile of mixed.py ({total} samples) has no busy_loop frame: {names:?}\nstderr:\n{}",
        stderr_of(&out)
    );

    // `python -m pyrometer` launching the target itself.
    let launched = scratch.file("launched.txt");
    let mut args: Vec<OsString> = ["-m", "pyrometer", "record", "--quiet", "-f", "raw", "-o"]
        .iter()
        .map(OsString::from)
        .collect();
    args.push(launched.clone().into());
    args.extend(["--", "python", "-u"].iter().map(OsString::from));
    args.push(target("split.py").into());
    args.push("1".into());
    let out = run(
        "python -m pyrometer record -- python split.py 1",
        clean(&python, &venv_path).args(&args),
        STEP_TIMEOUT,
    );
    let (names, total) = folded_functions(&launched);
    assert!(
        names.iter().any(|n| n == "heavy") && names.iter().any(|n| n == "light"),
        "the profile of split.py ({total} samples) lacks heavy or light: {names:?}\nstderr:\n{}",
        stderr_of(&out)
    );
}

#[test]
fn cargo_install_gives_a_working_binary() {
    let scratch = Scratch::new("cargo-install");
    let install_root = scratch.file("root");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(
        "cargo install --path crates/cli",
        Command::new(cargo)
            .args(["install", "--quiet", "--locked", "--path"])
            .arg(repo_root().join("crates/cli"))
            .arg("--root")
            .arg(&install_root)
            .env("CARGO_TARGET_DIR", target_dir()),
        BUILD_TIMEOUT,
    );
    let binary = install_root.join("bin/pyrometer");
    let out = run(
        "installed pyrometer --version",
        Command::new(&binary).arg("--version"),
        STEP_TIMEOUT,
    );
    let want = format!("pyrometer {} (CPython 3.8", env!("CARGO_PKG_VERSION"));
    assert!(
        stdout_of(&out).starts_with(&want),
        "{} --version printed {:?}, expected {want}…",
        binary.display(),
        stdout_of(&out)
    );
}
