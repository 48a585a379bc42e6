#!/usr/bin/env bash
# CI's GPU checks without a GPU (called by .ci/run; runnable alone):
# 1. wgpu on lavapipe: runtime/tests/gpu.rs compares every construct's forward pass, gradients
#    and running statistics on wgpu with flex, and trains a tiny fixture.
# 2. The CUDA build: scripts/setup-cuda-build.sh provides LLVM 23 for cubecl-cuda, then
#    `cargo check --features cuda` (a full build links a static LLVM: see README, Devices).
set -euo pipefail
cd "$(dirname "$0")/.."

lavapipe() { ls /usr/share/vulkan/icd.d/lvp_icd.*.json >/dev/null 2>&1; }
if ! lavapipe; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mesa-vulkan-drivers >/dev/null
fi
lavapipe || { echo "error: Mesa's lavapipe driver is not installed" >&2; exit 1; }
# The Vulkan loader prints an error line on every call without it.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

start=$(date +%s)
# The workspace's feature set plus wgpu (not `-p resnetc-runtime`, whose narrower features would
# rebuild the compiler and more besides Burn's wgpu stack).
cargo test --locked --workspace --features resnetc-runtime/wgpu --test gpu -- --nocapture
echo "wgpu tests (build and run): $(( $(date +%s) - start )) s"

start=$(date +%s)
scripts/setup-cuda-build.sh
cargo check --locked -p resnetc --features cuda
echo "cuda check: $(( $(date +%s) - start )) s"
