"""Shared fixtures: one engine over the real seed corpus, built once per test session into a temp folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# FastAPI's TestClient sends "Host: testserver"; the service answers only the hosts it is told to.
os.environ.setdefault("QA_ALLOWED_HOSTS", '["localhost", "127.0.0.1", "::1", "testserver"]')

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"


@pytest.fixture(scope="session")
def seed_settings(tmp_path_factory):
    from qa.config import Settings

    base = tmp_path_factory.mktemp("qa")
    return Settings(corpus_dir=SEEDS, index_root=base / "index", data_dir=base / "var")


@pytest.fixture(scope="session")
def seed_engine(seed_settings):
    from qa.engine import Engine

    return Engine.open(seed_settings)


@pytest.fixture(scope="session")
def encoder(seed_engine):
    return seed_engine.encoder
