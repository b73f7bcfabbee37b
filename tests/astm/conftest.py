"""ASTM tests: make ``astm_data`` importable and share fixtures."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from astm_data import CODE_MAP  # noqa: E402


@pytest.fixture
def code_map() -> dict:
    return {k: dict(v) for k, v in CODE_MAP.items()}
