"""Patient identifier rules (DOMAIN.md §1.1, §1.2, §4.1)."""
from __future__ import annotations

from typing import Iterator, NamedTuple

from mappings import identifiers as ids
from mappings import systems

from .bundle_view import as_list, LOCAL_TZ, BundleView, view_of
from .registry import rule

# identifier.system -> the kind of number it must hold (preferred OIDs and
# the non-preferred NamingSystem URIs, DOMAIN.md §1.1).
PERSON_SYSTEMS = {
    systems.FNR: ids.FNR, "http://hl7.no/fhir/NamingSystem/FNR": ids.FNR,
    systems.DNR: ids.DNR, "http://hl7.no/fhir/NamingSystem/DNR": ids.DNR,
    systems.FHNR: ids.FHNR, "http://hl7.no/fhir/NamingSystem/FHNR": ids.FHNR,
    systems.HNR: ids.HNR,
}
_PATIENT_DATA = ("Patient", "Observation", "ServiceRequest", "Specimen", "DiagnosticReport")
_SUBJECT_OF = ("Observation", "ServiceRequest", "Specimen", "DiagnosticReport")
_KIND_NB = {ids.FNR: "fødselsnummer", ids.DNR: "D-nummer", ids.HNR: "H-nummer",
            ids.FHNR: "felles hjelpenummer"}


class PersonId(NamedTuple):
    location: str
    expected: str        # kind the system says
    value: str
    has_assigner: bool
    check: ids.IdCheck


def _identifiers(view: BundleView) -> Iterator[tuple[str, dict]]:
    for i, res in view.of_type("Patient"):
        for n, ident in enumerate(as_list(res.get("identifier"))):
            yield f"Bundle.entry[{i}].resource.identifier[{n}]", ident
    for rtype in _SUBJECT_OF:
        for i, res in view.of_type(rtype):
            subj = res.get("subject")
            if isinstance(subj, dict) and "reference" not in subj:
                yield f"Bundle.entry[{i}].resource.subject.identifier", subj.get("identifier")


def person_ids(view: BundleView, ctx) -> list[PersonId]:
    """Every person identifier in the bundle with its check (cached on the view)."""
    if view._person_ids is None:
        today = ctx.now.astimezone(LOCAL_TZ).date()
        found = []
        for loc, ident in _identifiers(view):
            if not isinstance(ident, dict):
                continue
            system, value = ident.get("system"), ident.get("value")
            expected = PERSON_SYSTEMS.get(system) if isinstance(system, str) else None
            if expected is None or not isinstance(value, str):
                continue
            check = ids.check_person_number(value.strip(), today,
                                            allow_synthetic=ctx.allow_synthetic_ids)
            found.append(PersonId(loc, expected, value, bool(ident.get("assigner")), check))
        view._person_ids = found
    return view._person_ids


@rule("PID-MISSING", "error",
      en="The message has no patient identifier (fødselsnummer, D-number, H-number or FH-number).",
      nb="Meldingen mangler pasientidentifikator (fødselsnummer, D-nummer, H-nummer eller FH-nummer).")
def pid_missing(bundle, ctx):
    """A bundle with patient data carries at least one Norwegian person identifier."""
    view = view_of(bundle, ctx)
    if person_ids(view, ctx) or not any(view.of_type(t) for t in _PATIENT_DATA):
        return
    at = view.of_type("Patient")
    loc = f"Bundle.entry[{at[0][0]}].resource.identifier" if at else "Bundle.entry"
    yield pid_missing.issue(loc)


@rule("PID-FORMAT", "error",
      en="Patient identifier is not 11 digits.",
      nb="Pasientidentifikatoren er ikke 11 siffer.")
def pid_format(bundle, ctx):
    """A person identifier is exactly 11 ASCII digits."""
    for p in person_ids(view_of(bundle, ctx), ctx):
        if p.check.reason == ids.REASON_FORMAT:
            yield pid_format.issue(p.location)


@rule("PID-KIND-MISMATCH", "error",
      en="Patient identifier is a {kind} but is sent as a {expected}.",
      nb="Pasientidentifikatoren er et {kind_nb}, men er sendt som {expected_nb}.")
def pid_kind_mismatch(bundle, ctx):
    """The number's kind (day/month offsets) matches its identifier system."""
    for p in person_ids(view_of(bundle, ctx), ctx):
        kind = p.check.kind
        if kind != ids.UNKNOWN and kind != p.expected:
            yield pid_kind_mismatch.issue(
                p.location, kind=kind, expected=p.expected,
                kind_nb=_KIND_NB[kind], expected_nb=_KIND_NB[p.expected])


@rule("PID-FNR-CHECKSUM", "error",
      en="The check digits of the patient's {kind} are wrong (mod 11).",
      nb="Kontrollsifrene i pasientens {kind_nb} stemmer ikke (modulus 11).")
def pid_checksum(bundle, ctx):
    """Both mod-11 check digits of an FNR, D-, H- or FH-number are right."""
    for p in person_ids(view_of(bundle, ctx), ctx):
        if p.check.reason == ids.REASON_CHECKSUM:
            yield pid_checksum.issue(p.location, kind=p.check.kind,
                                     kind_nb=_KIND_NB[p.check.kind])


@rule("PID-DATE", "error",
      en="The patient's {kind} holds no valid birth date, or a birth date in the future.",
      nb="Pasientens {kind_nb} har ingen gyldig fødselsdato, eller en fødselsdato fram i tid.")
def pid_date(bundle, ctx):
    """The birth date (after removing D/H offsets, century from the individual
    number) exists and is not after today."""
    for p in person_ids(view_of(bundle, ctx), ctx):
        if p.check.reason in (ids.REASON_DATE, ids.REASON_FUTURE):
            yield pid_date.issue(p.location, kind=p.check.kind, kind_nb=_KIND_NB[p.check.kind])


@rule("PID-SYNTHETIC", "error",
      en="The patient identifier is a synthetic test number (Tenor), not accepted from this source.",
      nb="Pasientidentifikatoren er et syntetisk testnummer (Tenor), som ikke godtas fra denne avsenderen.")
def pid_synthetic(bundle, ctx):
    """Tenor test numbers (month + 80) only where allow_synthetic_ids is set."""
    for p in person_ids(view_of(bundle, ctx), ctx):
        if p.check.reason == ids.REASON_SYNTHETIC:
            yield pid_synthetic.issue(p.location)


@rule("PID-HNR-ASSIGNER", "warning",
      en="An H-number is only unique with its assigner, and none is given.",
      nb="Et H-nummer er bare entydig sammen med utsteder, og utsteder mangler.")
def pid_hnr_assigner(bundle, ctx):
    """An H-number (local, not nationally unique) carries identifier.assigner."""
    for p in person_ids(view_of(bundle, ctx), ctx):
        if p.expected == ids.HNR and not p.has_assigner:
            yield pid_hnr_assigner.issue(p.location)
