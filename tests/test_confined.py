"""Files written and removed inside a folder without leaving it (qa/confined.py), with the links, files in the
way and look-alike names a hostile client or an unlucky operator would put there."""

from __future__ import annotations

import errno
import os

import pytest

from qa import confined
from qa.confined import Conflict, Folder, NameTooLong


@pytest.fixture()
def tree(tmp_path):
    """corpus/ with a document, a folder named like a document, and links to a folder and a file outside."""
    corpus, outside = tmp_path / "corpus", tmp_path / "outside"
    corpus.mkdir()
    outside.mkdir()
    (outside / "target.txt").write_text("outside\n")
    (corpus / "a.txt").write_text("inside\n")
    (corpus / "dir.txt").mkdir()
    (corpus / "linkdir").symlink_to(outside)
    (corpus / "linkfile.txt").symlink_to(outside / "target.txt")
    return corpus, outside


def snapshot(folder):
    return sorted((p.relative_to(folder).as_posix(), p.is_symlink() or p.read_bytes() if p.is_file() else None)
                  for p in folder.rglob("*"))


@pytest.mark.parametrize("rel", ["linkdir/x.txt", "linkdir/new/x.txt", "linkfile.txt", "a.txt/x.txt", "dir.txt"])
def test_a_write_through_a_link_or_into_what_is_not_a_folder_is_refused_and_changes_nothing(tree, rel):
    corpus, outside = tree
    before, outside_before = snapshot(corpus), snapshot(outside)
    with pytest.raises(Conflict) as info:
        Folder(corpus).write(rel, b"new\n")
    assert rel.split("/")[0] in str(info.value) and str(corpus) not in str(info.value)
    assert snapshot(corpus) == before and snapshot(outside) == outside_before


@pytest.mark.parametrize("rel", ["linkdir/target.txt", "linkfile.txt", "dir.txt", "a.txt/x.txt"])
def test_a_delete_through_a_link_or_of_a_folder_is_refused(tree, rel):
    corpus, outside = tree
    before, outside_before = snapshot(corpus), snapshot(outside)
    with pytest.raises(Conflict):
        Folder(corpus).remove(rel)
    assert snapshot(corpus) == before and snapshot(outside) == outside_before


def test_write_read_and_remove_a_document_in_new_folders(tree):
    corpus, _ = tree
    folder = Folder(corpus)
    assert folder.write("news/2026/x.txt", b"one\n") == ["news", "news/2026"]
    assert folder.read("news/2026/x.txt") == b"one\n"
    assert folder.write("news/2026/x.txt", b"two\n") == []  # replaced in place, nothing made
    assert (corpus / "news" / "2026" / "x.txt").read_bytes() == b"two\n"
    assert not [p for p in corpus.rglob(".*")]  # no temporary file left
    folder.remove("news/2026/x.txt")
    assert folder.read("news/2026/x.txt") is None and folder.read("nowhere/x.txt") is None
    with pytest.raises(FileNotFoundError):
        folder.remove("news/2026/x.txt")
    folder.remove_folders(["news", "news/2026"])
    assert not (corpus / "news").exists()


def test_a_failed_write_leaves_no_temporary_file_and_no_folder_it_made(tree, monkeypatch):
    corpus, _ = tree
    before = snapshot(corpus)

    def full_disk(src, dst, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(confined.os, "rename", full_disk)
    with pytest.raises(OSError) as info:
        Folder(corpus).write("made/here/x.txt", b"text\n")
    assert info.value.errno == errno.ENOSPC
    assert snapshot(corpus) == before  # no .qa-*.tmp, no made/ or made/here/


def test_remove_folders_leaves_a_folder_someone_else_wrote_into(tree):
    corpus, _ = tree
    folder = Folder(corpus)
    made = folder.write("shared/x.txt", b"x\n")
    (corpus / "shared" / "other.txt").write_text("another writer's\n")
    folder.remove("shared/x.txt")
    folder.remove_folders(made)
    assert (corpus / "shared" / "other.txt").exists()


def test_names_that_only_look_different_are_refused(tree):
    corpus, _ = tree
    (corpus / "caf\u00e9.txt").write_text("nfc\n")
    (corpus / "News").mkdir()
    folder = Folder(corpus)
    for rel in ["A.txt", "cafe\u0301.txt", "CAF\u00c9.TXT", "news/x.txt", "\uff21.txt"]:  # case, NFD, fullwidth
        with pytest.raises(Conflict, match="only in case"):
            folder.write(rel, b"x\n")
    folder.write("a.txt", b"replaced\n")  # the same name is not a look-alike of itself
    assert (corpus / "a.txt").read_bytes() == b"replaced\n"


def test_the_temporary_name_fits_beside_any_name_the_file_system_takes(tree):
    corpus, _ = tree
    name = "n" * 251 + ".txt"  # 255 bytes: the longest name a Linux file system takes
    Folder(corpus).write(name, b"long\n")
    assert (corpus / name).read_bytes() == b"long\n"
    assert len(confined.TEMP_PREFIX) + 16 + len(".tmp") < 255


def test_a_name_the_file_system_refuses_is_a_refusal_not_an_os_error(tree):
    corpus, _ = tree
    with pytest.raises(NameTooLong):
        Folder(corpus).write("deep/" + "\u00e9" * 200 + ".txt", b"x\n")  # 404 bytes
    assert not (corpus / "deep").exists()


def test_a_pipe_in_place_of_a_document_is_refused_without_blocking(tree):
    corpus, _ = tree
    os.mkfifo(corpus / "pipe.txt")
    with pytest.raises(Conflict, match="special file"):
        Folder(corpus).read("pipe.txt")
    with pytest.raises(Conflict):
        Folder(corpus).write("pipe.txt", b"x\n")
