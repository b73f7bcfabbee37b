"""The lean parser agrees with hl7apy, the reference parser, field by field.

hl7apy 1.3 cannot parse every corpus message (it rejects MSH-2 with a fifth
"truncation" character, and segments such as PRT that its tables lack in the
declared version); those are skipped here and covered by test_parser.
"""
from __future__ import annotations


import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mappings.hl7v2.escape import escape
from mappings.hl7v2.parser import parse
from mappings.hl7v2.separators import DEFAULT
from support import HL7V2_CORPUS, require_corpus

VALID = sorted((HL7V2_CORPUS / "valid").glob("*.hl7"))
HL7APY_CANNOT_PARSE = {
    "cdc-rs-oru-r01-elims-5-encoding-chars.hl7", "cdc-rs-oru-r01-elims-canceled.hl7",
    "cdc-rs-oru-r01-elims-minimal.hl7", "cdc-rs-oru-r01-hci.hl7",   # MSH-2 '^~\&#'
    "msfhirconv-MDHHS-OML-O21-1.hl7", "msfhirconv-MDHHS-OML-O21-2.hl7",
    "msfhirconv-ORU-R01-01.hl7",                                    # PRT segment
}


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_corpus_fields_agree_with_hl7apy(path, hl7apy_reference):
    raw = path.read_bytes()
    lean = parse(raw)
    if path.name in HL7APY_CANNOT_PARSE:
        with pytest.raises(Exception):
            hl7apy_reference.parse(raw.decode(lean.encoding))
        pytest.skip("hl7apy cannot parse this message")
    reference = hl7apy_reference.parse(raw.decode(lean.encoding))
    assert hl7apy_reference.disagreements(reference, lean) == []


def test_most_of_the_corpus_is_compared():
    require_corpus()
    assert len(VALID) - len(HL7APY_CANNOT_PARSE) >= 60


# ------------------------------------------------------------------ generated messages

TEXT = st.text(alphabet=st.sampled_from(list("abcXYZ019 .,-/:æøåÆØÅ|^~\\&") + ["\n"]),
               min_size=1, max_size=12).filter(lambda s: s.strip() == s and s.strip())
WORD = st.text(alphabet=st.sampled_from(list("ABCxyz0123")), min_size=1, max_size=8)


def _esc(s: str) -> str:
    return escape(s, DEFAULT)


@st.composite
def oru_messages(draw):
    """An ORU^R01 with escaped free text, repetitions and components; and its leaf values."""
    leaves: dict[tuple, str] = {}
    ids = draw(st.lists(st.tuples(WORD, WORD), min_size=1, max_size=4))
    pid3 = "~".join(f"{_esc(i)}^^^{_esc(a)}&1.2.3&ISO^MR" for i, a in ids)
    family, given_name = draw(TEXT), draw(TEXT)
    leaves[("PID", 0, 5, 0, 1, 1)] = family
    leaves[("PID", 0, 5, 0, 2, 1)] = given_name
    for r, (i, a) in enumerate(ids):
        leaves[("PID", 0, 3, r, 1, 1)] = i
        leaves[("PID", 0, 3, r, 4, 1)] = a
    segs = ["MSH|^~\\&|SND|FAC|RCV|FAC2|20250314093200+0100||ORU^R01^ORU_R01|C1|P|2.5.1",
            f"PID|1||{pid3}||{_esc(family)}^{_esc(given_name)}||19691113|F",
            f"OBR|1|P1^EPJ|F1^LAB|{_esc(draw(WORD))}^{_esc(draw(TEXT))}^L|||20250314092500"]
    n_obx = draw(st.integers(1, 4))
    for k in range(n_obx):
        text = draw(TEXT)
        leaves[("OBX", k, 5, 0, 1, 1)] = text
        segs.append(f"OBX|{k + 1}|ST|{_esc(draw(WORD))}^{_esc(draw(TEXT))}^L||{_esc(text)}|"
                    f"mg/L^mg/L^UCUM|1-5|H|||F")
        if draw(st.booleans()):
            note = draw(TEXT)
            leaves[("NTE", sum(1 for s in segs if s.startswith("NTE")), 3, 0, 1, 1)] = note
            segs.append(f"NTE|1||{_esc(note)}")
    return "\r".join(segs) + "\r", leaves


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(oru_messages())
def test_generated_messages_agree_with_hl7apy(hl7apy_reference, generated):
    text, leaves = generated
    lean = parse(text.encode("utf-8"))
    reference = hl7apy_reference.parse(text)
    assert hl7apy_reference.disagreements(reference, lean) == []
    for (seg, occurrence, field, rep, comp, sub), value in leaves.items():
        assert lean.get(seg, field, occurrence=occurrence, rep=rep, comp=comp, sub=sub) == value
