#!/usr/bin/env bash
# Makes `cargo build --features cuda` work without tracel-llvm-bundler's download.
#
# cubecl-cuda 0.11 always links cubecl-llvm (LLVM 23, static, with the NVPTX target), which
# tracel-llvm-bundler downloads at build time unless
# ~/.local/share/tracel/tracel-llvm-23.1.0-4/.tracel-llvm-installed exists. PyPI's
# mlc-llvm-static ships a static LLVM 23.1.1 with an llvm-config, and its "extra targets"
# package adds NVPTX: this script installs both into a venv, links their LLVM where the bundler
# looks and writes the marker, then checks the version and the NVPTX target.
#
# Usage: scripts/setup-cuda-build.sh [VENV]   (default: ~/.cache/resnetc/llvm-venv)
# Needs python3 (>= 3.9) with venv/pip and PyPI; about 1.5 GB of disk. Idempotent.
set -euo pipefail

venv="${1:-$HOME/.cache/resnetc/llvm-venv}"
version=23.1.1.post0
target="${XDG_DATA_HOME:-$HOME/.local/share}/tracel/tracel-llvm-23.1.0-4"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "mlc-llvm-static==$version" "mlc-llvm-static-extra-targets==$version"

llvm="$("$venv/bin/python" - <<'PY'
import importlib.util, pathlib
spec = importlib.util.find_spec("mlc_llvm_static")
print(pathlib.Path(spec.origin).parent / "static" if spec and spec.origin
      else pathlib.Path(list(spec.submodule_search_locations)[0]) / "static")
PY
)"
config="$llvm/bin/llvm-config"
if [ ! -x "$config" ]; then
    echo "error: $config not found: mlc-llvm-static's layout changed?" >&2
    exit 1
fi

got="$("$config" --version)"
case "$got" in
    23.*) ;;
    *) echo "error: $config is LLVM $got; cubecl-llvm 0.11 needs LLVM 23" >&2; exit 1 ;;
esac
if ! "$config" --targets-built | tr ' ' '\n' | grep -qx NVPTX; then
    echo "error: LLVM at $llvm was built without the NVPTX target (targets: $("$config" --targets-built))" >&2
    exit 1
fi

mkdir -p "$(dirname "$target")"
if [ -L "$target" ] || [ ! -e "$target" ]; then
    ln -sfn "$llvm" "$target"
elif [ "$(cd "$target" && pwd -P)" != "$(cd "$llvm" && pwd -P)" ]; then
    echo "error: $target exists and is not a link to $llvm: move it away first" >&2
    exit 1
fi
touch "$target/.tracel-llvm-installed"

echo "LLVM $got with NVPTX at $llvm"
echo "linked as $target (marker written): cargo build --release --features cuda"
