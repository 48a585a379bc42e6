"""`resnetc export` against onnxruntime: every case of the oracle, PyTorch's weights in, ONNX out.

Run by hand (onnxruntime is not in CI), after a release build of the CLI:

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch safetensors numpy onnxruntime onnx
    cargo build --release
    /tmp/torchenv/bin/python tests/oracle/onnx_check.py [--resnetc target/release/resnetc]

For each case of `cases.tsv` it takes the weights make.py saved (`param.*` of
`<name>.safetensors`, forward order in the metadata), imports them with
`resnetc import --by-order`, exports them with `resnetc export` (dynamic batch; a fixed batch
where the network cannot keep it dynamic), checks the model with `onnx.checker`, runs the
fixture's 8 images through onnxruntime (CPU) and compares the logits with PyTorch's eval-mode
logits from the fixture (which `cargo test --test oracle` compares with resnetc's own, to 1e-5):
largest difference over the largest magnitude, limit 1e-4. With a dynamic batch it also runs
the first 3 images alone (another batch size) against the same rows.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from safetensors import safe_open
from safetensors.numpy import save_file

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.join(here, "..", "..")
LIMIT = 1e-4


def cases():
    with open(os.path.join(here, "cases.tsv")) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                name, spec, sets = line.rstrip("\n").split("\t")
                yield name, spec, sets.split(",")


def error(got, want):
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-12))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--resnetc", default=os.path.join(root, "target", "release", "resnetc"))
    args = ap.parse_args()
    failed = []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec, sets in cases():
            fixture = os.path.join(here, f"{name}.safetensors")
            with safe_open(fixture, "np") as f:
                meta = f.metadata()
                order = meta["order"].split(",")
                weights = {k: f.get_tensor(f"param.{k}") for k in order}
                x = f.get_tensor("input")
                want = f.get_tensor("eval_logits")
            source = os.path.join(tmp, f"{name}-weights.safetensors")
            save_file(weights, source, metadata={"order": ",".join(order)})
            setargs = [a for s in sets for a in ("--set", s)]
            bpk = os.path.join(tmp, f"{name}.bpk")
            out = os.path.join(tmp, f"{name}.onnx")
            run = lambda *a: subprocess.run([args.resnetc, *a], cwd=root, capture_output=True, text=True)
            r = run("import", spec, source, "-o", bpk, "--by-order", *setargs)
            if r.returncode != 0:
                sys.exit(f"{name}: import failed:\n{r.stderr}")
            batch = "dynamic"
            r = run("export", spec, "--weights", bpk, "-o", out, *setargs)
            if r.returncode != 0 and "--batch" in r.stderr:
                batch = str(len(x))
                r = run("export", spec, "--weights", bpk, "-o", out, "--batch", batch, *setargs)
            if r.returncode != 0:
                sys.exit(f"{name}: export failed:\n{r.stderr}")
            model = onnx.load(out)
            onnx.checker.check_model(model, full_check=True)
            session = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
            input_name = session.get_inputs()[0].name
            got = session.run(None, {input_name: x})[0]
            e = error(got, want)
            part = None
            if batch == "dynamic":
                part = error(session.run(None, {input_name: x[:3]})[0], want[:3])
                e = max(e, part)
            ops = sorted({n.op_type for n in model.graph.node})
            rows.append({"case": name, "batch": batch, "error": e, "nodes": len(model.graph.node), "ops": ops})
            status = "ok" if e <= LIMIT else "FAIL"
            if e > LIMIT:
                failed.append(name)
            print(f"{name:22} batch {batch:8} {len(model.graph.node):4} nodes  error {e:.2e}  {status}  {' '.join(ops)}")
    print(json.dumps({"limit": LIMIT, "cases": rows}), file=sys.stderr)
    if failed:
        sys.exit(f"onnxruntime differs from PyTorch beyond {LIMIT:e}: {', '.join(failed)}")


if __name__ == "__main__":
    main()
