"""Atomic writes: the target is replaced whole or left untouched."""

import os

import pytest

from organoid_sim.atomic import atomic_path, atomic_write_text


def test_failed_write_leaves_target_and_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_written_file_has_umask_permissions_and_parents(tmp_path):
    target = atomic_write_text(tmp_path / "a" / "b" / "x.txt", "hello")
    assert target.read_text() == "hello"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_missing_folder_is_an_error_without_make_parents(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        with atomic_path(tmp_path / "nope" / "x.txt"):
            pass
