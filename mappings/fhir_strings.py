"""FHIR strings from instrument and HL7 v2 text.

FHIR's JSON string pattern ``^[ \\r\\n\\t\\S]+$`` (ECMAScript ``\\s``, which
includes the no-break space and the other Unicode spaces) admits no
whitespace but space, tab, CR and LF. A name or comment typed with a
no-break space would make the bundle invalid, so every mapping to FHIR turns
such whitespace into plain spaces.
"""
from __future__ import annotations

import re

# Whitespace other than space, tab, CR and LF: what Python's \s adds to them,
# spelled out (a negated class like [^\S \t\r\n] is slower to search).
ODD_SPACE = re.compile("[\x0b\x0c\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")


def plain_spaces(node) -> None:
    """Replace odd whitespace by plain spaces in every string of ``node``
    (a bundle or part of one), in place."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        if isinstance(value, str):
            if ODD_SPACE.search(value):
                node[key] = ODD_SPACE.sub(" ", value)
        elif isinstance(value, (dict, list)):
            plain_spaces(value)
