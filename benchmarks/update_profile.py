"""Where an update's time goes: cProfile of two updates (`qa.updates.with_files`, as a `PUT` applies one) and
the question after each, in one process over an index `benchmarks/update_bench.py` built; the two documents
are then deleted again, so the index stays that of the corpus folder.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/update_profile.py --work /work/qa-bench-1m --copies 240

The index is served with the profile `update_bench.py --near-limit 0` wrote when that file exists.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/qa-update-bench"))
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--lines", type=int, default=45, help="rows of each profile printed")
    args = parser.parse_args()
    base = args.work / f"copies-{args.copies}"
    os.environ.update({"QA_CORPUS_DIR": str(base / "corpus"), "QA_INDEX_ROOT": str(args.work / "index"),
                       "QA_INDEX_NAME": base.name, "QA_DATA_DIR": str(base / "var"), "HF_HUB_OFFLINE": "1"})
    if (base / "profile-near-limit-0.json").exists():
        os.environ["QA_PROFILE"] = str(base / "profile-near-limit-0.json")
    from qa import updates
    from qa.config import Settings
    from qa.engine import Engine

    settings = Settings()
    t0 = time.perf_counter()
    engine = Engine.open(settings, check_corpus=False)
    print(f"open {time.perf_counter() - t0:.1f} s", flush=True)
    engine.ask("warm up")
    names = ["zz-profile-a.txt", "zz-profile-b.txt"]
    for k, name in enumerate(names):
        (settings.corpus_dir / name).write_text(f"Ferry news {k}\n\nThe ferry to Brindale{k} now sails {k + 2} times "
                                                f"a day from pier {k + 40}.\n", encoding="utf-8")
        profile = cProfile.Profile()
        profile.enable()
        t0 = time.perf_counter()
        engine = updates.with_files(engine, [name])
        t1 = time.perf_counter()
        answer = engine.ask(f"From which pier does the ferry to Brindale{k} sail?")
        t2 = time.perf_counter()
        profile.disable()
        cited = answer.sentences[0].citation.doc_id if answer.sentences else None
        print(f"{name}: update {t1 - t0:.2f} s, question {t2 - t1:.2f} s, cites {cited}")
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(args.lines)
        print(out.getvalue(), flush=True)
    for name in names:
        (settings.corpus_dir / name).unlink()
        engine = updates.with_files(engine, [name])


if __name__ == "__main__":
    main()
