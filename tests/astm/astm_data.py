"""ASTM test data: DOMAIN.md examples E5–E8 at frame level.

The frame texts below are copied from DOMAIN.md §3.3 in its ``<STX>``
notation, checksums included; ``frames()`` turns them into bytes. The
checksums are verified by the tests, not trusted.
"""
from __future__ import annotations

NOTATION = {"<STX>": "\x02", "<ETX>": "\x03", "<ETB>": "\x17", "<EOT>": "\x04",
            "<ENQ>": "\x05", "<ACK>": "\x06", "<NAK>": "\x15", "<CR>": "\r", "<LF>": "\n"}

E5 = """<STX>1H|\\^&|||HBA1C-POC^4.4.3^SN12345678|||||LIS||P|1|20250314093012<CR><ETX>24<CR><LF>
<STX>2P|1|13116900216|||Danser^Line||19691113|F<CR><ETX>F9<CR><LF>
<STX>3O|1|LID0004711||^^^HbA1c|R||20250314092500|||BI-ANNE|N||||B^capillary<CR><ETX>72<CR><LF>
<STX>4R|1|^^^HbA1c|53|mmol/mol|20-42|H||F||OP017|20250314092610|20250314093000|HBA1C-POC^SN12345678<CR><ETX>6B<CR><LF>
<STX>5C|1|I|Reagent lot 1234567 exp 20260131|G<CR><ETX>16<CR><LF>
<STX>6L|1|N<CR><ETX>09<CR><LF>"""

E6 = """<STX>1H|\\^&|||INR-POC^03.02^UU1234567|||||||P|1|20250314101500<CR><ETX>AB<CR><LF>
<STX>2P|1|41019044120|||Nordmann^Ola||19900101|M<CR><ETX>66<CR><LF>
<STX>3O|1|||^^^INR|S||20250314101200||||N||||B^capillary<CR><ETX>C1<CR><LF>
<STX>4R|1|^^^INR|3.4|INR|2.0-3.0|H||F||HJ-SYKEPL-07||20250314101400|INR-POC^UU1234567<CR><ETX>BE<CR><LF>
<STX>5L|1|N<CR><ETX>08<CR><LF>"""

E7 = """<STX>1H|\\^&|||CRP-POC^1.2^AF2-000987|||||||Q|1|20250314075500<CR><ETX>58<CR><LF>
<STX>2O|1|CI-LOT 10012345||^^^CRP|R||20250314075200|||OP017|Q<CR><ETX>06<CR><LF>
<STX>3R|1|^^^CRP|27|mg/L|22-34|||F||OP017||20250314075400|CRP-POC^AF2-000987<CR><ETX>6F<CR><LF>
<STX>4L|1|N<CR><ETX>07<CR><LF>"""

E8 = """<STX>1H|\\^&|||INR-POC^03.02^UU1234567|||||||P|1|20250314100800<CR><ETX>AD<CR><LF>
<STX>2Q|1|^LID0004712||ALL||||||||O<CR><ETX>51<CR><LF>
<STX>3L|1|N<CR><ETX>06<CR><LF>"""

EXAMPLES = {"E5": E5, "E6": E6, "E7": E7, "E8": E8}

CODE_MAP = {
    "HbA1c": {"nlk": "NPU27300", "display": "B-HbA1c", "loinc": "59261-8", "unit": "mmol/mol"},
    "INR": {"nlk": "NPU01685", "display": "P-INR", "loinc": "34714-6", "unit": "1"},
    "CRP": {"nlk": "NPU19748", "display": "P-C-Reaktivt protein", "loinc": "1988-5",
            "unit": "mg/L"},
}


def to_bytes(notation: str) -> bytes:
    """DOMAIN.md notation to bytes (line breaks between frames are layout only)."""
    text = notation.replace("\n", "")
    for name, char in NOTATION.items():
        text = text.replace(name, char)
    return text.encode("latin-1")


def frames(name: str) -> list[bytes]:
    """The frames of example ``name``, one bytes object each."""
    return [to_bytes(line) for line in EXAMPLES[name].splitlines()]


def records(name: str) -> bytes:
    """The record text (CR-terminated records) of example ``name``."""
    return b"".join(f[2:f.index(b"\x03")] for f in frames(name))
