import json

from typer.testing import CliRunner

from qa.cli import app

runner = CliRunner()


def test_ask_json_prints_the_answer_object(seed_settings, seed_engine):
    r = runner.invoke(app, ["ask", "How many Taliban members were killed in the clash?", "--json", "-k", "2",
                            "--index-root", str(seed_settings.index_root)])
    assert r.exit_code == 0, r.output
    answer = json.loads(r.stdout)
    assert answer["answered"] is True and answer["question"].startswith("How many")
    first = answer["sentences"][0]
    assert set(first) >= {"text", "doc_id", "title", "sentence_index", "start", "end", "score", "also_in"}
    raw = (seed_settings.corpus_dir / first["doc_id"]).read_text(encoding="utf-8")
    assert raw[first["start"]:first["end"]] == first["text"]


def test_ask_pretty_output_names_the_source(seed_settings, seed_engine):
    r = runner.invoke(app, ["ask", "Who is Shinkai Karokhail?", "--index-root", str(seed_settings.index_root)])
    assert r.exit_code == 0, r.output
    assert "former Afghan ambassador" in r.stdout and "004_efe84b1d27e376f8.txt" in r.stdout


def test_ask_refusal_is_said_plainly(seed_settings, seed_engine):
    r = runner.invoke(app, ["ask", "What is the capital of Australia?", "--index-root", str(seed_settings.index_root)])
    assert r.exit_code == 0 and "not found in the corpus" in r.stdout


def test_bad_input_is_a_one_line_error_with_exit_2(seed_settings):
    for args in (["ask", "  "], ["ask", "x", "--retriever", "magic"], ["ask", "x", "--top-k", "0"]):
        r = runner.invoke(app, args + ["--index-root", str(seed_settings.index_root)])
        assert r.exit_code == 2, (args, r.output)



def test_ask_defaults_come_from_the_settings(seed_settings, seed_engine):
    """Without --top-k and --retriever, `qa ask` answers as QA_TOP_K and QA_RETRIEVER say."""
    r = runner.invoke(app, ["ask", "When did the Taliban return to power in Afghanistan?", "--json",
                            "--index-root", str(seed_settings.index_root)],
                      env={"QA_TOP_K": "3", "QA_RETRIEVER": "bm25"})
    assert r.exit_code == 0, r.output
    answer = json.loads(r.stdout)
    assert answer["retriever"] == "bm25" and len(answer["sentences"]) == 3
    r = runner.invoke(app, ["ask", "When did the Taliban return to power in Afghanistan?", "--json", "-k", "2",
                            "--retriever", "dense", "--index-root", str(seed_settings.index_root)],
                      env={"QA_TOP_K": "3", "QA_RETRIEVER": "bm25"})
    answer = json.loads(r.stdout)
    assert answer["retriever"] == "dense" and len(answer["sentences"]) == 2  # options win over the settings


def test_index_ends_with_a_summary_of_formats_and_skipped_files(tmp_path, seed_engine):
    from tests import makers

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "story.txt").write_text("Floods close the coast road\n\nThe road shut on Monday.\n", encoding="utf-8")
    (corpus / "report.pdf").write_bytes(makers.pdf([["The harbour reopened on Friday."], ["Ships came back."]]))
    (corpus / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    (corpus / "scan.pdf").write_bytes(makers.image_only_pdf())
    (corpus / "latin1.txt").write_bytes("Caf\xe9".encode("latin-1"))
    args = ["index", "--corpus", str(corpus), "--index-root", str(tmp_path / "index")]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "documents by format: pdf 1, txt 1" in r.stdout
    assert "skipped: " in r.stdout and "no text layer 1" in r.stdout and "unsupported type 1" in r.stdout
    assert "scan.pdf" not in r.stdout and "--verbose lists them" in r.stdout
    r = runner.invoke(app, args + ["--verbose"])  # the index is up to date: the summary comes from it
    assert r.exit_code == 0, r.output
    assert "scan.pdf: no text layer" in r.stdout and "latin1.txt: not UTF-8" in r.stdout
    assert "photo.jpg: unsupported type" in r.stdout


def test_ask_shows_the_page_of_a_pdf_citation(tmp_path, seed_engine):
    from tests import makers

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "harbour.pdf").write_bytes(makers.pdf([["The harbour office opened a ferry terminal."],
                                                     ["The ferry terminal handles four hundred passengers an hour."]]))
    args = ["--corpus", str(corpus), "--index-root", str(tmp_path / "index")]
    r = runner.invoke(app, ["ask", "How many passengers does the ferry terminal handle an hour?", *args])
    assert r.exit_code == 0, r.output
    assert "harbour.pdf · page 2 · sentence 1" in r.stdout
    r = runner.invoke(app, ["ask", "How many passengers does the ferry terminal handle an hour?", "--json", *args])
    first = json.loads(r.stdout)["sentences"][0]
    assert first["page"] == 2 and first["doc_id"] == "harbour.pdf"


def _one_error_line(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def test_options_ray_does_not_support_are_refused_in_one_line(tmp_path):
    root = ["--index-root", str(tmp_path / "index")]
    cases = [(["serve", "--ray", "--allow-reload"], "--allow-reload"),
             (["serve", "--ray", "--workers", "2"], "--workers"),
             (["index", "--ray", "--rebuild"], "--rebuild"),
             (["index", "--shards", "3"], "add --ray"),
             (["serve", "--ray-address", "10.0.0.1:6379"], "needs --ray")]
    for args, named in cases:
        r = runner.invoke(app, args + root)
        assert r.exit_code == 2 and named in _one_error_line(r), (args, r.output)


def test_usage_errors_are_one_line(tmp_path):
    for args, named in ((["ask", "x", "--retriever", "magic"], "'magic' is not one of"),
                        (["eval", "--dataset", "nope"], "'nope' is not one of"),
                        (["eval", "--dataset", "coqa", "--gold", "x.jsonl"], "--gold"),
                        (["ask"], "Missing argument")):
        r = runner.invoke(app, args + ["--index-root", str(tmp_path / "index")])
        assert r.exit_code == 2 and named in _one_error_line(r), (args, r.output)


def test_eval_on_your_own_gold_file_names_the_report_after_it(seed_settings, seed_engine, tmp_path):
    gold = tmp_path / "desk-questions.jsonl"
    gold.write_text(json.dumps({"id": "q1", "question": "When did the Taliban return to power in Afghanistan?",
                                "evidence": [{"doc_id": "000_f45c79c16f6a0511.txt",
                                              "quote": "return of Taliban to power in August 2021"}]}) + "\n",
                    encoding="utf-8")
    r = runner.invoke(app, ["eval", "--gold", str(gold), "--retriever", "bm25", "--out", str(tmp_path / "reports"),
                            "--index-root", str(seed_settings.index_root)])
    assert r.exit_code == 0, r.output
    written = sorted(p.name for p in (tmp_path / "reports").iterdir())
    assert written and all(name.startswith("desk-questions-") for name in written)
    report = json.loads(next((tmp_path / "reports").glob("*.json")).read_text(encoding="utf-8"))
    assert report["dataset"] == "desk-questions" and report["meta"]["questions"] == 1
    assert report["meta"]["profile"].startswith("default@")  # the ranking profile measured, by name and hash
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "q1"}\n', encoding="utf-8")
    r = runner.invoke(app, ["eval", "--gold", str(bad), "--index-root", str(seed_settings.index_root)])
    assert r.exit_code == 1 and "bad.jsonl:1: question: Field required" in _one_error_line(r)
