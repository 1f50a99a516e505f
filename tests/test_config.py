from pathlib import Path

from qa.config import Settings


def test_two_corpus_folders_of_the_same_name_get_their_own_index(tmp_path):
    first, second = tmp_path / "desk-a" / "news", tmp_path / "desk-b" / "news"
    a = Settings(corpus_dir=first, index_root=tmp_path / "index").index_dir()
    b = Settings(corpus_dir=second, index_root=tmp_path / "index").index_dir()
    assert a != b and a.parent == b.parent == tmp_path / "index"
    assert a.name.startswith("news-") and b.name.startswith("news-")


def test_the_same_folder_named_two_ways_has_one_index(tmp_path, monkeypatch):
    (tmp_path / "news").mkdir()
    monkeypatch.chdir(tmp_path)
    relative = Settings(corpus_dir=Path("news"), index_root=tmp_path / "index").index_dir()
    absolute = Settings(corpus_dir=tmp_path / "news", index_root=tmp_path / "index").index_dir()
    assert relative == absolute


def test_an_index_name_chooses_the_folder(tmp_path):
    s = Settings(corpus_dir=tmp_path / "news", index_root=tmp_path / "index", index_name="archive")
    assert s.index_dir() == tmp_path / "index" / "archive"
