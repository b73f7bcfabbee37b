"""Patient identifier and HPR rules."""
import pytest

from mappings import systems

VALID = [("13116900216", systems.FNR), ("12057900499", systems.FNR),
         ("41019044120", systems.DNR), ("12528510033", systems.HNR),
         ("41019044120", "http://hl7.no/fhir/NamingSystem/DNR")]


@pytest.mark.parametrize("value,system", VALID)
def test_valid_patient_ids_pass(h, value, system):
    b = h.B()
    pat = b.patient(value, system, assigner="EPJ-X" if system == systems.HNR else None)
    sp = b.specimen(patient=pat)
    b.observation(patient=pat, specimen=sp)
    assert h.codes(b.bundle()) == []


@pytest.mark.parametrize("value,system,code", [
    ("13057444850", systems.FNR, "PID-FNR-CHECKSUM"),    # no-basis example, fails mod 11
    ("13116900217", systems.FNR, "PID-FNR-CHECKSUM"),
    ("41019044121", systems.DNR, "PID-FNR-CHECKSUM"),
    ("1311690021", systems.FNR, "PID-FORMAT"),
    ("13116900216", systems.DNR, "PID-KIND-MISMATCH"),
    ("41019044120", systems.FNR, "PID-KIND-MISMATCH"),
])
def test_bad_patient_ids_are_errors(h, value, system, code):
    b = h.B()
    pat = b.patient(value, system)
    b.observation(patient=pat, specimen=b.specimen(patient=pat))
    issues = h.validate(b.bundle(), h.ctx())
    hit = [i for i in issues if i.code == code]
    assert hit and hit[0].severity == "error" and hit[0].rejects
    assert hit[0].location == "Bundle.entry[0].resource.identifier[0]"
    assert value not in hit[0].text and value not in hit[0].text_nb   # no ids in texts


def _valid_with_prefix(prefix6, individuals):
    from mappings.identifiers import person_check_digits
    for ind in individuals:
        k = person_check_digits(f"{prefix6}{ind:03d}")
        if k:
            return f"{prefix6}{ind:03d}{k}"


def test_future_birth_date_is_pid_date(h):
    future = _valid_with_prefix("010126", range(500, 1000))   # 2026-01-01, after NOW
    b = h.B()
    pat = b.patient(future)
    b.observation(patient=pat, specimen=b.specimen())
    assert "PID-DATE" in h.codes(b.bundle())


def test_tenor_number_follows_the_flag(h):
    tenor = _valid_with_prefix("018190", range(0, 500))
    b = h.B()
    pat = b.patient(tenor)
    b.observation(patient=pat, specimen=b.specimen())
    bundle = b.bundle()
    assert h.codes(bundle) == ["PID-SYNTHETIC"]
    assert h.codes(bundle, h.ctx(allow_synthetic_ids=True)) == []


def test_missing_patient_identifier(h):
    b = h.B()
    pat = b.patient("123", "urn:labgate:local-mrn")
    b.observation(patient=pat, specimen=b.specimen())
    assert h.codes(b.bundle()) == ["PID-MISSING"]
    only_obs = h.B()
    only_obs.observation(specimen=only_obs.specimen())
    assert h.codes(only_obs.bundle()) == ["PID-MISSING"]


def test_logical_subject_identifier_counts(h):
    b = h.B()
    b.observation(patient={"identifier": {"system": systems.FNR, "value": "13116900216"}},
                  specimen=b.specimen())
    assert h.codes(b.bundle()) == []
    b = h.B()
    b.observation(patient={"identifier": {"system": systems.FNR, "value": "13116900217"}},
                  specimen=b.specimen())
    issues = h.validate(b.bundle(), h.ctx())
    assert [(i.code, i.location) for i in issues] == [
        ("PID-FNR-CHECKSUM", "Bundle.entry[1].resource.subject.identifier")]


def test_h_number_without_assigner_warns(h):
    b = h.B()
    pat = b.patient("12528510033", systems.HNR)
    b.observation(patient=pat, specimen=b.specimen())
    issues = h.validate(b.bundle(), h.ctx())
    assert [(i.code, i.severity) for i in issues] == [("PID-HNR-ASSIGNER", "warning")]


@pytest.mark.parametrize("hpr,ok", [("9144889", True), ("12345678", True), ("123456789", True),
                                     ("123456", False), ("1234567890", False), ("91448A9", False)])
def test_requester_hpr_format(h, hpr, ok):
    b = h.B()
    pat = b.patient()
    b.service_request(pat, requester=b.practitioner(hpr))
    b.observation(patient=pat, specimen=b.specimen())
    assert h.codes(b.bundle()) == ([] if ok else ["HPR-FORMAT"])


def test_performer_hpr_as_logical_reference(h):
    b = h.B()
    pat = b.patient()
    b.observation(patient=pat, performer={"identifier": {"system": systems.HPR, "value": "12"}},
                  specimen=b.specimen())
    issues = h.validate(b.bundle(), h.ctx())
    assert [(i.code, i.location) for i in issues] == [
        ("HPR-FORMAT", "Bundle.entry[2].resource.performer[0].identifier.value")]


def test_non_hpr_practitioner_ids_are_not_judged(h):
    b = h.B()
    pat = b.patient()
    b.observation(patient=pat, performer=b.practitioner("OP017", "urn:labgate:operator:POCDM"),
                  specimen=b.specimen())
    assert h.codes(b.bundle()) == []
