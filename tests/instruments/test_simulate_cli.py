"""``labgate simulate astm|poct1a`` as a subprocess against a running gateway."""
from __future__ import annotations

import asyncio
import json
import sys

from inst_support import instrument_config, pull, verdicts


async def _labgate(*args: str) -> tuple[int, dict | None, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; from gateway.cli import main; sys.exit(main())", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    try:
        summary = json.loads(out)
    except ValueError:
        summary = None
    return proc.returncode, summary, err.decode()


async def test_simulate_astm_and_poct1a_against_a_running_gateway(gateway_factory):
    gw = await gateway_factory(instrument_config())
    astm = f"127.0.0.1:{gw.listeners['astm-in'].port}"
    poct = f"127.0.0.1:{gw.listeners['poct-in'].port}"
    code, summary, err = await _labgate("simulate", "astm", "--to", astm, "--scenario", "crp")
    assert code == 0, err
    assert summary["ok"] and len(summary["answers"]) == 1 and "transcript" not in summary
    code, summary, err = await _labgate("simulate", "poct1a", "--to", poct, "--scenario", "hba1c",
                                        "--qc-first")
    assert code == 0, err
    assert summary["completed"] and summary["operators_received"] == 1
    assert len(await pull(gw)) == 2
    code, summary, _ = await _labgate("simulate", "poct1a", "--to", poct, "--scenario", "crp",
                                      "--qc-first")
    assert code == 1 and summary["gateway_errors"][0].startswith("QC-LOCKOUT")
    code, summary, _ = await _labgate("simulate", "astm", "--to", astm, "--fault", "garbage",
                                      "--fault", "bad-checksum")
    assert code == 0 and summary["faults"] == ["bad-checksum", "garbage"]
    assert ("ASTM", "accepted", []) in await verdicts(gw)


async def test_simulate_reports_an_unreachable_gateway():
    code, summary, err = await _labgate("simulate", "astm", "--to", "127.0.0.1:1")
    assert code == 1 and summary is None and "ConnectionRefusedError" in err
