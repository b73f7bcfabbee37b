"""Secrets only from the environment or owner-only files."""
from __future__ import annotations

import os

import pytest

from gateway.security.secretfiles import SecretFileError, check_private, read_secret


def _file(tmp_path, mode: int, text: str = "s3cret\n"):
    p = tmp_path / "secret"
    p.write_text(text)
    os.chmod(p, mode)
    return p


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_owner_only_file_is_read(tmp_path, mode):
    assert read_secret(file=_file(tmp_path, mode)) == "s3cret"


@pytest.mark.parametrize("mode", [0o640, 0o644, 0o604, 0o660, 0o666, 0o620])
def test_group_or_other_access_is_refused_with_the_fix(tmp_path, mode):
    p = _file(tmp_path, mode)
    with pytest.raises(SecretFileError) as e:
        check_private(p, what="http.tls.key_file")
    msg = str(e.value)
    assert "http.tls.key_file" in msg and str(p) in msg and f"{mode:04o}" in msg and "chmod 600" in msg


def test_missing_file_and_directory_are_refused(tmp_path):
    with pytest.raises(SecretFileError, match="not found"):
        check_private(tmp_path / "nope")
    d = tmp_path / "dir"
    d.mkdir(mode=0o700)
    with pytest.raises(SecretFileError, match="not a regular file"):
        check_private(d)


def test_environment_wins_over_file(tmp_path, monkeypatch):
    p = _file(tmp_path, 0o644)               # would be refused if read
    monkeypatch.setenv("LABGATE_TEST_SECRET", " from-env ")
    assert read_secret(env="LABGATE_TEST_SECRET", file=p) == "from-env"
    monkeypatch.delenv("LABGATE_TEST_SECRET")
    with pytest.raises(SecretFileError):
        read_secret(env="LABGATE_TEST_SECRET", file=p)
    assert read_secret(env="LABGATE_TEST_SECRET") is None
