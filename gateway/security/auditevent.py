"""audit_log rows as FHIR R4 AuditEvent resources (validated against R4B in tests).

One row becomes one AuditEvent: the actor is the requesting agent (a system
or console user, with the peer address), the gateway is the source, the
patient (if any) and the resource touched are entities. The stable action
name (``results.pull``) is the subtype; ``action`` is the CRUDE letter.
"""
from __future__ import annotations

from mappings import identifiers as ids
from mappings import systems

EVENT_TYPE = {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
              "code": "rest", "display": "RESTful Operation"}
ACTION_SYSTEM = "urn:labgate:audit-action"
ACTOR_SYSTEM = {"system": "urn:labgate:system", "user": "urn:labgate:user",
                "gateway": "urn:labgate:gateway", "anonymous": "urn:labgate:anonymous"}
_OUTCOME = {"success": "0", "denied": "4", "error": "8"}
_PERSON_SYSTEM = {ids.FNR: systems.FNR, ids.DNR: systems.DNR, ids.FHNR: systems.FHNR,
                  ids.HNR: systems.HNR}
# Verb at the end of an action name → FHIR AuditEvent.action (C/R/U/D/E).
_VERB = {"create": "C", "receive": "C", "received": "C", "send": "C", "read": "R", "pull": "R",
         "search": "R", "export": "R", "list": "R", "taken": "U", "update": "U", "write": "U",
         "replay": "E", "claim": "U", "delete": "D", "revoke": "U", "login": "E", "logout": "E"}


def crude(action: str) -> str:
    return _VERB.get(action.rsplit(".", 1)[-1], "E")


def patient_identifier(value: str) -> dict:
    kind, _ = ids.classify_person_number(value)
    return {"system": _PERSON_SYSTEM.get(kind, "urn:labgate:patient"), "value": value}


def to_audit_event(row, *, gateway_name: str) -> dict:
    """An R4 AuditEvent (plain dict) for one ``audit_log`` row (mapping-like)."""
    agent = {
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
                             "code": "humanuser" if row["actor_kind"] == "user" else "datacollector"}]},
        "who": {"identifier": {"system": ACTOR_SYSTEM.get(row["actor_kind"], "urn:labgate:actor"),
                               "value": row["actor"]}, "display": row["actor"]},
        "requestor": True,
    }
    if row["peer"]:
        agent["network"] = {"address": row["peer"], "type": "2"}   # 2 = IP address
    event = {
        "resourceType": "AuditEvent",
        "id": str(row["id"]),
        "type": EVENT_TYPE,
        "subtype": [{"system": ACTION_SYSTEM, "code": row["action"]}],
        "action": crude(row["action"]),
        "recorded": row["at"].isoformat(),
        "outcome": _OUTCOME.get(row["outcome"], "8"),
        "agent": [agent],
        "source": {"observer": {"display": gateway_name},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                             "code": "4", "display": "Application Server"}]},
    }
    if row["outcome"] != "success" or row["detail"]:
        event["outcomeDesc"] = row["detail"] or row["outcome"]
    entities = []
    if row["patient"]:
        entities.append({"what": {"identifier": patient_identifier(row["patient"])},
                         "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                                  "code": "1", "display": "Person"},
                         "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role",
                                  "code": "1", "display": "Patient"}})
    if row["resource_type"]:
        what = (f"{row['resource_type']}/{row['resource_id']}" if row["resource_id"]
                else row["resource_type"])
        entities.append({"what": {"reference": what} if row["resource_id"] else {"display": what},
                         "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                                  "code": "2", "display": "System Object"}})
    if entities:
        event["entity"] = entities
    return event
