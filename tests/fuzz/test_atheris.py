"""A bounded atheris (libFuzzer) run of every fuzz target, in parallel.

Each target runs for FUZZ_SECONDS (default 15) in its own process; all run at
once, so the whole module takes about that long. A crash fails the test and
shows the input (base64) and the traceback; turn it into a case in
test_regressions.py. Executions per target are printed and written to
``$FUZZ_REPORT`` (JSON) when that is set.
"""
from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from targets import TARGETS

atheris = pytest.importorskip("atheris")   # the `test` extra installs it; skip where no wheel exists

HARNESS = Path(__file__).with_name("harness.py")
SECONDS = int(os.environ.get("FUZZ_SECONDS", "15"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Start every harness at once; wait for all; {target: (returncode, log, artifacts)}."""
    procs = {}
    for name in TARGETS:
        work = tmp_path_factory.mktemp(f"fuzz-{name}")
        (work / "corpus").mkdir()
        cmd = [sys.executable, str(HARNESS), name, f"-max_total_time={SECONDS}", "-timeout=10",
               "-rss_limit_mb=2048", f"-artifact_prefix={work}/", "-print_final_stats=1", str(work / "corpus")]
        log = open(work / "log", "wb")
        procs[name] = (subprocess.Popen(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT), work, log)
    out = {}
    for name, (proc, work, log) in procs.items():
        try:
            proc.wait(timeout=SECONDS + 120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
        text = (work / "log").read_text("utf-8", "replace")
        crashes = sorted(p for p in work.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-")))
        out[name] = (proc.returncode, text, crashes)
    report = {n: _executions(t) for n, (_, t, _) in out.items()}
    print(f"\natheris executions in {SECONDS}s per target: {report}")
    if os.environ.get("FUZZ_REPORT"):
        Path(os.environ["FUZZ_REPORT"]).write_text(json.dumps({"seconds": SECONDS, "executions": report}))
    return out


def _executions(log: str) -> int:
    m = re.findall(r"Done (\d+) runs", log) or re.findall(r"stat::number_of_executed_units:\s*(\d+)", log)
    return int(m[-1]) if m else 0


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_target_has_no_crash(runs, name):
    code, log, crashes = runs[name]
    details = "\n".join(f"{p.name}: {base64.b64encode(p.read_bytes()[:4096]).decode()}" for p in crashes)
    assert code == 0 and not crashes, f"{name}: exit {code}\n{details}\n{log[-4000:]}"
    assert _executions(log) > 100, f"{name} barely ran:\n{log[-2000:]}"
