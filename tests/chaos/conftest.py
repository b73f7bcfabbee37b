"""Chaos tests drive the scenarios in bench/chaos.py (real gateway
processes, real PostgreSQL, real sockets); bench/ lives at the repo root."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
