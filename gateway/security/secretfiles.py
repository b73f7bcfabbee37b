"""Secrets come from the environment or from files only their owner can read.

A TLS private key or token file that group or others can read is refused at
start-up with an error naming the file, its mode and the fix: a secret that
other local accounts could copy is not a secret.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path


class SecretFileError(Exception):
    """A secret file is missing or too widely readable; the message says which and why."""


def check_private(path: str | Path, *, what: str = "secret file") -> Path:
    """``path``, if it exists and is not readable or writable by group or others."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise SecretFileError(f"{what} {p}: file not found") from None
    if not stat.S_ISREG(st.st_mode):
        raise SecretFileError(f"{what} {p}: not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise SecretFileError(
            f"{what} {p}: mode {mode:04o} lets group or others read it; "
            f"run `chmod 600 {p}` (owner only)")
    return p


def read_secret(*, env: str | None = None, file: str | Path | None = None,
                what: str = "secret") -> str | None:
    """A secret from the environment variable ``env`` (wins), else from ``file``
    (which must be owner-only), else None. Surrounding whitespace is stripped."""
    if env and os.environ.get(env):
        return os.environ[env].strip()
    if file:
        return check_private(file, what=what).read_text(encoding="utf-8").strip()
    return None
