"""Fuzz targets: one function per untrusted entry point, ``target(data: bytes)``.

Each feeds the bytes through the real parser (and mapping) and lets only the
documented refusals through (a parse error with a code, a negative ACK, a
validation error). Anything else escaping is a crash: the fuzzer reports it
and the input becomes a regression test in tests/fuzz/test_regressions.py.
The same functions are driven by hypothesis (test_properties.py) and by
atheris (harness.py).
"""
from __future__ import annotations

import orjson

from adapters.astm.e1381 import Receiver
from adapters.astm.e1394 import AstmParseError, parse_messages
from adapters.poct1a import GatewayConversation, PoctXmlError, StreamSplitter, parse_message
from adapters.poct1a.conversation import ObservationReceived
from gateway.security import JsonLimitError, load_json
from gateway.fhir import intake
from gateway.fhir.routes import ORDER_TYPES, RESULT_TYPES
from mappings.astm.to_fhir import astm_to_bundle
from mappings.hl7v2.parser import Hl7ParseError, parse
from mappings.hl7v2.to_fhir import to_bundle
from mappings.issue import Issue
from mappings.poct1a.to_fhir import poct_to_bundle


def _check_bundle(bundle: dict, issues: list) -> None:
    """What every mapping promises: a serialisable Bundle and Issue objects."""
    assert isinstance(bundle, dict) and bundle.get("resourceType") == "Bundle", bundle
    orjson.dumps(bundle)
    assert all(isinstance(i, Issue) for i in issues)


def hl7v2(data: bytes) -> None:
    """HL7 v2: lean parser, then the mapping to a FHIR bundle."""
    try:
        msg = parse(data)
    except Hl7ParseError:
        return
    bundle, issues = to_bundle(msg)
    _check_bundle(bundle, issues)


def astm(data: bytes) -> None:
    """ASTM: E1381 receiver state machine (in two chunks), E1394 records, mapping."""
    rx = Receiver()
    cut = len(data) // 2
    actions = rx.feed(data[:cut]) + rx.feed(data[cut:]) + rx.timeout()
    assert isinstance(actions, list)
    try:
        messages = parse_messages(data)
    except AstmParseError:
        return
    for msg in messages:
        bundle, issues, qc = astm_to_bundle(msg, code_map={})
        _check_bundle(bundle, issues)
        assert isinstance(qc, list)


def poct1a(data: bytes) -> None:
    """POCT1-A: hardened XML parse + mapping, stream splitter, gateway conversation."""
    try:
        msg = parse_message(data)
    except PoctXmlError:
        msg = None
    if msg is not None:
        bundle, issues, qc = poct_to_bundle(msg, code_map={})
        _check_bundle(bundle, issues)
    splitter = StreamSplitter()
    try:
        for i in range(0, len(data), 97):
            assert all(isinstance(m, bytes) for m in splitter.feed(data[i:i + 97]))
    except PoctXmlError:
        pass
    conv = GatewayConversation()
    events = conv.receive_data(data)
    for ev in events:
        if isinstance(ev, ObservationReceived):
            conv.acknowledge_observation(ev.control_id, True)
    assert isinstance(conv.data_to_send(), bytes)
    conv.timeout()
    conv.connection_lost()


def fhir_json(data: bytes) -> None:
    """FHIR JSON as the API takes it: the safe loader, then the intake checks
    the order and result endpoints run (gateway.fhir.intake)."""
    try:
        value = load_json(data, max_depth=64, max_bytes=1 << 20)
    except JsonLimitError:
        return
    if not isinstance(value, dict):
        return
    if value.get("resourceType") == "Bundle":     # what POST /fhir runs (references included)
        problems = intake.check_bundle(value, ORDER_TYPES | RESULT_TYPES)
    else:                                          # what POST /fhir/ServiceRequest runs
        problems = intake.check_resource(value, "Resource")
        if not problems:
            problems = intake.resource_references(value, "Resource")
    assert all(isinstance(p, Issue) for p in problems)


TARGETS = {"hl7v2": hl7v2, "astm": astm, "poct1a": poct1a, "fhir_json": fhir_json}
