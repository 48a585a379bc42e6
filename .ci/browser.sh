#!/usr/bin/env bash
# `resnetc draw`'s HTML pages in headless Chromium (called by .ci/run; runnable alone):
# scripts/draw_browser.py counts the boxes, clicks a stage open, a block into the side panel.
# Usage: .ci/browser.sh [RESNETC]. Installs Debian's chromium and chromium-driver when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
fi
# The resnetc to drive: the argument (CI passes the one `cargo test --workspace` built), or else
# the compile-only CLI (no Burn), built in its own target folder: its features differ from the
# test build's, and sharing target/ would rebuild Burn.
if [ $# -ge 1 ]; then
    resnetc=$1
    [ -x "$resnetc" ] || { echo "error: $resnetc is not an executable" >&2; exit 1; }
else
    export CARGO_TARGET_DIR=target/draw-browser
    cargo build --locked --no-default-features --bin resnetc
    resnetc=target/draw-browser/debug/resnetc
fi
python3 scripts/draw_browser.py --resnetc "$resnetc"
