"""Reader leases on folders (qa/leases.py): a leased folder is never removed, in this process or from
another one; a released or abandoned lease lets it go; a reader that comes late finds the folder gone."""

from __future__ import annotations

import subprocess
import sys

import pytest

from qa import leases
from qa.config import PROJECT_ROOT


@pytest.fixture()
def build(tmp_path):
    folder = tmp_path / "build-1"
    folder.mkdir()
    (folder / "data.npy").write_bytes(b"rows")
    return folder


def test_a_leased_folder_is_kept_and_removed_once_released(build):
    lease = leases.take(build)
    assert lease.held and leases.leased(build)
    assert not leases.remove_unleased(build, trash=build.parent / ".trash-1")
    assert (build / "data.npy").exists()
    lease.release()
    assert not lease.held and not leases.leased(build)
    assert leases.remove_unleased(build, trash=build.parent / ".trash-1")
    assert not build.exists() and not (build.parent / ".trash-1").exists()


def test_a_lease_is_let_go_when_its_holder_is_garbage(build):
    leases.take(build)  # not kept: released as the object goes
    assert not leases.leased(build)


def test_a_lease_held_by_another_process_keeps_the_folder_until_it_exits(build):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from qa import leases\n"
        f"lease = leases.take(Path({str(build)!r})); print('held', flush=True); time.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True, cwd=str(PROJECT_ROOT))
    try:
        assert holder.stdout.readline().strip() == "held"
        assert not leases.remove_unleased(build, trash=build.parent / ".trash-1")
    finally:
        holder.kill()  # killed, not released: the kernel lets its lease go
        holder.wait()
    assert leases.remove_unleased(build, trash=build.parent / ".trash-1")


def test_a_reader_that_comes_after_the_removal_is_told_the_folder_is_gone(build):
    assert leases.remove_unleased(build, trash=build.parent / ".trash-1")
    with pytest.raises(leases.FolderGone):
        leases.take(build)
    assert leases.remove_unleased(build, trash=build.parent / ".trash-1")  # already gone: nothing to do
