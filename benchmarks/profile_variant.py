"""Write a variant of a ranking profile: the one in service (or ``--profile``) with some values changed.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/profile_variant.py sentence_weights.hybrid.dense=0 --out /tmp/p.json
    QA_PROFILE=/tmp/p.json .venv/bin/qa eval --split tune --retriever hybrid     # the ablation of that weight

Each argument is ``path=value`` (a path into the profile's JSON, the value read as JSON when it parses);
the variant is checked as any profile is (qa/profile.py) and named after the output file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from qa.profile import DEFAULT_PROFILE, load_profile, write_profile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("changes", nargs="+", help="path=value, e.g. abstention.threshold=0.6")
    ap.add_argument("--profile", default=DEFAULT_PROFILE, help="the profile to start from (a name or a path)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    changes = {}
    for pair in args.changes:
        path, _, value = pair.partition("=")
        try:
            changes[path.strip()] = json.loads(value)
        except json.JSONDecodeError:
            changes[path.strip()] = value
    variant = load_profile(args.profile).updated(changes, name=args.out.stem)
    print(f"wrote {write_profile(variant, args.out)} ({variant.label})")


if __name__ == "__main__":
    main()
