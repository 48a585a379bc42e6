#!/usr/bin/env bash
# resnetc as a dependency of a crate outside this workspace (what a user does with the README):
#
#   .ci/outside.sh            (run by .ci/run after the workspace's tests)
#
# 1. `light`: depends on resnetc-macros, resnetc-kernels and burn only; `cargo tree` must show
#    no burn-train, no TUI and no resnetc-runtime (nothing is built for this one).
# 2. `user`: network! on a shipped spec and on an inline spec, a forward pass of each, and one
#    training step of the embedded network through resnetc-runtime's library API (the
#    recipe's SGD and loss); its output is checked.
# 3. `broken`: an inline spec with a shape error; its build must fail with the spec's
#    file:line:col and no panic.
#
# The crates are written to a temporary folder outside the workspace and depend on it by path,
# with the workspace's Cargo.lock (as a starting point: cargo adds the new crate and keeps every
# version it pins) and profile, and build into the workspace's own target folder: same versions,
# features and profile, so cargo reuses what `cargo test` built and compiles only the small
# crates (~1 minute here; a target folder of its own took 14 minutes on 2 cores).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}

# The workspace's Burn line and dev profiles (the end of its Cargo.toml), so the dependency graph
# and what is built are the workspace's.
burn_line=$(grep -m1 '^burn = ' "$root/Cargo.toml")
profile=$(sed -n '/^\[profile\.dev\]/,$p' "$root/Cargo.toml")

crate() { # name, extra dependency lines
    mkdir -p "$tmp/$1/src"
    cat >"$tmp/$1/Cargo.toml" <<EOF
[package]
name = "$1"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
$2
$profile
EOF
    cp "$root/Cargo.lock" "$tmp/$1/Cargo.lock"
}

fail() { echo "outside.sh: $*" >&2; exit 1; }

# 1. The light embedding: what `network!` alone needs.
crate light "burn = { version = \"=0.22.1\", default-features = false, features = [\"std\", \"flex\"] }
resnetc-macros = { path = \"$root/compiler/macros\" }
resnetc-kernels = { path = \"$root/kernels\" }"
echo 'fn main() {}' >"$tmp/light/src/main.rs"
tree=$(cd "$tmp/light" && cargo tree -e normal --prefix none)
for heavy in burn-train ratatui resnetc-runtime; do
    if grep -q "^$heavy " <<<"$tree"; then fail "the light embedding pulls in $heavy"; fi
done
echo "light embedding: $(sort -u <<<"$tree" | wc -l) crates, no burn-train, TUI or runtime"

# 2. A user crate: two embedded networks, a forward pass each, one training step.
crate user "$burn_line
resnetc-macros = { path = \"$root/compiler/macros\" }
resnetc-kernels = { path = \"$root/kernels\" }
resnetc-runtime = { path = \"$root/runtime\" }"
mkdir -p "$tmp/user/specs"
cp "$root/specs/resnet-20.net" "$tmp/user/specs/"
cat >"$tmp/user/src/main.rs" <<'EOF'
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Int, Tensor};

mod resnet {
    resnetc_macros::network!("specs/resnet-20.net", depth = 8);
}

mod tiny {
    resnetc_macros::network! {
        network tiny(classes = 10) {
            input 3x32x32
            conv3x3(8) bn relu
            stage 1 x basic(8)
            global_avg_pool linear(classes)
        }
    }
}

fn main() {
    let device = Device::flex();
    let x = Tensor::<4>::random([4, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let r = resnet::Resnet20::new(&device).forward(x.clone());
    let t = tiny::Tiny::new(&device).forward(x.clone());
    println!("forward: resnet {:?}, tiny {:?}", r.dims(), t.dims());

    // One step of the recipe's SGD on the embedded network, through the runtime's library API.
    let ad = device.clone().autodiff();
    let recipe = resnetc_runtime::recipe::Recipe::shipped("resnet-cifar").unwrap();
    let model = tiny::Tiny::new(&ad);
    let mut optimizer = resnetc_runtime::train::sgd(&recipe).init();
    let targets = Tensor::<1, Int>::from_ints([0, 1, 2, 3], &ad);
    let images = Tensor::<4>::from_data(x.into_data(), &ad);
    let loss = resnetc_runtime::train::item_losses(model.forward(images.clone()), targets.clone(), 0.0).mean();
    let before = loss.clone().into_scalar::<f32>();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let model = optimizer.step(0.1, model, grads);
    let after = resnetc_runtime::train::item_losses(model.forward(images), targets, 0.0).mean().into_scalar::<f32>();
    let eval = model.valid().forward(Tensor::<4>::zeros([1, 3, 32, 32], &device));
    println!("train step: loss {before:.4} -> {after:.4}, eval logits {:?}", eval.dims());
    assert!(after.is_finite() && after < before, "one SGD step lowers the loss on its own batch");
}
EOF
out=$(cd "$tmp/user" && cargo run --quiet 2>&1) || fail "the user crate failed:
$out"
echo "$out"
grep -q "forward: resnet \[4, 10\], tiny \[4, 10\]" <<<"$out" || fail "unexpected output"
grep -q "train step: loss" <<<"$out" || fail "no training step"

# 3. A broken spec (a concat of 16x16 and 32x32 maps): the build fails at the spec's line and
#    column, no panic.
crate broken "$burn_line
resnetc-macros = { path = \"$root/compiler/macros\" }
resnetc-kernels = { path = \"$root/kernels\" }"
mkdir -p "$tmp/broken/specs"
printf 'network broken(classes = 10) {\n    input 3x32x32\n    conv3x3(16)\n    { conv3x3(16, stride = 2) } concat { conv3x3(16) }\n    global_avg_pool linear(classes)\n}\n' >"$tmp/broken/specs/broken.net"
cat >"$tmp/broken/src/main.rs" <<'EOF'
mod broken {
    resnetc_macros::network!("specs/broken.net");
}
fn main() {}
EOF
if out=$(cd "$tmp/broken" && cargo build --quiet 2>&1); then fail "the broken spec built"; fi
grep -q "specs/broken.net:4:" <<<"$out" || fail "the error does not name specs/broken.net:4:
$out"
if grep -qi "panicked" <<<"$out"; then fail "the macro panicked:
$out"; fi
echo "broken spec: refused at $(grep -o 'specs/broken.net:[0-9]*:[0-9]*' <<<"$out" | head -1)"
echo "outside crates: ok"
