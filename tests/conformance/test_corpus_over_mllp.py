"""Every public example message through the real gateway over MLLP.

Each file under ``corpus/hl7v2/valid`` is sent twice, on one gateway with two
listeners (two source systems):

- ``field`` — the production defaults: every clinical rule as shipped. The
  corpus is mostly US public-health and vendor examples, so most of it is
  rightly rejected by the Norwegian rules; each such file is listed in
  ``STRICT_REJECTED`` with the rule that must be named and why.
- ``hl7`` — the same gateway with the Norwegian content rules off for that
  source (what a source configured for foreign or test traffic gets). This
  proves the HL7 layer: each supported lab message is accepted; each other
  file is rejected for the HL7 reason in ``HL7_REJECTED``.

Nothing may crash: every message gets an ACK with MSA-1, every rejection
names a rule code in ERR-5, and no message is left unstored. Every file under
``corpus/hl7v2/invalid`` gets a protocol-native negative ACK (AE/AR). The
counts are printed (``-s``) and asserted against the tables.
"""
from __future__ import annotations

import re

import pytest
from support import base_config, field, mllp_exchange, segments

from gateway.validation.registry import RULES

# Content rules a foreign/test source switches off (HL7 structure still applies).
CONTENT_RULES = {code: "off" for code in RULES}

# file → (ACK code, rule code that must be among ERR-5, why) on the HL7-only source.
HL7_REJECTED = {
    "gcp-mllp-adt-a01-accepted.hl7": ("AR", "HL7-UNSUPPORTED-MESSAGE-TYPE", "ADT is not a lab message"),
    "hapi-adt-a24-custom-delimiters.hl7": ("AR", "HL7-UNSUPPORTED-MESSAGE-TYPE", "ADT^A24 (patient link)"),
    "hapi-labworkflow-09-ORL_O34.hl7": ("AR", "HL7-UNSUPPORTED-MESSAGE-TYPE",
                                        "ORL is the lab's order response, not an order or result"),
    "hapi-npac-ack-v21.hl7": ("AR", "HL7-UNSUPPORTED-MESSAGE-TYPE", "an ACK sent as a message"),
    "hapi-olis-erp-z99-chemistry.hl7": ("AR", "HL7-UNSUPPORTED-MESSAGE-TYPE", "Ontario OLIS query response Z99"),
    "hl7apy-oml-o33-multi-specimen.hl7": ("AR", "HL7-UNSUPPORTED-MESSAGE-TYPE",
                                          "OML^O33 (specimen-centred order) is not supported; O21 is"),
    "hl7apy-oml-o33-single-specimen.hl7": ("AR", "HL7-UNSUPPORTED-MESSAGE-TYPE", "OML^O33, as above"),
    "msfhirconv-ADT-A01-02.hl7": ("AR", "HL7-UNSUPPORTED-MESSAGE-TYPE", "ADT"),
    "msfhirconv-ADT-A04-02.hl7": ("AR", "HL7-UNSUPPORTED-MESSAGE-TYPE", "ADT"),
    "msfhirconv-ADT-A08-02.hl7": ("AR", "HL7-UNSUPPORTED-MESSAGE-TYPE", "ADT"),
    "msfhirconv-OUL-R23-01.hl7": ("AR", "HL7-UNSUPPORTED-MESSAGE-TYPE", "OUL^R23 (container-oriented)"),
    "msfhirconv-OUL-R23-02.hl7": ("AR", "HL7-UNSUPPORTED-MESSAGE-TYPE", "OUL^R23"),
    "msfhirconv-OUL-R24-01.hl7": ("AR", "HL7-UNSUPPORTED-MESSAGE-TYPE", "OUL^R24 (order-oriented)"),
    "msfhirconv-OUL-R24-02.hl7": ("AR", "HL7-UNSUPPORTED-MESSAGE-TYPE", "OUL^R24"),
    "oie-ack-aa-v22.hl7": ("AR", "HL7-UNSUPPORTED-MESSAGE-TYPE", "an ACK sent as a message"),
    "msfhirconv-ORM-O01-04.hl7": ("AE", "HL7-OBR-MISSING", "a dietary order (ODS), no lab OBR"),
    "msfhirconv-ORM-O01-05.hl7": ("AE", "HL7-OBR-MISSING", "a supply requisition (RQD), no lab OBR"),
    "msfhirconv-ORM-O01-06.hl7": ("AE", "HL7-OBR-MISSING", "a pharmacy order (RXO), no lab OBR"),
    "msfhirconv-ORU-R01-01.hl7": ("AE", "HL7-OBX-BEFORE-OBR",
                                  "an OBX after ORC but before its OBR: which order it belongs to is ambiguous"),
}

# Every file under corpus/hl7v2/invalid → (ACK code, rule code in ERR-5, why), on the
# production-defaults source.
INVALID = {
    "cdc-rs-oru-r01-mars-fails-onboarding.hl7": (
        "AE", "PID-MISSING", "a US MARS-profile failure; we do not implement that profile, and "
        "the message has no Norwegian person number, which rejects it here"),
    "gcp-mllp-adt-a01-lf-segment-separator.hl7": (
        "AR", "HL7-UNSUPPORTED-MESSAGE-TYPE", "read despite LF separators (a warning), and ADT"),
    "hl7apy-first-segment-not-msh.hl7": ("AR", "HL7-MSH-MISSING", "starts with PID"),
    "hl7apy-msh-duplicate-encoding-chars.hl7": ("AR", "HL7-DELIMITERS", "MSH-2 repeats delimiters"),
    "hl7apy-msh-empty-encoding-chars.hl7": ("AR", "HL7-DELIMITERS", "MSH-2 empty"),
    "hl7apy-msh-three-encoding-chars-v27.hl7": ("AR", "HL7-DELIMITERS", "MSH-2 has 3 characters"),
    "hl7apy-msh-too-many-encoding-chars.hl7": ("AR", "HL7-DELIMITERS", "MSH-2 too long"),
    "hl7apy-msh9-message-type-missing.hl7": ("AR", "HL7-MSH-9-MISSING", "no message type"),
    "lfh-adt-a01-msh2-double-backslash.hl7": ("AR", "HL7-DELIMITERS", "MSH-2 repeats the escape"),
    "python-hl7-batch-nested-bhs.hl7": ("AR", "HL7-MSH-MISSING", "a batch (BHS), not a message"),
    "python-hl7-batch-without-msh.hl7": ("AR", "HL7-MSH-MISSING", "a batch without MSH"),
}

# file → (rule code that must be among ERR-5, why) on the production-defaults source.
# Every US/Canadian example lacks a Norwegian person number; that is reason enough.
_NO_NORWEGIAN_ID = ("PID-MISSING", "no fødselsnummer/D-nummer/H-nummer in PID-3 (foreign example)")


def _expected_strict(name: str) -> tuple[str, str] | None:
    if name in HL7_REJECTED:
        return HL7_REJECTED[name][1], HL7_REJECTED[name][2]
    return _NO_NORWEGIAN_ID


_ERR_CODE = re.compile(r"^ERR\|[^|]*\|[^|]*\|[^|]*\|([EWI])\|([^^|]*)", re.M)


def _verdict(ack: bytes) -> tuple[str, list[str], list[str]]:
    """MSA-1, the rule codes of ERR with severity E, and all ERR rule codes."""
    text = ack.decode("utf-8", "replace").replace("\r", "\n")
    errs = _ERR_CODE.findall(text)
    return field(ack, "MSA", 1), [c for s, c in errs if s == "E"], [c for _, c in errs]


RANKS = 6   # at most this many corpus files share one MSH-10 (different vendors' examples)


@pytest.fixture
async def gateway(gateway_factory):
    """Listeners ``field-<n>``/``hl7-<n>`` for source systems of the same names.

    Examples from different projects reuse control ids (MSG00018 six times);
    sent from one source they would be DUPLICATE-CONTROL-ID-CONFLICT, so the
    n-th file with a given MSH-10 comes from the n-th source, as it would in
    the field (control ids are unique per sender, not globally).
    """
    cfg = base_config(pull=False)
    for mode, rules in (("field", {}), ("hl7", CONTENT_RULES)):
        for n in range(1, RANKS + 1):
            cfg["systems"].append({"name": f"{mode}-{n}", "roles": ["lis"], "rules": rules})
            cfg["listeners"].append({"name": f"{mode}-{n}", "protocol": "mllp",
                                     "host": "127.0.0.1", "port": 0, "system": f"{mode}-{n}"})
    return await gateway_factory(cfg)


def _ranked(files) -> list[list]:
    """Files split so that no two in one list share MSH-10."""
    from mappings.hl7v2.parser import Hl7ParseError, parse
    ranks: list[list] = [[] for _ in range(RANKS)]
    seen: dict[str, int] = {}
    for p in files:
        try:
            cid = parse(p.read_bytes()).control_id
        except Hl7ParseError:
            cid = p.name
        rank = seen.get(cid, 0) if cid else 0
        seen[cid] = rank + 1
        ranks[rank].append(p)
    return ranks


async def _send_all(gw, mode: str, files) -> dict[str, bytes]:
    out = {}
    for n, group in enumerate(_ranked(files), 1):
        if group:
            port = gw.listeners[f"{mode}-{n}"].port
            replies = await mllp_exchange("127.0.0.1", port, [p.read_bytes() for p in group],
                                          timeout=30)
            out.update({p.name: r for p, r in zip(group, replies)})
    return out


async def test_every_valid_corpus_message_is_accepted_or_rejected_for_a_listed_reason(
        gateway, corpus):
    files = sorted((corpus / "hl7v2" / "valid").glob("*.hl7"))
    assert len(files) >= 60
    hl7 = await _send_all(gateway, "hl7", files)
    strict = await _send_all(gateway, "field", files)
    counts = {"hl7 accepted": 0, "hl7 rejected-expected": 0,
              "strict accepted": 0, "strict rejected-expected": 0}
    problems = []
    for p in files:
        code, errors, _ = _verdict(hl7[p.name])
        if p.name in HL7_REJECTED:
            want_code, want_rule, _why = HL7_REJECTED[p.name]
            if code != want_code or want_rule not in errors:
                problems.append(f"hl7 {p.name}: {code} {errors}, expected {want_code} {want_rule}")
            counts["hl7 rejected-expected"] += 1
        elif code != "AA" or errors:
            problems.append(f"hl7 {p.name}: {code} {errors}, expected AA")
        else:
            counts["hl7 accepted"] += 1
        code, errors, _ = _verdict(strict[p.name])
        expected = _expected_strict(p.name)
        if expected is None:
            counts["strict accepted"] += code == "AA"
        elif code not in ("AE", "AR") or expected[0] not in errors:
            problems.append(f"strict {p.name}: {code} {errors}, expected {expected[0]}")
        else:
            counts["strict rejected-expected"] += 1
    print("\nconformance counts:", counts)
    assert problems == []
    stored = await gateway.pool.fetch(
        "SELECT source, status, count(*) AS n FROM message GROUP BY 1, 2 ORDER BY 1, 2")
    by: dict[tuple, int] = {}
    for r in stored:
        key = (r["source"].split("-")[0], r["status"])
        by[key] = by.get(key, 0) + r["n"]
    assert by.get(("hl7", "rejected"), 0) + by.get(("hl7", "unrouted"), 0) == len(files)
    assert by.get(("field", "rejected"), 0) + by.get(("field", "unrouted"), 0) == len(files)
    assert by.get(("hl7", "unrouted"), 0) == counts["hl7 accepted"]
    assert counts["hl7 accepted"] >= 40


async def test_every_invalid_corpus_message_gets_a_negative_ack(gateway, corpus):
    files = sorted((corpus / "hl7v2" / "invalid").glob("*.hl7"))
    assert files
    replies = await _send_all(gateway, "field", files)
    for p in files:
        code, errors, _ = _verdict(replies[p.name])
        want_code, want_rule, _why = INVALID[p.name]
        assert (code, want_rule in errors) == (want_code, True), (p.name, code, errors)
        assert segments(replies[p.name], "MSH"), p.name
    print("\ninvalid corpus: all", len(files), "rejected with a negative ACK")
