"""Fixtures for the POCT1-A tests: DOMAIN.md examples, device messages, code maps."""
from __future__ import annotations

import re
from pathlib import Path
from xml.etree.ElementTree import SubElement

import pytest

from adapters.poct1a.build import build_message, field_element

DOMAIN_MD = Path(__file__).resolve().parents[2] / ".." / "shared" / "design" / "DOMAIN.md"
CLOCK = "2025-03-14T10:00:00+01:00"


@pytest.fixture(scope="session")
def domain_examples() -> dict[str, bytes]:
    """E1–E4 of DOMAIN.md §3.1, read from the shared design folder at test time."""
    if not DOMAIN_MD.exists():
        pytest.skip("../shared/design/DOMAIN.md is not available")
    text = DOMAIN_MD.read_text(encoding="utf-8")
    section = text[text.index("### 3.1"):text.index("### 3.2")]
    blocks = re.findall(r"```xml\n(.*?)```", section, re.S)
    assert len(blocks) == 4
    return {f"E{i}": b.encode("utf-8") for i, b in enumerate(blocks, 1)}


@pytest.fixture(scope="session")
def code_map() -> dict[str, dict]:
    return {
        "CRP": {"nlk": "NPU19748", "display": "P-C-Reaktivt protein", "loinc": "1988-5",
                "unit": "mg/L"},
        "HbA1c": {"nlk": "NPU27300", "display": "B-HbA1c", "loinc": "59261-8",
                  "unit": "mmol/mol"},
        "INR": {"nlk": "NPU01685", "display": "P-INR", "loinc": "34714-6", "unit": "1"},
    }


def _svc_obs(root, *, role="OBS", patient="13116900216", code="CRP", value="27", unit="mg/L"):
    svc = SubElement(root, "SVC")
    field_element(svc, "SVC.role_cd", role)
    field_element(svc, "SVC.observation_dttm", "2025-03-14T09:30:55+01:00")
    parent = svc
    if patient is not None:
        parent = SubElement(svc, "PT")
        field_element(parent, "PT.patient_id", patient)
    obs = SubElement(parent, "OBS")
    field_element(obs, "OBS.observation_id", code, SN="ACME")
    field_element(obs, "OBS.value", value, unit)
    field_element(SubElement(svc, "OPR"), "OPR.operator_id", "OP017")


@pytest.fixture(scope="session")
def device_msg():
    """``device_msg(type, control_id, **fields)`` -> bytes of a device message."""
    def make(msg_type: str, control_id: str, **kw) -> bytes:
        def fill(root):
            if msg_type in ("OBS.R01", "OBS.R02"):
                _svc_obs(root, **kw)
            elif msg_type == "DST.R01":
                field_element(SubElement(root, "DST"), "DST.new_observations_qty", "1")
            elif msg_type == "EOT.R01":
                field_element(SubElement(root, "EOT"), "EOT.topic_cd", "OBS")
            elif msg_type == "END.R01":
                field_element(SubElement(root, "TRM"), "TRM.reason_cd", "NRM")
            elif msg_type == "HEL.R01":
                field_element(SubElement(root, "DEV"), "DEV.serial_id", "000987")
        return build_message(msg_type, control_id, CLOCK, fill)
    return make


@pytest.fixture(scope="session")
def device_ack():
    """``device_ack(control_id, acked, type_cd="AA", spelling=("ACK.type_cd", "ACK.ack_control_id"))``."""
    def make(control_id: str, acked: str, type_cd: str = "AA",
             spelling=("ACK.type_cd", "ACK.ack_control_id")) -> bytes:
        def fill(root):
            ack = SubElement(root, "ACK")
            field_element(ack, spelling[0], type_cd)
            field_element(ack, spelling[1], acked)
        return build_message("ACK.R01", control_id, CLOCK, fill)
    return make
