from __future__ import annotations

import os
from pathlib import Path

import pytest

from common.mountpaths import MountRequest, MountValidationError, real_location, validate_mount_spec


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "mounts").mkdir(parents=True)
    (root / "project" / "a").mkdir(parents=True)
    (root / "project" / "b").mkdir(parents=True)
    (root / "project" / "file.txt").write_text("x")
    return root


def check(data_root: Path, mount: str, source: str, mode: str = "read-only",
          existing: tuple[tuple[str, str], ...] = ()) -> MountRequest:
    return validate_mount_spec(mount, source, mode, existing, data_root=data_root)


def rejected(data_root: Path, mount: str, source: str, mode: str = "read-only",
             existing: tuple[tuple[str, str], ...] = ()) -> MountValidationError:
    with pytest.raises(MountValidationError) as info:
        check(data_root, mount, source, mode, existing)
    assert info.value.message  # every refusal says something a person can act on
    return info.value


def test_accepts_a_plain_request_and_normalises_it(data_root: Path) -> None:
    req = check(data_root, f"{data_root}/mounts//x/", f"{data_root}/project/./a", "read-write")
    assert req == MountRequest(f"{data_root}/mounts/x", f"{data_root}/project/a", "read-write")


@pytest.mark.parametrize("mode", ["", "ro", "READ-ONLY", "rw"])
def test_rejects_unknown_mode(data_root: Path, mode: str) -> None:
    err = rejected(data_root, f"{data_root}/mounts/x", f"{data_root}/project/a", mode)
    assert err.code == "INVALID_ARGUMENT"
    assert "read-only" in err.message and "read-write" in err.message


@pytest.mark.parametrize("mount", ["", "mounts/x", "/elsewhere/x", "{root}/mounts", "{root}/mounts/../x",
                                   "{root}/mounts/a/../b", "{root}/project/a", "{root}/mountsx/y"])
def test_rejects_mount_paths_outside_the_mounts_directory(data_root: Path, mount: str) -> None:
    err = rejected(data_root, mount.format(root=data_root), f"{data_root}/project/a")
    assert err.code == "INVALID_ARGUMENT"
    assert "mount path" in err.message


def test_message_names_what_is_allowed(data_root: Path) -> None:
    err = rejected(data_root, "/tmp/x", f"{data_root}/project/a")
    assert f"{data_root}/mounts/<name>" in err.message
    err = rejected(data_root, f"{data_root}/mounts/x/../y", f"{data_root}/project/a")
    assert "'..'" in err.message


@pytest.mark.parametrize("source", ["", "project/a", "/etc", "{root}", "{root}/mounts", "{root}/mounts/q",
                                    "{root}/project/../project/a"])
def test_rejects_sources_outside_data(data_root: Path, source: str) -> None:
    err = rejected(data_root, f"{data_root}/mounts/x", source.format(root=data_root))
    assert err.code == "INVALID_ARGUMENT"
    assert "source" in err.message


def test_missing_source_is_not_found(data_root: Path) -> None:
    err = rejected(data_root, f"{data_root}/mounts/x", f"{data_root}/project/nope")
    assert err.code == "NOT_FOUND"
    assert "does not exist" in err.message


def test_source_must_be_a_directory(data_root: Path) -> None:
    err = rejected(data_root, f"{data_root}/mounts/x", f"{data_root}/project/file.txt")
    assert err.code == "INVALID_ARGUMENT"
    assert "not a directory" in err.message


def test_source_symlink_escaping_data_is_rejected(data_root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, data_root / "project" / "escape")
    err = rejected(data_root, f"{data_root}/mounts/x", f"{data_root}/project/escape")
    assert err.code == "INVALID_ARGUMENT"
    assert "symlink" in err.message


def test_source_symlink_into_mounts_is_rejected(data_root: Path) -> None:
    (data_root / "mounts" / "m").mkdir()
    os.symlink(data_root / "mounts" / "m", data_root / "project" / "loop")
    err = rejected(data_root, f"{data_root}/mounts/x", f"{data_root}/project/loop")
    assert err.code == "INVALID_ARGUMENT"


def test_source_symlink_staying_inside_data_is_accepted_and_resolved(data_root: Path) -> None:
    os.symlink(data_root / "project" / "a", data_root / "project" / "alias")
    req = check(data_root, f"{data_root}/mounts/x", f"{data_root}/project/alias")
    assert req.source == f"{data_root}/project/a"  # stored and shipped resolved: a later retarget changes nothing


def test_a_resolved_source_is_required_where_asked_for(data_root: Path) -> None:
    """Agents get resolved sources only: one that resolves elsewhere now had a symlink put on its path."""
    resolved = validate_mount_spec(f"{data_root}/mounts/x", f"{data_root}/project/a", "read-only", (), data_root,
                                   require_resolved=True)
    assert resolved.source == f"{data_root}/project/a"
    (data_root / "project" / "a").rename(data_root / "project" / "a.old")
    os.symlink(data_root / "project" / "b", data_root / "project" / "a")
    with pytest.raises(MountValidationError) as info:
        validate_mount_spec(f"{data_root}/mounts/x", f"{data_root}/project/a", "read-only", (), data_root,
                            require_resolved=True)
    assert info.value.code == "FAILED_PRECONDITION"
    assert f"now resolves to {data_root}/project/b" in info.value.message


def test_a_data_root_behind_a_symlink_keeps_its_configured_spelling(tmp_path: Path, data_root: Path) -> None:
    os.symlink(data_root, tmp_path / "data-link")
    req = validate_mount_spec(f"{tmp_path}/data-link/mounts/x", f"{tmp_path}/data-link/project/a", "read-only",
                              (), tmp_path / "data-link", require_resolved=True)
    assert req.source == f"{tmp_path}/data-link/project/a"
    assert real_location(req.source, tmp_path / "data-link") == f"{data_root}/project/a"


def test_mount_path_through_a_symlink_is_rejected(data_root: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, data_root / "mounts" / "link")
    for mount in (f"{data_root}/mounts/link", f"{data_root}/mounts/link/x"):
        err = rejected(data_root, mount, f"{data_root}/project/a")
        assert err.code == "INVALID_ARGUMENT"
        assert "symlink" in err.message


def test_mount_path_that_is_a_file_is_rejected(data_root: Path) -> None:
    (data_root / "mounts" / "f").write_text("")
    err = rejected(data_root, f"{data_root}/mounts/f", f"{data_root}/project/a")
    assert err.code == "FAILED_PRECONDITION"


def test_duplicate_mount_path(data_root: Path) -> None:
    existing = ((f"{data_root}/mounts/x", f"{data_root}/project/b"),)
    err = rejected(data_root, f"{data_root}/mounts/x/", f"{data_root}/project/a", existing=existing)
    assert err.code == "ALREADY_EXISTS"


@pytest.mark.parametrize(("new", "old"), [("mounts/x/inner", "mounts/x"), ("mounts/x", "mounts/x/inner")])
def test_nested_mounts_are_rejected(data_root: Path, new: str, old: str) -> None:
    existing = ((f"{data_root}/{old}", f"{data_root}/project/b"),)
    err = rejected(data_root, f"{data_root}/{new}", f"{data_root}/project/a", existing=existing)
    assert err.code == "FAILED_PRECONDITION"
    assert "nest" in err.message


def test_siblings_sharing_a_name_prefix_are_not_nested(data_root: Path) -> None:
    existing = ((f"{data_root}/mounts/x", f"{data_root}/project/b"),)
    req = check(data_root, f"{data_root}/mounts/xy", f"{data_root}/project/a", existing=existing)
    assert req.mount_path == f"{data_root}/mounts/xy"


def test_validation_creates_nothing(data_root: Path) -> None:
    before = sorted(p for p in data_root.rglob("*"))
    check(data_root, f"{data_root}/mounts/new/deeper", f"{data_root}/project/a")
    rejected(data_root, f"{data_root}/mounts/other", f"{data_root}/project/nope")
    assert sorted(p for p in data_root.rglob("*")) == before
