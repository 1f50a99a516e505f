"""Adding one document to a built index: wall time of `qa index`, and of `PUT /documents/{id}` until the
document answers a question.

    .venv/bin/python benchmarks/update_bench.py --copies 1     # the SQuAD-half corpus: 646 paragraphs
    .venv/bin/python benchmarks/update_bench.py --copies 24    # 15,504 documents, 101,496 sentences

The corpus is every paragraph of ``squad-v2.0-dev-half.json.gz`` (QA_SHARED_DATA_DIR) written as a
``.txt`` file, ``"<article title> <copy>\\n\\n<paragraph>\\n"``, ``--copies`` times into
``--work/copies-N/corpus``; its index is ``--work/index/copies-N`` (the index root, and so the exported
query model, is shared by the runs). Copies differ in their headline
only: the index holds every sentence of every copy (split, stored, searched), while each distinct text is
embedded once, so the first build of 100,000 sentences takes minutes rather than an hour. The first build
is not timed; it is skipped when the index is already current.

Steps, each a fresh process as a user runs them:
  1. `qa index` with nothing changed;
  2. one new document written into the folder, then `qa index` (the incremental update);
  3. `qa serve --workers 1` with an admin token; `PUT /documents/{id}` of another new document, then
     `POST /ask` with its question: the time from sending the PUT to the answer citing the new document;
     then `DELETE` of it. The two added documents are removed at the end (and the index updated).
`build_seconds` is the index build alone (from the manifest): the rest of a `qa index` is starting
Python, reading and fingerprinting the corpus, and loading the new build. Prints a JSON report.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
QA = [sys.executable, "-m", "qa.cli"]
TOKEN = "update-bench-token"
ADDED = ("zz-observatory.txt", "Observatory opens\n\nThe Zorvane observatory was opened by astronomer Ilse Varga "
         "in Quenton. Its telescope has a mirror of eight metres.\n", "Who opened the Zorvane observatory?")
PUT = ("zz-ferry.txt", "Ferry news\n\nThe Orlen ferry now sails twice a day to the island of Vesk. Tickets cost "
       "nine crowns.\n", "How often does the Orlen ferry sail to Vesk?")


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


def serve_and_put(env: dict, log: Path) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([*QA, "serve", "--workers", "1", "--port", str(port), "--no-access-log"],
                              env={**env, "QA_ADMIN_TOKEN": TOKEN}, cwd=ROOT, stdout=log.open("w"),
                              stderr=subprocess.STDOUT)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        with httpx.Client(base_url=url, timeout=600) as client:
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline:
                try:
                    if client.get("/health").json().get("ready"):
                        break
                except (httpx.TransportError, ValueError):
                    pass
                time.sleep(0.5)
            doc_id, text, question = PUT
            t0 = time.perf_counter()
            put = client.put(f"/documents/{doc_id}", content=text.encode(),
                             headers={**auth, "Content-Type": "text/plain"})
            put.raise_for_status()
            t_put = time.perf_counter() - t0
            answer = client.post("/ask", json={"question": question}).json()
            t_answer = time.perf_counter() - t0
            cited = answer["sentences"][0]["doc_id"] if answer["sentences"] else None
            t1 = time.perf_counter()
            client.delete(f"/documents/{doc_id}", headers=auth).raise_for_status()
            t_delete = time.perf_counter() - t1
        return {"put_seconds": round(t_put, 2), "put_until_answer_seconds": round(t_answer, 2),
                "answer_cites_new_document": cited == doc_id, "delete_seconds": round(t_delete, 2)}
    finally:
        server.terminate()
        server.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/qa-update-bench"))
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    base = args.work / f"copies-{args.copies}"
    corpus, index_root = base / "corpus", args.work / "index"
    for name in (ADDED[0], PUT[0]):
        (corpus / name).unlink(missing_ok=True)
    files = write_corpus(args.shared, corpus, args.copies)
    env = {**os.environ, "QA_CORPUS_DIR": str(corpus), "QA_INDEX_ROOT": str(index_root), "HF_HUB_OFFLINE": "1",
           "QA_INDEX_NAME": base.name,
           "QA_DATA_DIR": str(base / "var"), "PYTHONPATH": str(ROOT)}
    index_dir = index_root / base.name
    t_first = qa_index(env)  # the first build, or an update from a previous run's state
    report: dict = {"copies": args.copies, "documents": files, "first_or_catch_up_seconds": t_first}
    m = manifest(index_dir)
    report["sentences"], report["passages"] = m["sentences"], m["passages"]
    report["unchanged_index_seconds"] = qa_index(env)
    doc_id, text, question = ADDED
    (corpus / doc_id).write_text(text, encoding="utf-8")
    report["add_one_index_seconds"] = qa_index(env)
    m = manifest(index_dir)
    report["add_one_build_seconds"] = m["build_seconds"]
    report["add_one_split_documents"], report["add_one_encoded_texts"] = m["split_documents"], m["encoded_texts"]
    report["http"] = serve_and_put(env, base / "serve.log")
    (corpus / doc_id).unlink()
    report["remove_one_index_seconds"] = qa_index(env)
    report["load_average"] = os.getloadavg()
    report["cpus"] = os.cpu_count()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
