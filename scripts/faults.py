#!/usr/bin/env python3
"""Fault injection for `resnetc train`, run by hand (not in CI): time-bounded, needs root for
the tmpfs mounts of the disk-full and read-only cases (skipped without).

    cargo build --release && python3 scripts/faults.py [--trials 20] [--binary target/release/resnetc]

What it does, on a tiny generated CIFAR-10 binary set and a tiny network:

1. kill -9: a reference run (--workers 1, fixed seed); then TRIALS runs killed with SIGKILL at a
   random moment and continued with --resume (or started again when no epoch had finished).
   After each kill: metrics.csv is whole (every row has every column) and no checkpoint is
   half-written; after the resume: metrics.csv equals the reference's (timing columns aside)
   and last.bpk scores exactly as the reference's (resnetc eval: loss and
   accuracies, every digit).
2. Disk full while checkpointing: the run's folder on a small tmpfs, filled after epoch 2; the
   run must stop with an error naming the file and the cause, the newest complete checkpoint
   must load (`resnetc eval --weights`), and after space is freed --resume must end equal to
   the reference.
3. A read-only --out (a read-only tmpfs), an --out that is a file: clear errors, no panic.
4. A streamed dataset (images not of the input's size) deleted after the first epoch: an error
   naming an image, no panic, the first epoch's checkpoint intact.

Prints a Markdown table of the results and exits non-zero if any check failed.
"""

import argparse
import csv
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib

SPEC = """network tiny(classes = 10) {
    input 3x32x32
    conv3x3(8) bn relu
    stage 1 x basic(8)
    stage 1 x basic(16, stride = 2)
    global_avg_pool linear(classes)
}
"""

SPEC_STREAMED = """network tiny_streamed(classes = 2) {
    input 3x8x8
    conv3x3(4) bn relu
    global_avg_pool linear(classes)
}
"""

TIMING_COLUMNS = {"seconds", "images_per_sec"}
BINARY = SPEC_PATH = DATA_PATH = None


def cifar_fixture(root, per_file, seed=3):
    """CIFAR-10 binary files whose label is learnable from the image's mean colour."""
    rnd = random.Random(seed)
    os.makedirs(root, exist_ok=True)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        out = bytearray()
        for _ in range(per_file):
            label = rnd.randrange(10)
            base = 20 + 22 * label
            out.append(label)
            out.extend(min(255, max(0, base + rnd.randrange(-20, 21))) for _ in range(3072))
        with open(os.path.join(root, name), "wb") as f:
            f.write(out)


def png(w, h, value):
    raw = b"".join(b"\0" + bytes([value, 255 - value, value // 2] * w) for _ in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def folder_fixture(root, per_class=40):
    """Image folders of 12×12 PNGs for an 8×8 network: streamed, decoded by the workers."""
    for split in ["train", "val"]:
        for c, name in enumerate(["dark", "light"]):
            d = os.path.join(root, split, name)
            os.makedirs(d, exist_ok=True)
            for i in range(per_class):
                with open(os.path.join(d, f"{i}.png"), "wb") as f:
                    f.write(png(12, 12, 40 + 170 * c + i % 7))


class Runner:
    def __init__(self, binary, spec, data, epochs, extra=()):
        self.binary, self.spec, self.data, self.epochs, self.extra = binary, spec, data, epochs, list(extra)

    def args(self, out, resume=False):
        a = [self.binary, "train", self.spec, "--data", self.data, "--epochs", str(self.epochs), "--workers", "1",
             "--seed", "7", "--out", out, "--progress", "plain"] + self.extra
        return a + (["--resume"] if resume else [])

    def run(self, out, resume=False, timeout=600):
        return subprocess.run(self.args(out, resume), capture_output=True, text=True, timeout=timeout)

    def start(self, out):
        return subprocess.Popen(self.args(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def metrics(out):
    """metrics.csv rows without the timing columns, and whether every row is whole."""
    path = os.path.join(out, "metrics.csv")
    if not os.path.exists(path):
        return [], True
    with open(path) as f:
        rows = list(csv.reader(f))
    if not rows:
        return [], False
    header = rows[0]
    whole = all(len(r) == len(header) for r in rows)
    keep = [i for i, h in enumerate(header) if h not in TIMING_COLUMNS]
    return [[r[i] for i in keep if i < len(r)] for r in rows], whole


def scores(path):
    """The test loss and accuracy `resnetc eval` gives the weights at `path` (JSON, every digit):
    the checkpoint files themselves differ run to run (Burn's random parameter ids)."""
    if not os.path.exists(path):
        return None
    r = subprocess.run([BINARY, "eval", SPEC_PATH, "--data", DATA_PATH, "--weights", path, "--format", "json"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return None
    d = json.loads(r.stdout)
    return {k: v for k, v in d.items() if k not in ("weights",)}


def checkpoints(out):
    d = os.path.join(out, "checkpoint")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def loads(binary, spec, data, weights):
    r = subprocess.run([binary, "eval", spec, "--data", data, "--weights", weights], capture_output=True, text=True)
    return r.returncode == 0, (r.stdout + r.stderr).strip()


def clean_error(result):
    text = result.stdout + result.stderr
    return result.returncode != 0 and "panicked" not in text and "RUST_BACKTRACE" not in text


def last_line(text):
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[-1] if lines else ""


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default=os.environ.get("RESNETC", "target/release/resnetc"))
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--images", type=int, default=300, help="training images per CIFAR file (5 files)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    a = p.parse_args()
    global BINARY, SPEC_PATH, DATA_PATH
    binary = BINARY = os.path.abspath(a.binary)
    if not os.path.exists(binary):
        sys.exit(f"{binary}: not built (cargo build --release)")
    rnd = random.Random(a.seed)
    scratch = tempfile.mkdtemp(prefix="resnetc-faults-")
    results = []  # (case, outcome, ok)
    ok_all = True

    def record(case, outcome, ok):
        nonlocal ok_all
        ok_all &= ok
        results.append((case, outcome, ok))
        print(f"{'ok ' if ok else 'FAIL'} {case}: {outcome}", flush=True)

    spec = os.path.join(scratch, "tiny.net")
    with open(spec, "w") as f:
        f.write(SPEC)
    data = os.path.join(scratch, "cifar")
    cifar_fixture(data, a.images)
    SPEC_PATH, DATA_PATH = spec, data
    runner = Runner(binary, spec, data, a.epochs)

    # 1. The reference, then kill -9 at random moments and --resume.
    ref = os.path.join(scratch, "reference")
    start = time.time()
    r = runner.run(ref)
    reference_seconds = time.time() - start
    if r.returncode != 0:
        sys.exit(f"the reference run failed:\n{r.stdout}\n{r.stderr}")
    ref_rows, _ = metrics(ref)
    ref_weights = scores(os.path.join(ref, "last.bpk"))
    again = os.path.join(scratch, "reference-again")
    runner.run(again)
    record("reference run twice", f"{reference_seconds:.1f} s, {a.epochs} epochs; metrics equal: "
           f"{metrics(again)[0] == ref_rows}, last.bpk scores equal: {scores(os.path.join(again, 'last.bpk')) == ref_weights}",
           metrics(again)[0] == ref_rows and scores(os.path.join(again, "last.bpk")) == ref_weights)

    resumed, fresh, identical, whole_after_kill = 0, 0, 0, 0
    for t in range(a.trials):
        out = os.path.join(scratch, f"kill-{t}")
        proc = runner.start(out)
        moment = rnd.uniform(0.05, 0.95) * reference_seconds
        time.sleep(moment)
        finished_before_kill = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        rows, whole = metrics(out)
        epochs_done = max(0, len(rows) - 1)
        whole_after_kill += whole
        has_checkpoint = any(c.startswith("model-") for c in checkpoints(out))
        r = runner.run(out, resume=has_checkpoint)
        if r.returncode != 0:
            record(f"kill -9 trial {t}", f"at {moment:.2f} s: the {'resume' if has_checkpoint else 'restart'} failed: "
                   f"{last_line(r.stderr)}", False)
            continue
        resumed += has_checkpoint
        fresh += not has_checkpoint
        same = metrics(out)[0] == ref_rows and scores(os.path.join(out, "last.bpk")) == ref_weights
        identical += same
        if not same or not whole:
            record(f"kill -9 trial {t}", f"at {moment:.2f} s ({epochs_done} epochs logged"
                   f"{', had finished' if finished_before_kill else ''}): whole {whole}, identical {same}", False)
        shutil.rmtree(out, ignore_errors=True)
    record(f"kill -9 × {a.trials}", f"{resumed} resumed from a checkpoint, {fresh} restarted (killed before the first "
           f"epoch's checkpoint), {whole_after_kill}/{a.trials} metrics.csv whole after the kill, {identical}/{a.trials} "
           "final metrics.csv and last.bpk's eval scores identical to the reference", identical == a.trials and whole_after_kill == a.trials)

    is_root = os.geteuid() == 0

    # 2. Disk full while writing a checkpoint.
    if is_root:
        mnt = os.path.join(scratch, "small-disk")
        os.makedirs(mnt)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt], check=True)
        try:
            out = os.path.join(mnt, "run")
            proc = runner.start(out)
            deadline = time.time() + 10 * reference_seconds + 30
            while time.time() < deadline and proc.poll() is None:
                if "model-2.bpk" in checkpoints(out):
                    break
                time.sleep(0.02)
            filler = os.path.join(mnt, "filler")
            try:
                with open(filler, "wb", buffering=0) as f:
                    for block in (1 << 20, 512, 1):
                        try:
                            while True:
                                f.write(b"\0" * block)
                        except OSError:
                            pass
            except OSError:
                pass  # already full
            stdout, stderr = proc.communicate(timeout=600)
            text = stdout + stderr
            cause = "No space left on device" in text or "os error 28" in text
            newest = [c for c in checkpoints(out) if c.startswith("model-")]
            newest = max(newest, key=lambda c: int(c[6:-4])) if newest else None
            loaded, why = loads(binary, spec, data, os.path.join(out, "checkpoint", newest)) if newest else (False, "none")
            record("disk full while checkpointing",
                   f"exit {proc.returncode}, error names the cause: {cause}, panic: {'panicked' in text}; "
                   f"newest checkpoint {newest} loads: {loaded}; message: {last_line(stderr)[:160]}",
                   proc.returncode != 0 and cause and "panicked" not in text and loaded)
            if os.path.exists(filler):
                os.remove(filler)
            r = runner.run(out, resume=True)
            same = r.returncode == 0 and metrics(out)[0] == ref_rows and scores(os.path.join(out, "last.bpk")) == ref_weights
            record("disk full, then space freed and --resume", f"exit {r.returncode}, identical to the reference: {same}",
                   same)
        finally:
            subprocess.run(["umount", "-l", mnt])

        # 3. A read-only --out.
        ro = os.path.join(scratch, "read-only")
        os.makedirs(ro)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", ro], check=True)
        try:
            r = runner.run(os.path.join(ro, "run"))
            record("read-only --out", f"exit {r.returncode}: {last_line(r.stderr)[:160]}", clean_error(r))
        finally:
            subprocess.run(["umount", "-l", ro])
    else:
        record("disk full / read-only --out", "skipped: needs root for tmpfs mounts", True)

    as_file = os.path.join(scratch, "a-file")
    open(as_file, "w").close()
    r = runner.run(as_file)
    record("--out is a file", f"exit {r.returncode}: {last_line(r.stderr)[:160]}", clean_error(r))

    # 4. A streamed dataset deleted after the first epoch.
    streamed = os.path.join(scratch, "folders")
    folder_fixture(streamed)
    spec2 = os.path.join(scratch, "streamed.net")
    with open(spec2, "w") as f:
        f.write(SPEC_STREAMED)
    runner2 = Runner(binary, spec2, streamed, 2000, ["--cache-mb", "0", "--batch-size", "8"])
    out = os.path.join(scratch, "deleted")
    proc = runner2.start(out)
    deadline = time.time() + 300
    # The strategy keeps the last two epochs' checkpoints: wait for any.
    while time.time() < deadline and proc.poll() is None and not any(c.startswith("model-") for c in checkpoints(out)):
        time.sleep(0.01)
    still_running = proc.poll() is None
    shutil.rmtree(streamed)
    stdout, stderr = proc.communicate(timeout=600)
    text = stdout + stderr
    kept = still_running and any(c.startswith("model-") for c in checkpoints(out))
    record("dataset deleted mid-run", f"exit {proc.returncode}, panic: {'panicked' in text}, a checkpoint kept: "
           f"{kept}; message: {last_line(stderr)[:160]}", proc.returncode != 0 and "panicked" not in text and kept)

    print("\n| case | outcome | ok |\n|---|---|---|")
    for case, outcome, ok in results:
        print(f"| {case} | {outcome.replace('|', '/')} | {'yes' if ok else 'NO'} |")
    if a.keep:
        print(f"\nscratch kept: {scratch}")
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    sys.exit(0 if ok_all else 1)


if __name__ == "__main__":
    main()
