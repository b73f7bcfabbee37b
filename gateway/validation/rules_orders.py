"""Order rules: required fields of a laboratory order (issue 5, Orders).

An order is a ServiceRequest in a bundle that carries no result
Observations (an order bundle from the FHIR intake or an ORM/OML mapping).
ServiceRequests inside result messages (ORU OBR) describe what was done
and are not judged here.
"""
from __future__ import annotations

from typing import NamedTuple

from mappings.tables_loader import Analysis

from .bundle_view import BundleView, analysis_of, as_list, codings, specimen_system, view_of
from .registry import rule



class OrderInfo(NamedTuple):
    index: int
    resource: dict
    analysis: Analysis | None
    codes: list[str]

    @property
    def path(self) -> str:
        return f"Bundle.entry[{self.index}].resource"


def order_requests(view: BundleView, ctx) -> list[OrderInfo]:
    """The bundle's orders (see module doc), with their analyses."""
    if view.observations:
        return []
    out = []
    for i, res in view.of_type("ServiceRequest"):
        a, codes = analysis_of(res.get("code"), ctx.tables)
        out.append(OrderInfo(i, res, a, codes))
    return out


def _present(ref) -> bool:
    """A Reference that points somewhere: a reference string or a logical identifier value."""
    if not isinstance(ref, dict):
        return False
    r = ref.get("reference")
    if isinstance(r, str) and r.strip():
        return True
    ident = ref.get("identifier")
    v = ident.get("value") if isinstance(ident, dict) else None
    return isinstance(v, str) and bool(v.strip())


def _is_referred(view: BundleView, sr: dict) -> bool:
    """The order goes to another laboratory: a performer that is an Organization."""
    for ref in as_list(sr.get("performer")):
        if not isinstance(ref, dict):
            continue
        target = view.resolve(ref)
        if target is not None and target[1].get("resourceType") == "Organization":
            return True
        r = ref.get("reference")
        if ref.get("type") == "Organization" or (isinstance(r, str) and r.startswith("Organization/")):
            return True
    return False


def _specimens_of(view: BundleView, index: int, sr: dict) -> list[dict]:
    found = [t[1] for ref in as_list(sr.get("specimen"))
             if (t := view.resolve(ref)) is not None and t[1].get("resourceType") == "Specimen"]
    if found:
        return found
    own = {f"ServiceRequest/{sr['id']}"} if isinstance(sr.get("id"), str) else set()
    own |= {url for url, (i, _) in view.by_ref.items() if i == index}
    for _, sp in view.of_type("Specimen"):
        for ref in as_list(sp.get("request")):
            if isinstance(ref, dict) and ref.get("reference") in own:
                found.append(sp)
    if not found:
        only = view.of_type("Specimen")
        found = [only[0][1]] if len(only) == 1 else []
    return found


def _has_type(specimen: dict) -> bool:
    return any(specimen_system(c.get("system")) is not None and isinstance(c.get("code"), str)
               for c in codings(specimen.get("type")))


@rule("ORDER-PATIENT-MISSING", "error",
      en="The order does not say which patient it is for (ServiceRequest.subject).",
      nb="Rekvisisjonen mangler pasient (ServiceRequest.subject).")
def order_patient_missing(bundle, ctx):
    """Every order names its patient: a subject reference or identifier."""
    for o in order_requests(view_of(bundle, ctx), ctx):
        if not _present(o.resource.get("subject")):
            yield order_patient_missing.issue(f"{o.path}.subject")


@rule("ORDER-REQUESTER-MISSING", "error",
      en="The order has no requester (ServiceRequest.requester).",
      nb="Rekvisisjonen mangler rekvirent (ServiceRequest.requester).")
def order_requester_missing(bundle, ctx):
    """Every order names its requester (a reference or identifier, e.g. HPR)."""
    for o in order_requests(view_of(bundle, ctx), ctx):
        if not _present(o.resource.get("requester")):
            yield order_requester_missing.issue(f"{o.path}.requester")


@rule("ORDER-ANALYSIS-UNKNOWN", "error",
      en="The order's analysis {codes} is missing or not in the analysis table.",
      nb="Rekvirert analyse {codes} mangler eller finnes ikke i analysetabellen.")
def order_analysis_unknown(bundle, ctx):
    """Every order names an analysis by an NLK (or table LOINC) code in analyses.csv."""
    for o in order_requests(view_of(bundle, ctx), ctx):
        if o.analysis is None:
            yield order_analysis_unknown.issue(f"{o.path}.code",
                                               codes=", ".join(o.codes) or "(none)")


@rule("ORDER-SPECIMEN-TYPE-MISSING", "error",
      en="A referred order (performer is another laboratory) must give the specimen type.",
      nb="En henvist rekvisisjon (utføres av et annet laboratorium) må oppgi prøvemateriale.")
def order_specimen_type_missing(bundle, ctx):
    """An order whose performer is an Organization (sent to another laboratory)
    has a Specimen (ServiceRequest.specimen, a Specimen whose request points at
    it, or the bundle's only Specimen) with a coded type."""
    view = view_of(bundle, ctx)
    for o in order_requests(view, ctx):
        if _is_referred(view, o.resource) and not any(
                _has_type(sp) for sp in _specimens_of(view, o.index, o.resource)):
            yield order_specimen_type_missing.issue(f"{o.path}.specimen")
