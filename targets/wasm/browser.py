"""Run a wasm artifact in headless Chromium (Debian's ``chromium``): the browser test and ``run_in_browser``.

A throwaway localhost HTTP server (a thread) serves ``js/browser_page.html`` as ``/index.html``, the artifact as
``/art/`` (static files, exactly what a deployment serves) and the feeds as ``/feeds/`` (node_runner's raw format);
the page runs the model through ``art/sparsec.mjs`` and POSTs its outputs to ``/result``.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from sparsec.errors import SparsecError
from sparsec.ml_values import from_json

from .node_runner import write_tensors

PAGE = Path(__file__).with_name("js") / "browser_page.html"
CHROMIUM = "chromium"
# Debian's chromium as root in a closed network (env notes): no sandbox, no GPU, no background connections.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
TIMEOUT_S = 120


def chromium_missing() -> str:
    return "" if shutil.which(CHROMIUM) else f"{CHROMIUM} not found on PATH: install it (tools/system_deps.sh does)"


class _Handler(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript", ".wasm": "application/wasm"}

    def __init__(self, *args: Any, sink: dict[str, Any], done: threading.Event, **kw: Any) -> None:
        self.sink, self.done = sink, done
        super().__init__(*args, **kw)

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        if self.path != "/result":
            self.send_error(404)
            return
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.sink["result"] = json.loads(body)
        self.send_response(204)
        self.end_headers()
        self.done.set()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def _decode(outputs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, t in outputs.items():
        if "json" in t:  # a ZipMap's sequence of maps
            out[name] = from_json(t["json"])
            continue
        raw = base64.b64decode(t["data"])
        little = np.frombuffer(raw, dtype=np.dtype(t["dtype"]).newbyteorder("<"))
        out[name] = little.astype(t["dtype"]).reshape(t["dims"])
    return out


def run_in_browser(artifact: Path, feeds: dict[str, np.ndarray]) -> dict[str, Any]:
    """The artifact's outputs by name (in the model's order), computed in headless Chromium from the artifact served
    on localhost."""
    missing = chromium_missing()
    if missing:
        raise SparsecError(missing)
    with tempfile.TemporaryDirectory(prefix="sparsec-browser-") as tmp:
        root = Path(tmp) / "site"
        shutil.copytree(artifact, root / "art")
        (root / "feeds").mkdir()
        write_tensors(root / "feeds", feeds)
        shutil.copy2(PAGE, root / "index.html")
        sink: dict[str, Any] = {}
        done = threading.Event()
        handler = partial(_Handler, directory=str(root), sink=sink, done=done)
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
        profile = Path(tmp) / "profile"
        cmd = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url]
        browser = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            if not done.wait(TIMEOUT_S):
                raise SparsecError(f"chromium did not report the model's outputs within {TIMEOUT_S} s ({url})")
        finally:
            browser.terminate()
            try:
                browser.wait(10)
            except subprocess.TimeoutExpired:
                browser.kill()
                browser.wait()
            server.shutdown()
            server.server_close()
    result = sink["result"]
    if "error" in result:
        raise SparsecError(f"wasm artifact failed in chromium: {result['error']}")
    got = _decode(result["outputs"])
    order = json.loads((Path(artifact) / "plan.json").read_text())["outputs"]  # JS puts integer-like keys first
    return {o["name"]: got[o["name"]] for o in order}
