"""Shared fixtures. Two tiers:

- ``seed_engine``: one engine over the real seed corpus and the real model, built once per test session into
  a temp folder. Every test that uses it (directly or through another fixture) is marked ``model``, as are
  the modules that open engines or servers of their own (``pytestmark``).
- ``fast_engine``: a few short articles indexed with the stand-in encoder of tests/fakes.py: no model, a
  build in well under a second. ``pytest -m "not model"`` runs only the tests that need no model.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# FastAPI's TestClient sends "Host: testserver"; the service answers only the hosts it is told to.
os.environ.setdefault("QA_ALLOWED_HOSTS", '["localhost", "127.0.0.1", "::1", "testserver"]')

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"

# Articles in the seed corpus's layout (headline, blank line, paragraphs) for the fast tier; enough of them
# that a question's terms occur in few passages (BM25's idf turns negative for terms in more than half).
FAST_CORPUS = {
    "torkham.txt": "Torkham crossing reopens after border clash\n\n"
                   "Pakistan closed the Torkham border crossing on Monday after a clash between Taliban fighters "
                   "and Pakistani border forces.\n\n"
                   "Six Taliban fighters were killed in the clash, officials in Nangarhar said.\n\n"
                   "The crossing reopened on Friday for trucks carrying fruit and vegetables.\n\n"
                   "Traders on both sides welcomed the decision.\n",
    "kabul.txt": "Pakistani delegation visits Kabul\n\n"
                 "Defence Minister Khawaja Asif led the Pakistani delegation that visited Kabul.\n\n"
                 "The delegation met Mullah Baradar to discuss trade and border security.\n\n"
                 "He said the talks were frank and useful.\n",
    "sindh.txt": "Floods in Sindh\n\n"
                 "Heavy monsoon rain flooded villages across Sindh province.\n\n"
                 "Relief agencies sent tents and food to the families who lost their homes.\n",
    "wire.txt": "Deadly clash at the Afghan border\n\n"  # wire copy: one sentence also in torkham.txt
                "Six Taliban fighters were killed in the clash, officials in Nangarhar said.\n\n"
                "The border area has seen repeated clashes this year.\n",
    "cricket.txt": "Lahore hosts the cricket final\n\n"
                   "The national cricket final will be played in Lahore on Sunday.\n\n"
                   "Tickets sold out within an hour of going on sale.\n",
    "budget.txt": "Government presents the annual budget\n\n"
                  "The finance ministry presented a budget that raises spending on schools and hospitals.\n\n"
                  "Opposition parties said the plan would increase public debt.\n",
    "rail.txt": "New railway line opens in Punjab\n\n"
                "A new railway line between Multan and Faisalabad opened to passengers this week.\n\n"
                "The journey now takes three hours instead of five.\n",
}


def pytest_collection_modifyitems(items):
    for item in items:
        if "seed_engine" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.model)


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


@pytest.fixture(scope="session")
def fast_engine(tmp_path_factory):
    """An engine over FAST_CORPUS whose vectors come from tests.fakes.HashedEncoder (no model is loaded)."""
    from tests.fakes import engine_over

    return engine_over(tmp_path_factory.mktemp("fast"), FAST_CORPUS)
