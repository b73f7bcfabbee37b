"""Order linking adds ``basedOn`` references to a stored result bundle after
intake (the ``orders`` destination). An MLLP destination routed beside it may
read the bundle before or after that, so the outbound ORU^R01 must not depend
on it: linking appends, and the outbound writer uses only ``basedOn[0]``,
resolved inside the bundle."""
from __future__ import annotations

import copy
from datetime import datetime, timezone

import pytest

from bench.messages import oru_r01
from gateway.fhir.linking import _enriched
from mappings.hl7v2.from_fhir import bundle_to_oru_r01
from mappings.hl7v2.parser import parse
from mappings.hl7v2.to_fhir import to_bundle
from support import corpus_oru_r01_files

ORDER_IDS = ["7d6f0f3e-1d3a-4c8e-9a55-0b0c6e0f1a01", "7d6f0f3e-1d3a-4c8e-9a55-0b0c6e0f1a02"]
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)


def _outbound(bundle: dict) -> bytes:
    return bundle_to_oru_r01(bundle, control_id="LG1", timestamp=NOW, sending_app="LABGATE",
                             sending_facility="KOMMUNE", receiving_app="lis")


def _bundle(raw: bytes) -> dict | None:
    return to_bundle(parse(raw))[0]


def _assert_same_outbound(bundle: dict) -> None:
    linked = _enriched(copy.deepcopy(bundle), ORDER_IDS)
    assert linked != bundle, "linking added nothing: the test would prove nothing"
    assert _outbound(linked) == _outbound(bundle)


def test_benchmark_result_goes_out_the_same_linked_or_not():
    _assert_same_outbound(_bundle(oru_r01("K-1", 1)))


def test_result_without_an_order_goes_out_the_same_linked_or_not():
    bundle = _bundle(oru_r01("K-2", 2))
    for e in bundle["entry"]:
        e["resource"].pop("basedOn", None)
    _assert_same_outbound(bundle)


@pytest.mark.parametrize("path", corpus_oru_r01_files(), ids=lambda p: p.name)
def test_corpus_result_goes_out_the_same_linked_or_not(path):
    bundle = _bundle(path.read_bytes())
    if bundle is None:
        pytest.skip("an invalid message the mapping refuses")
    if not any(e["resource"]["resourceType"] in ("DiagnosticReport", "Observation")
               for e in bundle["entry"]):
        pytest.skip("no results to link")
    _assert_same_outbound(bundle)
