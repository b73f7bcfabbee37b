"""The public FHIR corpus against the API. Every example the API accepts must
round-trip (read back with nothing lost or changed); every example it rejects
is listed here with the reason, gets an OperationOutcome, and changes nothing.

Why most are rejected: the corpus is the international R4 example set, and the
gateway enforces Norwegian order and result rules (a person number for the
patient, NLK-coded analyses known to the tables, a sampling time, a
requester-defined identifier for idempotent orders), and accepts only
transaction Bundles."""
from __future__ import annotations

import orjson

from corpus_probe import masked, contains, reasons, submit
from fhirkit import counts

ACCEPTED = {"r4/Observation-bgpanel.json", "r4/Observation-f005.json"}

NOT_TRANSACTION = {"FHIR-BUNDLE-TYPE"}
REJECTED: dict[str, set[str]] = {
    **{f"r4/Bundle-{n}.json": NOT_TRANSACTION
       for n in ("101", "f001", "f202", "ghp", "lipids", "lri-example", "micro")},
    "r4/Bundle-bundle-transaction.json": {"FHIR-RESOURCE-TYPE"},   # Parameters, DELETE/GET entries
    **{f"r4/Observation-{n}.json": {"ANALYSIS-UNKNOWN"}            # LOINC codes outside the tables
       for n in ("bloodgroup", "f001", "f002", "f003", "f004", "rhstatus", "unsat")},
    "r4/Observation-f205.json": {"ANALYSIS-UNKNOWN", "COLLECTION-TIME-MISSING"},
    "r4/Observation-f206.json": {"ANALYSIS-UNKNOWN", "COLLECTION-TIME-MISSING"},
    "r4/ObservationDefinition-example.json": {"FHIR-RESOURCE-TYPE"},
    "r4/SpecimenDefinition-2364.json": {"FHIR-RESOURCE-TYPE"},
    **{f"r4/Patient-{n}.json": {"ORDER-NONE"} for n in ("example", "f001", "pat2")},
    **{f"r4/Specimen-{n}.json": {"ORDER-NONE"}
       for n in ("101", "isolate", "pooled-serum", "sst", "vma-urine")},
    # Patient/example is not in the request; no person number; not active / no identifier.
    "r4/ServiceRequest-ft4.json": {"PID-MISSING", "ORDER-IDENTIFIER-MISSING", "ORDER-INTENT"},
    "r4/ServiceRequest-lipid.json": {"PID-MISSING", "ORDER-NOT-ROUTABLE"},
    "r4/ServiceRequest-og-example1.json": {"PID-MISSING", "ORDER-IDENTIFIER-MISSING"},
    "r4/ServiceRequest-subrequest.json": {"PID-MISSING", "ORDER-IDENTIFIER-MISSING"},
    # Tasks in the corpus are not claims (status/focus).
    **{f"r4/Task-example{n}.json": {"TASK-CLAIM"} for n in (1, 2, 4, 5, 6)},
    "r5/msfhirserver-R5-BloodGlucose.json": {"ANALYSIS-UNKNOWN"},
    "r5/msfhirserver-R5-ObservationDefinition-example.json": {"FHIR-RESOURCE-TYPE"},
    "r5/msfhirserver-R5-Specimen.json": {"FHIR-UNKNOWN-ELEMENT"},  # R5 elements are not R4
    **{f"r4-converted/{n}": NOT_TRANSACTION for n in (
        "cdc-rs-oml-o21-20240319-expected.json", "cdc-rs-orm-o01-20230809-expected.json",
        "cdc-rs-oru-r01-newborn-screening-expected.json", "msfhirconv-LAB-ORU-1-expected.json",
        "msfhirconv-LRI_2.0-NG_CBC_Typ_Message-expected.json", "msfhirconv-MDHHS-OML-O21-1-expected.json",
        "msfhirconv-ORU-R01-RMGEAD-expected.json", "msfhirconv-OUL-R22-02-expected.json")},
}


async def test_corpus_examples_round_trip_or_are_rejected_with_reason(fhir_gw, corpus):
    gw, c = fhir_gw
    accepted, seen = set(), set()
    for folder in ("r4", "r5", "r4-converted"):
        for path in sorted((corpus / "fhir" / folder).glob("*.json")):
            name = f"{folder}/{path.name}"
            seen.add(name)
            sent = orjson.loads(path.read_bytes())
            before = await counts(gw.pool)
            status, body, who = await submit(c, sent)
            if status in (200, 201):
                accepted.add(name)
                await _round_trip(c[who], sent, body)
                continue
            assert status in (400, 422), (name, status)
            assert body["resourceType"] == "OperationOutcome"
            assert name in REJECTED, f"{name} rejected for {reasons(body)}: list it with its reason"
            assert REJECTED[name] <= reasons(body), (name, reasons(body))
            assert await counts(gw.pool) == before, name
    assert accepted == ACCEPTED
    assert seen == ACCEPTED | set(REJECTED)


async def _round_trip(client, sent: dict, response: dict) -> None:
    """Read each created resource back: everything sent is there, unchanged."""
    created = [e["response"]["location"].split("/_history")[0] for e in response["entry"]
               if e.get("response", {}).get("status", "").startswith("201")]
    by_type = {}
    for loc in created:
        status, stored, _ = await client.get(f"/fhir/{loc}")
        assert status == 200, loc
        by_type.setdefault(stored["resourceType"], []).append(stored)
    [stored] = by_type[sent["resourceType"]]
    expected = masked(sent)
    assert contains(masked(stored), expected), (sent.get("id"), stored)
