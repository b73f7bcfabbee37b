"""Search parameters and searchset Bundles: paging by a stable cursor
(``_after``), ``_count`` and ``_lastUpdated`` prefixes."""
from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from .common import instant, now, parse_instant
from .intake import Rejected, issue

MAX_COUNT = 500
_PREFIX = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "eq": "="}


def count(request: web.Request, default: int = 50) -> int:
    try:
        return min(MAX_COUNT, max(1, int(request.query.get("_count", default))))
    except ValueError:
        raise Rejected(400, [issue("SEARCH-PARAM", "_count", "_count must be a whole number")]) from None


def after(request: web.Request) -> int:
    try:
        return int(request.query.get("_after", "0"))
    except ValueError:
        raise Rejected(400, [issue("SEARCH-PARAM", "_after", "_after must be a whole number")]) from None


def last_updated(request: web.Request, column: str, args: list) -> list[str]:
    """SQL conditions for every ``_lastUpdated`` value (gt/ge/lt/le/eq prefixes)."""
    out = []
    for v in request.query.getall("_lastUpdated", []):
        op = _PREFIX.get(v[:2])
        t = parse_instant(v[2:] if op else v)
        if t is None:
            raise Rejected(400, [issue("SEARCH-PARAM", "_lastUpdated", "_lastUpdated must be a dateTime "
                                       "with an optional gt/ge/lt/le prefix")])
        args.append(t)
        out.append(f"{column} {op or '>='} ${len(args)}")
    return out


def searchset(request: web.Request, matches: list[dict], includes: list[dict],
              next_after: int | None) -> dict:
    base = f"{request.scheme}://{request.host}"
    links = [{"relation": "self", "url": base + str(request.rel_url)}]
    if next_after is not None:
        query = [(k, v) for k, v in request.query.items() if k != "_after"] + [("_after", str(next_after))]
        links.append({"relation": "next", "url": f"{base}{request.path}?{urlencode(query)}"})
    entries = [{"fullUrl": f"{base}/fhir/{r['resourceType']}/{r['id']}", "resource": r,
                "search": {"mode": "match"}} for r in matches]
    seen = set()
    for r in includes:
        key = (r["resourceType"], r["id"])
        if key not in seen:
            seen.add(key)
            entries.append({"fullUrl": f"{base}/fhir/{r['resourceType']}/{r['id']}", "resource": r,
                            "search": {"mode": "include"}})
    return _drop_none({"resourceType": "Bundle", "type": "searchset", "timestamp": instant(now()),
                       "link": links, "entry": entries})


def _drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None and v != []}


def token_value(value: str) -> tuple[str | None, str]:
    """``system|value`` → (system, value); a bare value has system None."""
    if "|" in value:
        s, _, v = value.partition("|")
        return s or None, v
    return None, value
