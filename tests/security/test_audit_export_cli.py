"""``labgate audit export``: the trail as NDJSON AuditEvents, itself audited."""
from __future__ import annotations

import os
import subprocess
import sys

import orjson
from fhir.resources.R4B.auditevent import AuditEvent

from sec_helpers import security_config
from support import REPO_ROOT, mllp_exchange, oru_r01, to_toml

FNR = "13116900216"


async def test_cli_exports_the_patients_trail(api, tmp_path):
    await mllp_exchange("127.0.0.1", api.gw.listeners["mllp-in"].port, [oru_r01("CLI-1")])
    await api.call("GET", "/fhir/Bundle?destination=ehr-pull", "ehr")
    cfg = tmp_path / "gw.toml"
    cfg.write_text(to_toml(security_config()))
    out = tmp_path / "audit.ndjson"
    env = dict(os.environ, LABGATE_DATABASE_URL=api.gw.db_url)
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "audit", "--config", str(cfg), "export",
                           "--patient", FNR, "--date", "ge2000-01-01", "--out", str(out)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "exported 2 audit events" in proc.stderr
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    events = [orjson.loads(line) for line in out.read_text().splitlines()]
    assert [e["subtype"][0]["code"] for e in events] == ["message.receive", "results.pull"]
    for e in events:
        AuditEvent.model_validate(e)
    async with api.gw.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT actor, patient, detail FROM audit_log WHERE action = 'audit.export'")
    assert row["actor"].startswith("cli:") and row["patient"] == FNR and row["detail"] == "exported 2"


def test_cli_refuses_a_bad_date(tmp_path):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(to_toml(security_config()))
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "audit", "--config", str(cfg), "export",
                           "--date", "someday"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, LABGATE_DATABASE_URL="postgresql://nobody@127.0.0.1:1/x"))
    assert proc.returncode == 2 and "not a FHIR date search value" in proc.stderr
