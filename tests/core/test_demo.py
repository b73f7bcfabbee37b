"""`labgate demo` as the README runs it: starts on the embedded PostgreSQL,
takes the example message over MLLP, hands it to the demo EHR over HTTP with
the token it printed, stops cleanly — and each start's secrets replace the
last start's."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from support import REPO_ROOT

pytestmark = pytest.mark.slow
LABGATE = [sys.executable, "-m", "gateway.cli"]


def _start_demo(home):
    env = dict(os.environ, LABGATE_HOME=str(home))
    proc = subprocess.Popen(LABGATE + ["demo", "--log-level", "warning"], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("Then fetch it"):
            return proc
    proc.kill()
    raise AssertionError("demo did not start:\n" + "".join(lines))


def _stop(proc) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(60)


def _pull(token: str) -> tuple[int, dict]:
    req = urllib.request.Request("http://127.0.0.1:8080/fhir/Bundle?destination=demo-ehr-results",
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def test_demo_as_the_readme_runs_it(tmp_path):
    home = tmp_path / "var"
    proc = _start_demo(home)
    try:
        send = subprocess.run(LABGATE + ["send", "examples/messages/oru-r01-poc-crp-hb.hl7",
                                         "--to", "127.0.0.1:2575"],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
        assert send.returncode == 0 and "MSA|AA|POC20250314-000123" in send.stdout
        creds_file = home / "demo-credentials.json"
        assert oct(creds_file.stat().st_mode & 0o777) == "0o600"
        first_token = json.loads(creds_file.read_text())["demo-ehr"]
        status, page = _pull(first_token)
        assert status == 200 and len(page["entry"]) == 1
        codes = {c["code"] for e in page["entry"][0]["resource"]["entry"]
                 if e["resource"]["resourceType"] == "Observation"
                 for c in e["resource"]["code"]["coding"]}
        assert {"NPU19748", "NOR05172"} <= codes
    finally:
        assert _stop(proc) == 0

    proc = _start_demo(home)           # a second start: fresh secrets, old ones revoked
    try:
        second_token = json.loads((home / "demo-credentials.json").read_text())["demo-ehr"]
        assert second_token != first_token
        assert _pull(first_token)[0] == 401
        assert _pull(second_token)[0] == 200
    finally:
        assert _stop(proc) == 0
