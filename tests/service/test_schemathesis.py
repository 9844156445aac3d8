"""Schemathesis against the service's own OpenAPI, run as CI runs it.

``sluicegate serve --dev`` runs in a subprocess on a free port and an empty data dir; the
admin key it prints for the org ``demo`` signs every request. The schemathesis CLI then
runs all its phases (examples, coverage, fuzzing, stateful) with a fixed seed and a bounded
number of examples per operation, and three checks: no response is a 5xx, every status is
a documented one, and every response matches the schema published for its status. On
failure the test prints schemathesis' report (each failure with a curl line to reproduce
it) and the server's log.

Strings are drawn from all of Unicode that UTF-8 can carry (``--generation-codec utf-8``,
NUL included: ``--generation-allow-x00 true``), written here although they are
schemathesis' defaults, and the run's requests (a HAR file) must show it: text beyond
ASCII and beyond the Basic Multilingual Plane, and NULs, in bodies and in URLs. What UTF-8
cannot carry (lone surrogates, which JSON can escape) and bytes that are not UTF-8 are sent
by ``test_fuzz_unicode.py``; schemathesis never generates them. Its JSON bodies are
ASCII, every other character escaped (``json.dumps``); raw UTF-8 bytes are sent there too.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import pytest
from tests.loopback import free_port

SLUICEGATE = [sys.executable, "-m", "sluicegate.cli"]
SCHEMATHESIS = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
CHECKS = ["not_a_server_error", "response_schema_conformance", "status_code_conformance"]
MAX_EXAMPLES = 20  # per operation and phase: about 25 s on two cores
SEED = 20261126
# POST /v1/calls may hold a request up to waitSeconds (at most 60 s) before answering.
REQUEST_TIMEOUT = 65


@contextmanager
def serving(data_dir: Path, log: Path) -> Iterator[tuple[str, str]]:
    """Run `sluicegate serve --dev` until the block ends; yield its base URL and admin key.

    The server's output goes to ``log`` (a file, so a long run can never fill a pipe and
    block it). At the end: SIGTERM, then SIGKILL if it has not exited within 20 s.
    """
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*SLUICEGATE, "serve", "--dev", "--port", str(port), "--data-dir", str(data_dir)],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while "sluicegate serving on" not in (text := log.read_text(errors="replace")):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"sluicegate serve did not start:\n{text}")
            time.sleep(0.05)
        token = next(word for word in text.split() if word.startswith("sg_"))
        yield f"http://127.0.0.1:{port}", token
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


@pytest.mark.slow
def test_the_service_keeps_its_openapi_contract(tmp_path: Path) -> None:
    """Schemathesis finds no 5xx and no response that does not match the published schema."""
    log, har = tmp_path / "server.log", tmp_path / "requests.har"
    with serving(tmp_path / "data", log) as (base, token):
        done = subprocess.run(
            [
                SCHEMATHESIS, "run", f"{base}/openapi.json",
                "--checks", ",".join(CHECKS),
                "--max-examples", str(MAX_EXAMPLES),
                "--seed", str(SEED),
                "--workers", "1",
                "--generation-database", "none",
                "--request-timeout", str(REQUEST_TIMEOUT),
                "--continue-on-failure",
                "--generation-codec", "utf-8",
                "--generation-allow-x00", "true",
                "--report", "har",
                "--report-har-path", str(har),
                "--no-color",
                "--header", f"Authorization: Bearer {token}",
                "--header", "x-gw-ims-org-id: demo",
                "--header", "x-sandbox-name: prod",
            ],
            cwd=tmp_path, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    report = f"{done.stdout}\n{done.stderr}\n--- server log ---\n{log.read_text(errors='replace')}"
    assert 0 == done.returncode, report
    assert {"non-ASCII in a body", "beyond the BMP in a body", "NUL in a body",
            "non-ASCII in a URL"} <= text_sent(har)  # fmt: skip


def text_sent(har: Path) -> set[str]:
    """What kinds of text the requests recorded in ``har`` carried."""
    seen = set()
    for entry in json.loads(har.read_text())["log"]["entries"]:
        request = entry["request"]
        url = unquote_to_bytes(request["url"]).decode(errors="ignore")  # text, as UTF-8
        if any(ord(c) > 0x7F for c in url):
            seen.add("non-ASCII in a URL")
        try:
            body = json.loads((request.get("postData") or {}).get("text") or "null")
        except ValueError:
            continue
        for text in strings(body):
            if any(ord(c) > 0x7F for c in text):
                seen.add("non-ASCII in a body")
            if any(ord(c) > 0xFFFF for c in text):
                seen.add("beyond the BMP in a body")
            if "\x00" in text:
                seen.add("NUL in a body")
    return seen


def strings(doc: Any) -> Iterator[str]:
    """Every string of a parsed JSON document, keys included."""
    if isinstance(doc, str):
        yield doc
    elif isinstance(doc, dict):
        for key, value in doc.items():
            yield key
            yield from strings(value)
    elif isinstance(doc, list):
        for item in doc:
            yield from strings(item)
