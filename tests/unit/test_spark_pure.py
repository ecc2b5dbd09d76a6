"""Spark's pure parts: executor sizing, the written conf files and their parser, slot planning, and
Remote slots as no-scale demand in the autoscaler."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchspark import conffile
from benchspark.sizing import executor_size, fits
from manager.autoscaler import PendingJob, ScalerConfig, Snapshot, plan
from manager.autoscaler.model import GIB, JobHold
from manager.spark import api
from manager.spark.broker import OWNER_UID, slot_owner
from manager.spark.slots import AppWant, SlotCount, is_no_scale, plan_slots, remote_wanted, slot_job_name
from tests.conftest import require_root
from tests.harness import run_as

FACTS = conffile.ClusterFacts(master_url="spark://10.0.0.1:7077", driver_host="10.0.0.2", python="/usr/bin/python3",
                              executor=executor_size(31, 120 * GIB), max_executors=16)


def test_seed_executor_on_a_big_member_and_count_per_member() -> None:
    size = executor_size(32, 128 * GIB)  # the seed's example: 8 executors of 4 cores / 4g
    assert (size.cores, size.memory_mb, size.per_member, size.note) == (4, 4096, 8, "")


def test_small_members_get_an_executor_that_fits_and_a_reason() -> None:
    size = executor_size(1, int(2.5 * GIB))
    assert (size.cores, size.memory_mb, size.per_member) == (1, 2560, 1)
    assert "less than the default executor of 4 cores / 4g" in size.note
    assert fits(size.cores, size.memory_mb, 1, int(2.5 * GIB)) == 1
    assert fits(4, 4096, 1, int(2.5 * GIB)) == 0


def test_no_memory_for_an_executor_is_refused() -> None:
    with pytest.raises(ValueError, match="less than 512 MiB"):
        executor_size(1, 256 * 1024**2)


def test_written_files_parse_back_and_carry_the_cluster_facts() -> None:
    for kind in ("local", "remote", "dynamic"):
        settings, comments = conffile.settings_for(kind, FACTS)
        parsed = conffile.parse(conffile.render(settings, comments), "x")
        assert parsed == settings
        assert parsed["spark.task.cpus"] == "1"
    remote, _ = conffile.settings_for("remote", FACTS)
    assert remote["spark.master"] == "spark://10.0.0.1:7077" and remote["spark.driver.host"] == "10.0.0.2"
    dynamic, _ = conffile.settings_for("dynamic", FACTS)
    assert dynamic["spark.dynamicAllocation.shuffleTracking.enabled"] == "true"
    assert dynamic["spark.dynamicAllocation.minExecutors"] == "0"
    assert dynamic["spark.dynamicAllocation.maxExecutors"] == "16"
    assert remote["spark.dynamicAllocation.enabled"] == "false"


@pytest.mark.parametrize("line, message", [
    ("spark.executor.memory", "has no value"),
    ("executor.cores 4", "must start with 'spark.'"),
    ("spark.executor.cores four", "must be a whole number"),
    ("spark.executor.memory 4 gigs", "must be a size"),
])
def test_malformed_lines_are_named(line: str, message: str) -> None:
    with pytest.raises(conffile.ConfError, match=message) as info:
        conffile.parse(f"# comment\nspark.task.cpus 1\n{line}\n", "/data/.spark/local/conf/spark-defaults.conf")
    assert "spark-defaults.conf line 3" in str(info.value)


def test_a_users_edit_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "spark-defaults.conf"
    assert conffile.write_cluster_file(path, "spark.a 1\n").written
    assert conffile.write_cluster_file(path, "spark.a 2\n").written  # untouched: the cluster updates it
    path.write_text("spark.a 99\n")  # the user's edit
    result = conffile.write_cluster_file(path, "spark.a 3\n")
    assert not result.written and path.read_text() == "spark.a 99\n"
    assert result.proposed is not None and result.proposed.read_text() == "spark.a 3\n"


def test_files_are_readable_by_every_user_whatever_the_writers_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)  # the packaged manager's unit
    try:
        results = conffile.write_all(FACTS, tmp_path)
    finally:
        os.umask(old)
    spark_root = tmp_path / ".spark"
    for result in results:
        directory = result.path.parent
        while directory != tmp_path:  # every user may enter and list each directory down to the file
            assert stat.S_IMODE(directory.stat().st_mode) == 0o755, directory
            directory = directory.parent
        assert stat.S_IMODE(result.path.stat().st_mode) == 0o644
        assert stat.S_IMODE((result.path.parent / conffile.WRITTEN_HASH).stat().st_mode) == 0o644
    assert spark_root.is_dir()


def as_user(user: str, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_as(user, "sh", "-c", script, "sh", *args)


@pytest.fixture()
def shared_data_root() -> Iterator[Path]:
    """A data root ordinary users can reach (pytest's tmp_path is 0700 root's)."""
    root = Path(tempfile.mkdtemp(prefix="bench-spark-conf-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root)


def test_members_of_the_editors_group_edit_the_files_as_themselves(shared_data_root: Path) -> None:
    require_root()
    editors = grp.getgrnam("nogroup").gr_gid  # the primary group of the ordinary user "nobody"
    old = os.umask(0o027)
    try:
        local, remote, _ = conffile.write_all(FACTS, shared_data_root, editors)
    finally:
        os.umask(old)
    assert stat.S_IMODE(local.path.parent.stat().st_mode) == 0o2775 and local.path.parent.stat().st_gid == editors
    assert stat.S_IMODE(local.path.stat().st_mode) == 0o664 and local.path.stat().st_gid == editors
    # an edit in place, and one that replaces the file (sed -i): both work, and the cluster keeps them
    assert as_user("nobody", 'echo "spark.executor.memory 2g" >> "$1"', str(local.path)).returncode == 0
    edited = as_user("nobody", 'sed -i "s/^spark.task.cpus .*/spark.task.cpus 2/" "$1"', str(remote.path))
    assert edited.returncode == 0, edited.stderr
    assert remote.path.stat().st_gid == editors  # the setgid directory gave the new file the editors' group
    again = conffile.write_all(FACTS, shared_data_root, editors)
    assert [r.written for r in again] == [False, False, False]
    assert [r.proposed is not None for r in again] == [True, True, False]
    assert "spark.executor.memory 2g" in local.path.read_text()
    assert "spark.task.cpus 2" in remote.path.read_text()
    # a user outside the group reads the files but cannot change them
    users = grp.getgrnam("users").gr_gid
    conffile.write_all(FACTS, shared_data_root, users)
    dynamic = conffile.conf_file("dynamic", shared_data_root)
    refused = as_user("nobody", 'echo "spark.executor.cores 64" >> "$1"', str(dynamic))
    assert refused.returncode != 0 and "Permission denied" in refused.stderr
    assert as_user("nobody", 'cat "$1"', str(dynamic)).stdout == dynamic.read_text()


def test_slot_planning_submits_what_is_missing_and_cancels_surplus_pending() -> None:
    wants = [AppWant("app-1", "a", "dynamic", 1, 1024, 3), AppWant("app-2", "b", "remote", 1, 1024, 1),
             AppWant("app-3", "c", "dynamic", 1, 1024, None)]
    slots = {"app-2": SlotCount(running=1, pending=2), "app-3": SlotCount(pending=5), "gone": SlotCount(pending=1)}
    actions = {a.app_id: a for a in plan_slots(wants, slots)}
    assert actions["app-1"].submit == 3
    assert actions["app-2"].cancel_pending == 2
    assert "app-3" not in actions  # unknown target this pass: left alone
    assert actions["gone"].cancel_pending == 1
    assert remote_wanted(1, 1024, [(1, 2560), (1, 2560)]) == 2
    assert remote_wanted(4, 4096, [(1, 2560)]) == 0
    assert AppWant("app-1", "a", "dynamic", 4, 4096, 3).describe() == "app app-1 (a) wants 3 executors of 4 cores / 4g"


def test_remote_slots_never_scale_a_dynamic_cluster_but_dynamic_slots_do() -> None:
    config = ScalerConfig(mode="dynamic", member_cores=2, member_memory_bytes=3 * GIB, min_members=0,
                          max_members=3, min_age_s=0, idle_s=0)
    assert is_no_scale(slot_job_name("remote", "app-1")) and not is_no_scale(slot_job_name("dynamic", "app-1"))
    remote = PendingJob.from_request(1, cores=1, memory_bytes=GIB, name=slot_job_name("remote", "app-1"),
                                     task_ranges=((1, 2, 1),), no_scale=True)
    decision = plan(Snapshot(pending=(remote,)), config, 1000.0)
    assert decision.add_count == 0 and decision.not_demand[JobHold.NO_SCALE] == (1,)
    dynamic = PendingJob.from_request(2, cores=1, memory_bytes=GIB, name=slot_job_name("dynamic", "app-1"),
                                      task_ranges=((1, 2, 1),))
    assert plan(Snapshot(pending=(dynamic,)), config, 1000.0).add_count == 2
    big = PendingJob.from_request(3, cores=4, memory_bytes=4 * GIB, name=slot_job_name("dynamic", "app-2"))
    decision = plan(Snapshot(pending=(big,)), config, 1000.0)
    assert decision.add_count == 0
    assert "ignored job 3 (spark-dynamic-app-2): wants 4 cores" in decision.ignored[0].message


def _app(user: str) -> api.App:
    return api.App("app-9", "wc", user, "RUNNING", 0, 1024)


def test_executors_run_as_whoever_registered_the_application_and_only_if_spark_agrees() -> None:
    nobody = pwd.getpwnam("nobody").pw_uid
    owner, _ = slot_owner(_app("nobody"), {"app_id": "app-9", OWNER_UID: nobody})
    assert owner is not None and owner.name == "nobody" and owner.uid == nobody
    # SPARK_USER lets a driver claim any name: a registration in one's own name cannot borrow another's
    owner, why = slot_owner(_app("alice"), {"app_id": "app-9", OWNER_UID: nobody})
    assert owner is None and "registered by nobody" in why and "alice" in why
    owner, why = slot_owner(_app("nobody"), None)
    assert owner is None and "PySpark" in why and "kernel" in why
    owner, why = slot_owner(_app("nobody"), {"app_id": "app-9", OWNER_UID: 4_000_000})
    assert owner is None and "4000000" in why
