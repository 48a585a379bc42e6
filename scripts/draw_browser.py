#!/usr/bin/env python3
"""`resnetc draw`'s HTML pages in headless Chromium, driven through ChromeDriver (WebDriver).

For each spec: the page shows the expected number of boxes (counted from the checked IR,
`resnetc compile --emit ir`), clicking a stage opens it in place (its blocks replace its box),
clicking a block inside it opens the side panel with the block's layers, hovering names the
box, clicking the frame closes the stage again. Screenshots of each step go to --shots.

Needs Debian's chromium and chromium-driver (`apt-get install chromium chromium-driver`) and
a built resnetc; standard library only. `.ci/run` runs it:

    python3 scripts/draw_browser.py --resnetc target/debug/resnetc --shots docs/draw
"""

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

SPECS = ["specs/resnet-20.net", "specs/densenet-bc-100-12.net", "specs/ablations/exclusive-gating.net"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Driver:
    """The few WebDriver commands the checks need."""

    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,1600"]}}}}
        self.session = self.call("POST", "/session", caps)["sessionId"]

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                reply = json.load(r)
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"WebDriver {method} {path}: {e.read().decode(errors='replace')[:400]}") from None
        return reply["value"]

    def cmd(self, method, path, body=None):
        return self.call(method, f"/session/{self.session}{path}", body)

    def go(self, url):
        self.cmd("POST", "/url", {"url": url})

    def js(self, script, *args):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, css):
        found = self.cmd("POST", "/elements", {"using": "css selector", "value": css})
        return [next(iter(e.values())) for e in found]

    def click(self, element):
        self.cmd("POST", f"/element/{element}/click", {})

    def hover(self, element):
        self.cmd("POST", "/actions", {"actions": [{"type": "pointer", "id": "mouse", "actions": [
            {"type": "pointerMove", "origin": {"element-6066-11e4-a52e-4f735466cecf": element}, "x": 0, "y": 0}]}]})

    def screenshot(self, path):
        with open(path, "wb") as f:
            f.write(base64.b64decode(self.cmd("GET", "/screenshot")))

    def quit(self):
        self.cmd("DELETE", "")


def boxes(nodes, open_names=()):
    """Boxes drawn for IR nodes with stages and blocks closed, except those named."""
    n = 0
    for node in nodes:
        k = node["kind"]
        kind = k["node"]
        if kind == "layer":
            n += 1
        elif kind in ("block", "stage"):
            inner = k["body"] if kind == "block" else k["blocks"]
            n += boxes(inner, open_names) if node["name"] in open_names else 1
        elif kind == "combine":
            n += (k["combinator"] is not None) + sum(boxes(a, open_names) for a in k["arms"])
        elif kind == "merge":
            n += 1 + sum(boxes(a[1], open_names) for a in k["arms"])
    return n


def report(spec, checks):
    for name, got, want in checks:
        ok = got == want
        print(f"{'ok  ' if ok else 'FAIL'} {spec}: {name}: {got}" + ("" if ok else f" (expected {want})"))


def visible_boxes(d):
    return d.js("return document.querySelectorAll('section.view:not([hidden]) g.node').length")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resnetc", default="target/debug/resnetc")
    ap.add_argument("--shots", default=None, help="folder for the screenshots (default: a temporary one)")
    a = ap.parse_args()
    shots = a.shots or tempfile.mkdtemp(prefix="resnetc-draw-shots-")
    os.makedirs(shots, exist_ok=True)
    work = tempfile.mkdtemp(prefix="resnetc-draw-")
    port = free_port()
    driver_proc = subprocess.Popen(["chromedriver", f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    failures = 0
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        d = Driver(port)
        for spec in SPECS:
            stem = os.path.splitext(os.path.basename(spec))[0]
            page = os.path.join(work, stem + ".html")
            subprocess.run([a.resnetc, "draw", spec, "-o", page], check=True)
            ir = json.loads(subprocess.run([a.resnetc, "compile", spec, "--emit", "ir"], check=True,
                                           capture_output=True, text=True).stdout)
            checks = []
            d.go("file://" + page)
            expected = boxes(ir["body"]) + 2
            got = visible_boxes(d)
            checks.append(("overview boxes", got, expected))
            d.screenshot(os.path.join(shots, f"{stem}.png"))

            stage_el = d.find("section.view:not([hidden]) g.node.stage")[0]
            stage = d.js("return arguments[0].dataset.name", {"element-6066-11e4-a52e-4f735466cecf": stage_el})
            d.click(stage_el)
            expected = boxes(ir["body"], open_names=(stage,)) + 2
            checks.append((f"boxes after clicking {stage}", visible_boxes(d), expected))
            checks.append(("open view", d.js("return document.querySelector('section.view:not([hidden])').dataset.view"), stage))
            d.screenshot(os.path.join(shots, f"{stem}-{stage}.png"))

            found = d.find(f"section.view:not([hidden]) g.node.block[data-name^='{stage}.']")
            checks.append((f"{stage}'s blocks shown", len(found) > 0, True))
            if not found:
                report(spec, checks)
                failures += sum(got != want for _, got, want in checks)
                continue
            block_el = found[0]
            block = d.js("return arguments[0].dataset.name", {"element-6066-11e4-a52e-4f735466cecf": block_el})
            d.hover(block_el)
            checks.append(("hover names the box", d.js("return document.getElementById('info').textContent.split(' · ')[0]"), block))
            d.click(block_el)
            stage_node = next(n for n in ir["body"] if n["name"] == stage)
            block_node = next(n for n in stage_node["kind"]["blocks"] if n["name"] == block)
            checks.append(("panel open", d.js("return !document.getElementById('panel').hidden"), True))
            checks.append((f"panel boxes for {block}", d.js("return document.querySelectorAll('#panel-body g.node').length"),
                           boxes(block_node["kind"]["body"]) + 2))
            d.screenshot(os.path.join(shots, f"{stem}-{block}.png"))
            d.click(d.find("#panel-close")[0])
            d.click(d.find("section.view:not([hidden]) g.frame text")[0])
            checks.append(("clicking the frame closes the stage",
                           d.js("return document.querySelector('section.view:not([hidden])').dataset.view"), ""))
            report(spec, checks)
            failures += sum(got != want for _, got, want in checks)
        d.quit()
    finally:
        driver_proc.terminate()
    print(f"screenshots in {shots}")
    if failures:
        print(f"{failures} check(s) failed", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
