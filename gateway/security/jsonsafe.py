"""JSON from untrusted peers, with limits on size and nesting depth.

``orjson`` parses in C and stops at its own recursion limit (1024), so a
deeply nested body cannot exhaust the Python stack; the depth walk below then
enforces the (much lower) configured limit before any handler walks the data
recursively (pydantic/fhir.resources models do).
"""
from __future__ import annotations

import orjson

DEFAULT_MAX_DEPTH = 64
DEFAULT_MAX_BYTES = 10 * 1024 * 1024


class JsonLimitError(ValueError):
    """The body is not acceptable JSON. ``code`` is stable (for OperationOutcome)."""

    def __init__(self, code: str, text: str):
        super().__init__(text)
        self.code = code
        self.text = text


def load_json(body: bytes | str, *, max_depth: int = DEFAULT_MAX_DEPTH,
              max_bytes: int = DEFAULT_MAX_BYTES):
    """Parse ``body`` or raise :class:`JsonLimitError`.

    Codes: ``JSON-TOO-LARGE`` (more than ``max_bytes``), ``JSON-TOO-DEEP``
    (arrays/objects nested deeper than ``max_depth``; a scalar is depth 0, ``{}``
    depth 1), ``JSON-INVALID`` (not UTF-8 JSON).
    """
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    if len(body) > max_bytes:
        raise JsonLimitError("JSON-TOO-LARGE", f"The JSON body exceeds {max_bytes} bytes")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        if "depth limit" in str(e) or "recursion" in str(e):
            raise JsonLimitError("JSON-TOO-DEEP",
                                 f"The JSON body is nested deeper than {max_depth} levels") from None
        raise JsonLimitError("JSON-INVALID", f"The body is not valid JSON: {e}") from None
    if depth_exceeds(value, max_depth):
        raise JsonLimitError("JSON-TOO-DEEP", f"The JSON body is nested deeper than {max_depth} levels")
    return value


def depth_exceeds(value, max_depth: int) -> bool:
    """True if containers in ``value`` nest deeper than ``max_depth`` (iterative, no recursion)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        if depth > max_depth:
            return True
        stack.extend((c, depth) for c in children if isinstance(c, (dict, list)))
    return False
