"""atheris (libFuzzer) harness: ``python tests/fuzz/harness.py TARGET [libFuzzer args]``.

TARGET is one of targets.TARGETS. The target modules are imported under
atheris instrumentation so coverage guides the mutations. Seeds from
seeds.py are written into the first corpus directory given (or a fresh
temporary one). An exception escaping a target is a crash: libFuzzer writes
the input to ``<artifact_prefix>crash-*`` and exits non-zero.
tests/fuzz/test_atheris.py runs every target for a bounded time.
"""
from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent))

with atheris.instrument_imports(include=["adapters", "mappings", "gateway.security", "targets"]):
    import targets

from seeds import seeds  # noqa: E402


def main() -> None:
    name, args = sys.argv[1], sys.argv[2:]
    target = targets.TARGETS[name]
    dirs = [a for a in args if not a.startswith("-")]
    if not dirs:
        dirs = [tempfile.mkdtemp(prefix=f"fuzz-{name}-")]
        args.append(dirs[0])
    for seed in seeds(name):
        (Path(dirs[0]) / hashlib.sha1(seed).hexdigest()).write_bytes(seed)

    def one_input(data: bytes) -> None:
        target(data)

    atheris.Setup([sys.argv[0], *args], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
