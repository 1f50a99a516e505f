"""Changing a built index: wall time of `qa index` after a file changes, and of `PUT /documents/{id}` until
the document answers a question, with the time spent embedding its text apart.

    .venv/bin/python benchmarks/update_bench.py --copies 1     # the SQuAD-half corpus: 646 paragraphs
    .venv/bin/python benchmarks/update_bench.py --copies 24    # 15,504 documents, 101,496 sentences
    .venv/bin/python benchmarks/update_bench.py --copies 240 --http-only   # about a million sentences

The corpus is every paragraph of ``squad-v2.0-dev-half.json.gz`` (QA_SHARED_DATA_DIR) written as a
``.txt`` file, ``"<article title> <copy>\\n\\n<paragraph>\\n"``, ``--copies`` times into
``--work/copies-N/corpus``; its index is ``--work/index/copies-N`` (the index root, and so the exported
query model, is shared by the runs). Copies differ in their headline only: the index holds every sentence
of every copy (split, stored, searched), while each distinct text is embedded once, so the first build of
100,000 sentences takes minutes rather than an hour. The first build is not timed; it is skipped when the
index is already current.

Steps, each a fresh process as a user runs them:
  1. `qa index` with nothing changed; one new document written into the folder, then `qa index`; the
     document removed, then `qa index` (skipped with ``--http-only``);
  2. `qa serve --workers 1` with an admin token; ``--puts`` new documents (default 20), each `PUT
     /documents/{id}` and then `POST /ask` with its question: the time from sending the PUT to its
     response, and to the answer (which should cite the new document); the embedding time of each is the
     new segment's ``embed_seconds``; then each is `DELETE`d. Background merges run meanwhile, as they would.
`build_seconds` is the index build alone (from the manifest): the rest of a `qa index` is starting
Python, reading and fingerprinting the corpus, and loading the new build. The first `qa index`'s wall time
and peak RSS (its largest process: ``getrusage`` of the children) and the server's peak RSS (``VmHWM``,
read before it stops) are reported too; ``ask_seconds`` is the question after each PUT alone.
``--near-limit 0`` serves with a copy of the ranking profile whose near-sentence table is off (its first
computation is quadratic in the sentences: hours at a million; docs/PERFORMANCE.md). Prints a JSON report.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
QA = [sys.executable, "-m", "qa.cli"]
TOKEN = "update-bench-token"
ADDED = ("zz-observatory.txt", "Observatory opens\n\nThe Zorvane observatory was opened by astronomer Ilse Varga "
         "in Quenton. Its telescope has a mirror of eight metres.\n", "Who opened the Zorvane observatory?")


def write_corpus(shared: Path, folder: Path, copies: int) -> int:
    with gzip.open(shared / "squad-v2.0-dev-half.json.gz", "rt", encoding="utf-8") as fh:
        articles = json.load(fh)["data"]
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for c in range(copies):
        for a, article in enumerate(articles):
            title = article["title"].replace("_", " ")
            for p, para in enumerate(article["paragraphs"]):
                path = folder / f"squad-{a:02d}-{p:03d}-{c:02d}.txt"
                text = f"{title} {c + 1}\n\n{para['context']}\n"
                if not path.exists():
                    path.write_text(text, encoding="utf-8")
                written += 1
    return written


def qa_index(env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run([*QA, "index"], env=env, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return round(time.perf_counter() - t0, 2)


def manifest(index_dir: Path) -> dict:
    return json.loads((index_dir / "current" / "manifest.json").read_text(encoding="utf-8"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_documents(n: int) -> list[tuple[str, str, str]]:
    """``n`` short made-up news items (id, text, a question only it answers), each about a name of its own."""
    first = ["Zor", "Vel", "Kes", "Ald", "Mar", "Tor", "Quen", "Isl", "Brin", "Oster"]
    second = ["vane", "mora", "trel", "gate", "low", "ham", "ton", "ke", "dale", "wick"]
    out = []
    for k in range(n):
        place = first[k % 10] + second[(k // 10 + 3 * k) % 10]
        text = (f"Ferry news {k}\n\nThe ferry to {place} now sails {k % 5 + 2} times a day from pier {k + 11}. "
                f"Tickets to {place} cost {k + 4} crowns. The harbour master said the new timetable starts in "
                f"{['March', 'April', 'May', 'June'][k % 4]}.\n")
        out.append((f"zz-ferry-{k:02d}.txt", text, f"From which pier does the ferry to {place} sail?"))
    return out


def percentiles(values: list[float]) -> dict:
    xs = sorted(values)
    at = lambda q: xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]  # noqa: E731
    return {"p50": round(at(0.5), 3), "p95": round(at(0.95), 3), "max": round(xs[-1], 3)}


def newest_segment(index_dir: Path) -> dict:
    """The manifest of the last segment the published index lists (an update's new segment)."""
    published = index_dir / "current"
    top = json.loads((published / "manifest.json").read_text(encoding="utf-8"))
    name = top["segments"][-1]["name"] if "segments" in top else None
    return json.loads((index_dir / name / "manifest.json").read_text(encoding="utf-8")) if name else top


def wait_ready(client: httpx.Client, seconds: float = 1800) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if client.get("/health").json().get("ready"):
                return
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(0.5)


def timed_updates(client: httpx.Client, token: str, docs: list[tuple[str, str, str]],
                  new_segment: Callable[[str], dict], segment_count: Callable[[], object],
                  between: Callable[[], None] = lambda: None) -> dict:
    """Each of ``docs`` PUT, then its question asked: the time to the PUT's response and to the answer, and
    whether the answer cites it; the embedding time is the ``embed_seconds`` of ``new_segment(doc_id)`` (the
    manifest of the segment the PUT wrote); then ``between()``, then each DELETEd."""
    auth = {"Authorization": f"Bearer {token}"}
    put_s, answer_s, ask_s, embed_s, cited, segments, delete_s = [], [], [], [], 0, [], []
    client.post("/ask", json={"question": "warm up"})
    for doc_id, text, question in docs:
        t0 = time.perf_counter()
        client.put(f"/documents/{doc_id}", content=text.encode(),
                   headers={**auth, "Content-Type": "text/plain"}).raise_for_status()
        put_s.append(time.perf_counter() - t0)
        answer = client.post("/ask", json={"question": question}).json()
        answer_s.append(time.perf_counter() - t0)
        ask_s.append(answer_s[-1] - put_s[-1])
        cited += bool(answer["sentences"]) and answer["sentences"][0]["doc_id"] == doc_id
        embed_s.append(float(new_segment(doc_id).get("embed_seconds", 0.0)))
        segments.append(segment_count())
    between()
    for doc_id, _, _ in docs:
        t1 = time.perf_counter()
        client.delete(f"/documents/{doc_id}", headers=auth).raise_for_status()
        delete_s.append(time.perf_counter() - t1)
    apart = [a - e for a, e in zip(answer_s, embed_s)]
    return {"puts": len(docs), "put_seconds": percentiles(put_s), "put_until_answer_seconds": percentiles(answer_s),
            "embed_seconds": percentiles(embed_s), "put_until_answer_without_embed_seconds": percentiles(apart),
            "ask_seconds": percentiles(ask_s), "answers_citing_the_new_document": cited,
            "segments_after_each_put": segments, "delete_seconds": percentiles(delete_s)}


def segment_count(index_dir: Path) -> int:
    top = json.loads((index_dir / "current" / "manifest.json").read_text(encoding="utf-8"))
    return len(top.get("segments", [1]))


def serve_and_put(env: dict, log: Path, index_dir: Path, puts: int) -> dict:
    """``qa serve --workers 1``; ``puts`` new documents PUT one after the other, each followed by its question;
    then each DELETEd (:func:`timed_updates`)."""
    port = free_port()
    server = subprocess.Popen([*QA, "serve", "--workers", "1", "--port", str(port), "--no-access-log"],
                              env={**env, "QA_ADMIN_TOKEN": TOKEN}, cwd=ROOT, stdout=log.open("w"),
                              stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            wait_ready(client)
            report = timed_updates(client, TOKEN, new_documents(puts), lambda _: newest_segment(index_dir),
                                   lambda: segment_count(index_dir))
            return {**report, "server_peak_rss_mib": peak_rss_mib(server.pid)}
    finally:
        server.terminate()
        server.wait(60)


def peak_rss_mib(pid: int) -> float | None:
    """A live process's peak resident memory (``VmHWM``), in MiB."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    kib = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), None)
    return round(kib / 1024, 1) if kib is not None else None


def profile_without_near_table(folder: Path) -> Path:
    """A copy of the ranking profile in service with ``ranking.near_limit`` 0, written into ``folder``."""
    sys.path.insert(0, str(ROOT))
    from qa.profile import load_profile, write_profile

    return write_profile(load_profile().updated({"ranking.near_limit": 0}), folder / "profile-near-limit-0.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/qa-update-bench"))
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--puts", type=int, default=20, help="documents PUT (then DELETEd) through the server")
    parser.add_argument("--http-only", action="store_true", help="skip the `qa index` steps")
    parser.add_argument("--near-limit", type=int, choices=[0], help="0: serve without the near-sentence table")
    args = parser.parse_args()
    base = args.work / f"copies-{args.copies}"
    corpus, index_root = base / "corpus", args.work / "index"
    for name in [ADDED[0], *(d[0] for d in new_documents(args.puts))]:
        (corpus / name).unlink(missing_ok=True)
    files = write_corpus(args.shared, corpus, args.copies)
    env = {**os.environ, "QA_CORPUS_DIR": str(corpus), "QA_INDEX_ROOT": str(index_root), "HF_HUB_OFFLINE": "1",
           "QA_INDEX_NAME": base.name,
           "QA_DATA_DIR": str(base / "var"), "PYTHONPATH": str(ROOT)}
    if args.near_limit == 0:
        env["QA_PROFILE"] = str(profile_without_near_table(base))
    index_dir = index_root / base.name
    t_first = qa_index(env)  # the first build, or an update from a previous run's state
    report: dict = {"copies": args.copies, "documents": files, "first_or_catch_up_seconds": t_first,
                    "first_or_catch_up_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
                                                            / 1024, 1), "near_limit": args.near_limit}
    m = manifest(index_dir)
    report["sentences"], report["passages"] = m["sentences"], m["passages"]
    report["segments"] = len(m.get("segments", [1]))
    report["build_seconds"] = m.get("build_seconds")
    if not args.http_only:
        report["unchanged_index_seconds"] = qa_index(env)
        doc_id, text, question = ADDED
        (corpus / doc_id).write_text(text, encoding="utf-8")
        report["add_one_index_seconds"] = qa_index(env)
        m = manifest(index_dir)
        report["add_one_build_seconds"] = m["build_seconds"]
        report["add_one_split_documents"], report["add_one_encoded_texts"] = m["split_documents"], m["encoded_texts"]
        (corpus / doc_id).unlink()
        report["remove_one_index_seconds"] = qa_index(env)
    report["http"] = serve_and_put(env, base / "serve.log", index_dir, args.puts)
    report["load_average"] = os.getloadavg()
    report["cpus"] = os.cpu_count()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
