"""Prints the clinical-safety pass rate at the end of the run."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_terminal_summary(terminalreporter):
    from messages import OUTCOMES
    if OUTCOMES:
        passed = sum(OUTCOMES.values())
        total = len(OUTCOMES)
        terminalreporter.write_line(
            f"clinical safety: {passed}/{total} cases passed ({100 * passed / total:.1f} %)")
