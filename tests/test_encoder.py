"""Which encoder built an index and its ONNX export: a model folder is known by its names and a hash of its
weights, so an index or an export made with one model is never used with another (QA_MODEL_PATH)."""

from __future__ import annotations

import shutil

from qa.config import Settings, bundled_model_path, model_fingerprint, model_key
from qa.engine import build_spec
from qa.index import index_is_current


def _folder(root, name: str, weights: bytes):
    folder = root / "models" / name
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(weights)
    return folder


def test_folders_with_other_weights_have_other_keys(tmp_path):
    weights = bytes(range(256)) * 40_000  # 10 MB: the hash samples blocks across the file
    a = _folder(tmp_path / "a", "encoder", weights)
    b = _folder(tmp_path / "b", "encoder", weights[:-1] + b"\x01")  # one byte at the end differs
    c = _folder(tmp_path / "c", "encoder", weights)
    assert model_fingerprint(a) == model_fingerprint(c) != model_fingerprint(b)
    assert model_key(a) == model_key(c) == f"models-encoder-{model_fingerprint(a)}"
    assert model_key(a) != model_key(b)


def test_the_onnx_export_and_the_index_spec_name_the_model(tmp_path):
    custom = _folder(tmp_path, "encoder", b"weights of a fine-tuned model" * 1000)
    base, other = Settings(index_root=tmp_path), Settings(index_root=tmp_path, model_path=custom)
    assert base.resolved_model_path() == bundled_model_path()
    assert base.onnx_path().parent.name == model_key(bundled_model_path())
    assert other.onnx_path().parent.name.startswith("models-encoder-")
    assert base.onnx_path() != other.onnx_path()
    assert build_spec(base).model == model_key(bundled_model_path())
    assert build_spec(other).model == f"models-encoder-{model_fingerprint(custom)}" != build_spec(base).model


def test_an_index_built_with_another_model_is_rebuilt(seed_engine, tmp_path):
    docs = list(seed_engine.index.documents.values())
    target = seed_engine.settings.index_dir()
    assert seed_engine.index.manifest["model"] == model_key(seed_engine.settings.resolved_model_path())
    assert index_is_current(target, docs, build_spec(seed_engine.settings)) == (True, "up to date")
    weights = bundled_model_path() / "model.safetensors"
    copy = tmp_path / "models" / "encoder"
    copy.mkdir(parents=True)
    shutil.copy(weights, copy / "model.safetensors")
    with (copy / "model.safetensors").open("r+b") as fh:  # the same file with other weights at the end
        fh.seek(-4, 2)
        fh.write(b"\x00\x01\x02\x03")
    other = seed_engine.settings.model_copy(update={"model_path": copy})
    assert index_is_current(target, docs, build_spec(other)) == (False, "index settings changed")
