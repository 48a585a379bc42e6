#!/usr/bin/env bash
# Packs what scripts/gpu-check.sh needs on a GPU machine that has a CUDA driver and Python (with
# torch) but no Rust: one release `resnetc` built with both GPU backends (wgpu and cuda),
# stripped and xz-compressed, the CIFAR-10 archive, the specs, the PyTorch side of the
# benchmark and the check script itself. About 50 MB; a device call carries 64 MiB.
#
# Usage: scripts/gpu-bundle.sh [BUNDLE_DIR] [CIFAR_ARCHIVE]
#   BUNDLE_DIR     default: gpu-bundle (keep it out of git: .git/info/exclude or .gitignore)
#   CIFAR_ARCHIVE  default: ../shared/data/cifar10-jpg.tar.gz
# Then, on the GPU machine, from the bundle's folder: ./gpu-check.sh   (results in $OUT)
#
# The build needs LLVM 23 for cubecl-cuda (scripts/setup-cuda-build.sh is run when its marker
# is missing) and takes ~30 min on 2 cores from cold.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bundle="$(realpath -m "${1:-$root/gpu-bundle}")"
data="${2:-$root/../shared/data/cifar10-jpg.tar.gz}"
marker="${XDG_DATA_HOME:-$HOME/.local/share}/tracel/tracel-llvm-23.1.0-4/.tracel-llvm-installed"

[ -f "$data" ] || { echo "error: no CIFAR archive at $data (pass it as the second argument)" >&2; exit 1; }
[ -f "$marker" ] || "$root/scripts/setup-cuda-build.sh"
command -v xz >/dev/null || { echo "error: xz is needed (apt-get install xz-utils)" >&2; exit 1; }

cd "$root"
start=$(date +%s)
cargo build --release --locked --features wgpu,cuda --bin resnetc
echo "build: $(( $(date +%s) - start )) s"

rm -rf "$bundle"
mkdir -p "$bundle/benches/vs_pytorch" "$bundle/benches/reference"
strip -o "$bundle/resnetc" target/release/resnetc
xz -9 -T0 -f "$bundle/resnetc"
cp "$data" "$bundle/cifar10.tar.gz"
cp -r specs "$bundle/specs"
cp benches/vs_pytorch/bench.py "$bundle/benches/vs_pytorch/"
cp benches/reference/models.py "$bundle/benches/reference/"
cp scripts/gpu-check.sh scripts/gpu-table.py "$bundle/"
git rev-parse HEAD > "$bundle/COMMIT" 2>/dev/null || true
du -sh "$bundle"
size=$(du -sb "$bundle" | cut -f1)
if [ "$size" -gt $((64 * 1024 * 1024)) ]; then
    echo "warning: the bundle is $size bytes, over the 64 MiB a device call carries" >&2
fi
