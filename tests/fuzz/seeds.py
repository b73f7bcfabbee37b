"""Seed inputs per fuzz target: a few built here, plus the public examples in
../shared/corpus when it is beside the checkout (read at run time, never
copied into the repository)."""
from __future__ import annotations

from pathlib import Path

CORPUS = (Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus").resolve()

_ORU = (b"MSH|^~\\&|POCDM|LEGEVAKT|LABGW|KOMMUNE|20250314093200+0100||ORU^R01^ORU_R01|C1|P|2.5.1\r"
        b"PID|1||13116900216^^^FREG&2.16.578.1.12.4.1.4.1&ISO^NNNOR||Danser^Line||19691113|F\r"
        b"OBR|1|ORD-1^EPJ|POC-1^POCDM|POCPANEL^POC-panel^L|||20250314092500\r"
        b"OBX|1|NM|NPU19748^P-C-reaktivt protein^NLK||27|mg/L^mg/L^UCUM|<5|H|||F\r"
        b"SPM|1|LID0004711||BLDC^Blood capillary^HL70487\r")
_ASTM = (b"H|\\^&|||ACME^1.0^SN123|||||LIS||P|1|20250314093200\r"
         b"P|1||13116900216||Danser^Line||19691113|F\r"
         b"O|1|LID0004711||^^^CRP|R||||||||||BLD\r"
         b"R|1|^^^CRP|27|mg/L|<5|H||F||||20250314092500\r"
         b"C|1|I|checked|G\rL|1|N\r")
_ASTM_FRAMED = b"\x05\x021H|\\^&\r\x0337\r\n\x04"
_POCT = (b'<?xml version="1.0" encoding="UTF-8"?><OBS.R01><HDR><HDR.control_id V="101"/>'
         b'<HDR.version_id V="POCT1"/><HDR.creation_dttm V="2025-03-14T09:32:00+01:00"/></HDR>'
         b'<SVC><SVC.role_cd V="OBS"/><SVC.observation_dttm V="2025-03-14T09:25:00+01:00"/>'
         b'<PT><PT.patient_id V="13116900216"/><OBS><OBS.observation_id V="CRP"/>'
         b'<OBS.value V="27" U="mg/L"/></OBS></PT></SVC></OBS.R01>')
_HELLO = (b'<HEL.R01><HDR><HDR.control_id V="1"/><HDR.version_id V="POCT1"/></HDR>'
          b'<DEV><DEV.device_id V="000987"/><DEV.vendor_id V="ACME"/></DEV></HEL.R01>')
_FHIR = (b'{"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": '
         b'{"resourceType": "Patient", "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.1",'
         b' "value": "13116900216"}]}, "request": {"method": "POST", "url": "Patient"}}]}')

BUILT_IN = {
    "hl7v2": [_ORU, _ORU.replace(b"\r", b"\n"), b"MSH|^~\\&|A\r"],
    "astm": [_ASTM, _ASTM_FRAMED],
    "poct1a": [_POCT, _HELLO, _HELLO + _POCT],
    "fhir_json": [_FHIR, b'{"resourceType": "Observation", "status": "final"}', b"[[[]]]"],
}
_CORPUS_GLOBS = {
    "hl7v2": ["hl7v2/**/*.hl7"],
    "astm": ["astm/**/*.astm", "astm/lis1-frames/*"],
    "poct1a": ["poct1a/**/*.xml"],
    "fhir_json": ["fhir/**/*.json"],
}
MAX_SEED_BYTES = 64 * 1024


def seeds(target: str) -> list[bytes]:
    """Built-in seeds plus corpus files (≤ 64 KiB each) for ``target``."""
    out = list(BUILT_IN[target])
    if CORPUS.exists():
        for pattern in _CORPUS_GLOBS[target]:
            for path in sorted(CORPUS.glob(pattern)):
                if path.is_file() and path.stat().st_size <= MAX_SEED_BYTES:
                    out.append(path.read_bytes())
    return out
