"""Inputs that once crashed a fuzz target; each must now be refused cleanly."""
from __future__ import annotations

import pytest

from adapters.poct1a import GatewayConversation, PoctXmlError, StreamSplitter, parse_message
from adapters.poct1a.xml import XML_MALFORMED
from gateway.fhir.intake import check_bundle, check_resource
from gateway.fhir.routes import ORDER_TYPES, RESULT_TYPES
from targets import TARGETS

_POCT_BODY = b'<OBS.R01><HDR><HDR.control_id V="101"/><HDR.version_id V="POCT1"/></HDR></OBS.R01>'


@pytest.mark.parametrize("encoding", [b"UTF-9", b"UTF-6", b"UTF-7", b"x-no-such-codec"])
def test_poct_xml_declaring_an_unusable_encoding_is_malformed_not_a_crash(encoding):
    # LookupError (unknown codec) and ValueError (multi-byte codec) escaped the
    # XML parse and the stream splitter (atheris, poct1a target).
    data = b'<?xml version="1.0" encoding="' + encoding + b'"?>' + _POCT_BODY
    with pytest.raises(PoctXmlError) as e:
        parse_message(data)
    assert e.value.code == XML_MALFORMED
    with pytest.raises(PoctXmlError):
        StreamSplitter().feed(data)
    conv = GatewayConversation()
    conv.receive_data(data)            # a protocol error for the device, not an exception
    assert conv.data_to_send() is not None


def test_unknown_resource_type_in_a_bundle_entry_is_refused():
    # fhir.resources raised KeyError('R4.taeiPntType') (atheris, fhir_json target);
    # the API checks bundle entries one by one, as here.
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"resource": {"resourceType": "taeiPnt"},
                         "request": {"method": "POST", "url": "Patient"}}]}
    assert check_resource(bundle, "Bundle") == []
    assert [p.code for p in check_bundle(bundle, ORDER_TYPES | RESULT_TYPES)] == ["FHIR-RESOURCE-TYPE"]


def test_nested_unknown_resource_type_is_a_validation_problem():
    resource = {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
                "subject": {"reference": "Patient/1"}, "contained": [{"resourceType": "Nope"}]}
    problems = check_resource(resource, "Resource")
    assert [p.code for p in problems] == ["FHIR-STRUCTURE"]
    assert "Unknown nested resource type" in problems[0].text


@pytest.mark.parametrize("name", sorted(TARGETS))
@pytest.mark.parametrize("data", [b"", b"\x00" * 64, b"\xff\xfe", b"<" * 5000, b"[" * 5000,
                                  b"MSH|" + b"^" * 10000, b"\x05\x02" + b"1" * 70000 + b"\x03"])
def test_targets_survive_degenerate_inputs(name, data):
    TARGETS[name](data)
