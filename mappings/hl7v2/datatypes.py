"""v2 data types (CWE, EI, CX, XCN, numbers) ⇄ FHIR elements as plain dicts.

Each ``*_to_v2`` is the inverse of its forward function on what the forward
function produces, so that ORU → FHIR → ORU → FHIR yields the same FHIR.
"""
from __future__ import annotations

import re
from decimal import Decimal
from functools import lru_cache
from urllib.parse import quote, unquote

from .. import identifiers, systems

SNOMED = "http://snomed.info/sct"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
V2_0078 = "http://terminology.hl7.org/CodeSystem/v2-0078"
NO_8327 = "urn:oid:2.16.578.1.12.4.1.1.8327"          # person id type (HNR)
_V2_TABLE = "http://terminology.hl7.org/CodeSystem/v2-"

_NAMED = {"LN": systems.LOINC, "NLK": systems.NLK, "UCUM": systems.UCUM,
          "SCT": SNOMED, "HL70487": systems.V2_0487}
_NAMES = {v: k for k, v in _NAMED.items()}
_OID = re.compile(r"[0-2](\.\d+)+\Z")
_HL7_TABLE = re.compile(r"HL7(\d{4})\Z")
# At most 18 digits: beyond that a "number" is an identifier or an attack, and
# int() of thousands of digits raises.
_NUMBER = re.compile(r"[+-]?(?=[\d.]{1,19}\Z)(\d+\.?\d*|\.\d+)\Z")

NATIONAL_IDS = {systems.FNR, systems.DNR, systems.FHNR}
_OID_TO_NATIONAL = {s.removeprefix("urn:oid:"): s for s in NATIONAL_IDS}
_CX5_TO_NATIONAL = {"FNR": systems.FNR, "DNR": systems.DNR, "FHNR": systems.FHNR,
                    "FHN": systems.FHNR}


def put(d: dict, key: str, value) -> None:
    """Set ``d[key]`` only when ``value`` is not empty (FHIR has no empty values)."""
    if value:
        d[key] = value


def clean_code(code: str) -> str:
    """A FHIR code has no leading, trailing or doubled whitespace."""
    return " ".join(code.split())


# ---------------------------------------------------------------- code systems

@lru_cache(maxsize=1024)     # a handful of names recur in every message
def code_system(name: str) -> str:
    """The FHIR system URI for a v2 coding-system name (CWE-3); "" if none."""
    name = name.strip()
    if not name:
        return ""
    if name in _NAMED:
        return _NAMED[name]
    m = _HL7_TABLE.match(name)
    if m:
        return _V2_TABLE + m.group(1)
    if _OID.match(name):
        return systems.normalise_code_system("urn:oid:" + name)
    if name.startswith(("http://", "https://", "urn:")) and " " not in name:
        return systems.normalise_code_system(name)
    return local("code", name)


def code_system_name(system: str) -> str:
    """The inverse of ``code_system``."""
    if not system:
        return ""
    if system in _NAMES:
        return _NAMES[system]
    if system.startswith(_V2_TABLE) and system[len(_V2_TABLE):].isdigit():
        return "HL7" + system[len(_V2_TABLE):]
    if system.startswith("urn:oid:"):
        return system[8:]
    kind_assigner = parse_local(system)
    if kind_assigner and kind_assigner[0] == "code":
        return kind_assigner[1]
    return system


@lru_cache(maxsize=1024)     # quote() is slow; kinds and assigners recur
def local(kind: str, assigner: str) -> str:
    """``systems.local_system`` with the assigner made URI-safe."""
    return systems.local_system(kind, quote(assigner.strip(), safe=""))


def parse_local(system: str) -> tuple[str, str] | None:
    """(kind, assigner) of a system made by ``local``; assigner "" for "unknown"."""
    if not system.startswith(systems.LABGATE_NS):
        return None
    kind, _, assigner = system[len(systems.LABGATE_NS):].partition(":")
    return kind, "" if assigner == "unknown" else unquote(assigner)


# ---------------------------------------------------------------- CWE / CE

def _coding_items(code: str, display: str, system_name: str) -> tuple | None:
    """A Coding as (key, value) pairs."""
    code = clean_code(code)
    if not code:
        return None
    items = []
    system = code_system(system_name)
    if system:
        items.append(("system", system))
    items.append(("code", code))
    if display:
        items.append(("display", display))
    return tuple(items)


def codeable(comps: list[str]) -> dict | None:
    """CE/CWE components (unescaped) → CodeableConcept, both triplets and CWE-9."""
    if not any(comps):
        return None
    parts = _codeable_parts(tuple(comps))
    if parts is None:
        return None
    codings, text = parts
    cc: dict = {}
    if codings:
        cc["coding"] = list(map(dict, codings))
    if text:
        cc["text"] = text
    return cc


@lru_cache(maxsize=4096)     # the same test codes recur message after message
def _codeable_parts(comps: tuple[str, ...]) -> tuple[tuple, str] | None:
    """(codings as (key, value) pairs, text) of a CodeableConcept; None if empty.
    Cached as tuples so that every caller still gets fresh dicts."""
    comps = comps + ("",) * (9 - len(comps))
    codings = tuple(c for c in (_coding_items(*comps[0:3]), _coding_items(*comps[3:6])) if c)
    text = comps[8] if codings else (comps[8] or comps[1] or comps[4])
    if not codings and not text:
        return None
    return codings, text


def codeable_to_v2(cc: dict | None) -> list[str]:
    """CodeableConcept → CWE components (unescaped)."""
    if not cc:
        return []
    out = [""] * 9
    codings = cc.get("coding") or []
    for i, c in enumerate(codings[:2]):
        out[3 * i:3 * i + 3] = [c.get("code", ""), c.get("display", ""),
                                code_system_name(c.get("system", ""))]
    if codings:
        out[8] = cc.get("text", "")
    else:
        out[1] = cc.get("text", "")
    return out


# ---------------------------------------------------------------- EI

def ei_identifier(parts: list[str], kind: str) -> dict | None:
    """EI (id, namespace, universal id, type) → Identifier."""
    parts = parts + [""] * (4 - len(parts))
    value = parts[0].strip()
    if not value:
        return None
    return {"system": _ei_system(kind, parts[1], parts[2]), "value": value}


@lru_cache(maxsize=1024)     # assigning authorities recur message after message
def _ei_system(kind: str, ns: str, uid: str) -> str:
    """The identifier system of an EI: its universal id if that is an OID or URI,
    else a labgate system for the namespace."""
    uid = uid.strip()
    if uid and _OID.match(uid):
        return "urn:oid:" + uid
    if uid.startswith(("http://", "https://", "urn:")) and " " not in uid:
        return uid
    return local(kind, ns or uid)


def ei_to_v2(ident: dict | None) -> list[str]:
    """Identifier → EI parts (id, namespace, universal id, type)."""
    if not ident:
        return []
    system, value = ident.get("system", ""), ident.get("value", "")
    if system.startswith("urn:oid:"):
        return [value, "", system[8:], "ISO"]
    loc = parse_local(system)
    if loc is not None:
        return [value, loc[1]]
    return [value, "", system, "URI"] if system else [value]


# ---------------------------------------------------------------- CX (patient ids)

_KIND_TO_SYSTEM = {identifiers.FNR: systems.FNR, identifiers.DNR: systems.DNR,
                   identifiers.FHNR: systems.FHNR}


def _national_by_digits(value: str) -> str:
    """The national system of an NNNOR number by its day/month offsets ("" for
    an H-number, which is local, and for anything else)."""
    return _KIND_TO_SYSTEM.get(identifiers.classify_person_number(value)[0], "")


def cx_identifier(value: str, hd: list[str], id_type: str) -> dict | None:
    """PID-3 CX (id, assigning authority HD subcomponents, CX-5 type) → Identifier.

    Norwegian FNR/DNR/FHNR are recognised by the OID in CX-4.2, by CX-5
    (FNR/DNR/FHNR), or by CX-5 NNNOR and the number's shape; H-numbers by CX-5 HNR.
    """
    value = value.strip()
    if not value:
        return None
    hd = hd + [""] * (3 - len(hd))
    ns, uid = hd[0], hd[1].strip().removeprefix("urn:oid:")
    id_type = id_type.strip()
    system = (_OID_TO_NATIONAL.get(uid) or _CX5_TO_NATIONAL.get(id_type.upper())
              or (_national_by_digits(value) if id_type.upper() == "NNNOR" else ""))
    if system:
        return {"system": system, "value": value}
    if id_type.upper() == "HNR" or (id_type.upper() == "NNNOR"
                                    and identifiers.classify_person_number(value)[0] == identifiers.HNR):
        ident = {"type": {"coding": [{"system": NO_8327, "code": "HNR"}]},
                 "system": systems.HNR, "value": value}
        if ns:
            ident["assigner"] = {"display": ns}
        return ident
    ident = {}
    code = clean_code(id_type)
    if code:
        ident["type"] = {"coding": [{"system": systems.V2_0203, "code": code}]}
    if uid and _OID.match(uid):
        ident["system"] = "urn:oid:" + uid
    elif uid.startswith(("http://", "https://", "urn:")) and " " not in uid:
        ident["system"] = uid
    else:
        ident["system"] = local("patient", ns)
    ident["value"] = value
    return ident


def cx_to_v2(ident: dict) -> list:
    """Identifier → CX components; component 4 is a list of HD subcomponents."""
    system, value = ident.get("system", ""), ident.get("value", "")
    if system in NATIONAL_IDS:
        ns = "NHN" if system == systems.FHNR else "FREG"
        return [value, "", "", [ns, system[8:], "ISO"], "NNNOR"]
    if system == systems.HNR:
        return [value, "", "", [ident.get("assigner", {}).get("display", "")], "HNR"]
    codings = (ident.get("type") or {}).get("coding") or [{}]
    id_type = codings[0].get("code", "")
    if system.startswith("urn:oid:"):
        hd = ["", system[8:], "ISO"]
    else:
        loc = parse_local(system)
        hd = [loc[1]] if loc is not None else ["", system, "URI"]
    return [value, "", "", hd, id_type]


# ---------------------------------------------------------------- XCN (people)

def xcn_practitioner(comps: list[str], hd: list[str]) -> dict | None:
    """XCN components (unescaped) + XCN-9 HD subcomponents → Practitioner."""
    comps = comps + [""] * (13 - len(comps))
    value, family = comps[0].strip(), comps[1]
    given = [g for g in (comps[2], comps[3]) if g]
    if not value and not family and not given:
        return None
    hd = hd + [""] * (3 - len(hd))
    ns, uid = hd[0], hd[1].strip().removeprefix("urn:oid:")
    prac: dict = {"resourceType": "Practitioner"}
    if value:
        if comps[12].upper() == "HPR" or ns.upper() == "HPR" or "urn:oid:" + uid == systems.HPR:
            system = systems.HPR
        elif uid and _OID.match(uid):
            system = "urn:oid:" + uid
        else:
            system = local("practitioner", ns)
        prac["identifier"] = [{"system": system, "value": value}]
    name: dict = {}
    put(name, "family", family)
    put(name, "given", given)
    put(prac, "name", [name] if name else [])
    return prac


def practitioner_to_xcn(prac: dict) -> list:
    """Practitioner → XCN components; component 9 is a list of HD subcomponents."""
    ident = (prac.get("identifier") or [{}])[0]
    name = (prac.get("name") or [{}])[0]
    given = name.get("given", []) + ["", ""]
    out: list = [ident.get("value", ""), name.get("family", ""), given[0], given[1]]
    system = ident.get("system", "")
    if system == systems.HPR:
        out += ["", "", "", "", ["HPR", system[8:], "ISO"], "", "", "", "HPR"]
    elif system.startswith("urn:oid:"):
        out += ["", "", "", "", ["", system[8:], "ISO"]]
    elif system:
        loc = parse_local(system)
        out += ["", "", "", "", [loc[1]] if loc else ["", system, "URI"]]
    return out


def practitioner_key(prac: dict) -> tuple:
    """What makes two mentions the same person: the identifier, else the name."""
    if prac.get("identifier"):
        i = prac["identifier"][0]
        return ("id", i["system"], i["value"])
    n = prac["name"][0]
    return ("name", n.get("family", ""), tuple(n.get("given", ())))


# ---------------------------------------------------------------- numbers

@lru_cache(maxsize=4096)     # pure; values and reference limits recur
def number(text: str) -> int | float | None:
    """A v2 NM as int or float; None when it is not a plain number."""
    text = text.strip()
    if not _NUMBER.match(text):
        return None
    return float(text) if "." in text else int(text)


def format_number(value) -> str:
    """The inverse of ``number``: plain digits, never exponent notation."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    text = format(Decimal(repr(float(value))), "f")
    return text if "." in text else text + ".0"
