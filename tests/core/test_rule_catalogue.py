"""Every rule code the code can emit is in the one catalogue, docs/rules.md."""
from __future__ import annotations

import re

from support import REPO_ROOT

CODE = re.compile(r'"((?:HL7|ASTM|POCT1A|INSTRUMENT|FHIR|MLLP|JSON|ORDER|AUTH|RATE|BODY|CLAIM|'
                  r'SEARCH|DUPLICATE|ROUTE)-[A-Z0-9-]+|FORBIDDEN|NOT-FOUND|TAKEN|ALREADY-TAKEN)"')
NOT_RULE_CODES = {"ASTM-QUERY", "POCT1A-OBS"}   # message kinds in gateway/instruments, not findings


def test_every_emitted_code_is_documented():
    catalogue = (REPO_ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    emitted = {m for folder in ("gateway", "mappings", "adapters")
               for path in (REPO_ROOT / folder).rglob("*.py")
               for m in CODE.findall(path.read_text(encoding="utf-8"))} - NOT_RULE_CODES
    assert len(emitted) > 100            # the scan itself works
    missing = sorted(c for c in emitted if f"`{c}`" not in catalogue)
    assert missing == []
