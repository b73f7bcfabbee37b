"""QC lockout and operator certification, driven by the core's lookups."""
from datetime import timedelta

from gateway.validation import QcState


def _poc(h, operator="OP017", device="AF2-000987", code="NPU19748"):
    b = h.B()
    pat = b.patient()
    sp = b.specimen(patient=pat)
    perf = b.practitioner(operator, "urn:labgate:operator:POCDM") if operator else None
    dev = b.device(device) if device else None
    b.observation(code, 27, "mg/L", patient=pat, specimen=sp, performer=perf, device=dev)
    return b.bundle()


def test_skipped_without_lookups(h):
    assert h.codes(_poc(h, operator=None, device=None)) == []


def test_qc_passed_recently_is_fine(h):
    seen = []

    def qc(device, analysis):
        seen.append((device, analysis))
        return QcState(h.NOW - timedelta(hours=2))
    assert h.codes(_poc(h), h.ctx(qc_state=qc)) == []
    assert seen == [("AF2-000987", "NPU19748")]


def test_qc_failed_overdue_or_missing_locks_out(h):
    cases = {
        "failed": QcState(h.NOW - timedelta(hours=1), last_failed=True),
        "overdue": QcState(h.NOW - timedelta(days=2)),     # CRP interval 1440 min
        "missing": None,
    }
    for state_word, state in cases.items():
        issues = h.validate(_poc(h), h.ctx(qc_state=lambda d, a, s=state: s))
        assert [(i.code, i.severity) for i in issues] == [("QC-LOCKOUT", "error")], state_word
        assert state_word in issues[0].text


def test_qc_interval_judged_at_analysis_time(h):
    # analysed 09:30; last QC 09:00 the day before = 24.5 h earlier
    state = QcState(h.NOW - timedelta(hours=25))
    assert h.codes(_poc(h), h.ctx(qc_state=lambda d, a: state)) == ["QC-LOCKOUT"]


def test_no_device_no_qc_judgement(h):
    assert h.codes(_poc(h, device=None), h.ctx(qc_state=lambda d, a: None)) == []


def test_operator_certified_by_mapping_or_callable(h):
    bundle = _poc(h)
    assert h.codes(bundle, h.ctx(operator_certified={"OP017": {"NPU19748"}})) == []
    assert h.codes(bundle, h.ctx(operator_certified={"OP017": {"*"}})) == []
    assert h.codes(bundle, h.ctx(operator_certified=lambda op, a, at: op == "OP017")) == []


def test_uncertified_or_unknown_operator_is_rejected(h):
    bundle = _poc(h)
    for lookup in ({"OP017": {"NPU27300"}}, {}, lambda op, a, at: False):
        issues = h.validate(bundle, h.ctx(operator_certified=lookup))
        assert [(i.code, i.severity) for i in issues] == [("OPERATOR-NOT-CERTIFIED", "error")]
    no_operator = _poc(h, operator=None)
    assert h.codes(no_operator, h.ctx(operator_certified={"OP017": {"*"}})) == \
        ["OPERATOR-NOT-CERTIFIED"]


def test_certificate_checked_at_analysis_time(h):
    expiry = h.NOW - timedelta(minutes=20)          # 09:40; analysis was 09:30

    def certified(op, analysis, at):
        return at <= expiry
    assert h.codes(_poc(h), h.ctx(operator_certified=certified)) == []
