#!/usr/bin/env bash
# Install what pyrometer's build, tests and demo need on a fresh Debian
# machine, idempotently. Slow downloads are cached under ~/.cache/pyrometer.
set -euo pipefail

CACHE="${PYROMETER_CACHE:-$HOME/.cache/pyrometer}"
mkdir -p "$CACHE"

need_apt=()
for pkg in gcc python3.11-dev python3.11-venv util-linux strace procps golang-go chromium tmux; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ "${#need_apt[@]}" -gt 0 ]; then
    echo "setup: installing Debian packages: ${need_apt[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo is not on PATH; install Rust (rustup) first" >&2
    exit 1
fi

# Packaging: groff checks the generated man pages (crates/cli/tests/help.rs);
# maturin, in its own cached venv, builds the wheel (scripts/wheel.sh).
if ! dpkg -s groff-base >/dev/null 2>&1; then
    echo "setup: installing Debian package groff-base"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq groff-base
fi
"$(dirname "$0")/maturin.sh" >/dev/null
# The system's CA bundle, which an https Pyroscope is checked against
# (crates/cli/tests/pyroscope.rs: a server it does not trust is refused).
if ! dpkg -s ca-certificates >/dev/null 2>&1; then
    echo "setup: installing Debian package ca-certificates"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ca-certificates
fi
# npm packages of the browser tests (crates/cli/tests/speedscope_app.rs):
# the speedscope app with its file-format schema, and ajv to validate it.
# (node may come from elsewhere with its own npm: look for the commands.)
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "setup: installing Debian packages: nodejs npm"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm
fi
NPM_DIR="$CACHE/npm"
if [ ! -f "$NPM_DIR/node_modules/speedscope/dist/release/index.html" ] ||
    [ ! -f "$NPM_DIR/node_modules/ajv/package.json" ]; then
    echo "setup: installing npm packages speedscope, ajv into $NPM_DIR"
    mkdir -p "$NPM_DIR"
    npm install --prefix "$NPM_DIR" --no-audit --no-fund --loglevel=error speedscope@1.25.0 ajv@8
fi

# libFuzzer in CI (scripts/fuzz-ci.sh, run by scripts/test.sh): a minimal
# nightly toolchain and cargo-fuzz, whose binary is cached.
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "setup: installing the nightly Rust toolchain (minimal profile) for libFuzzer"
    rustup toolchain install nightly --profile minimal
fi
if [ ! -x "$CACHE/cargo-fuzz/bin/cargo-fuzz" ]; then
    echo "setup: installing cargo-fuzz into $CACHE/cargo-fuzz"
    cargo install --locked --quiet cargo-fuzz --root "$CACHE/cargo-fuzz"
fi
