"""The ``qa`` command. Thin: every command opens the same :class:`qa.engine.Engine` and prints its answer.

Output treats every string from a user or the corpus as text: the consoles interpret no Rich markup or
emoji codes (styles are given as arguments, never inside strings), and :func:`visible` shows control
characters escaped, so a document cannot move the cursor or recolour the terminal. A failure of any
command is one ``error:`` line on stderr and a non-zero exit (:class:`OneLineErrors`), never a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console, Group
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.text import Text
from typer.core import TyperGroup

from qa.config import RETRIEVERS, Settings
from qa.types import Answer, Citation, Disagreement

log = logging.getLogger(__name__)

# C0 and C1 control characters (but newline and tab), DEL, and the bidirectional overrides and isolates
# that reorder what a terminal shows.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible(text: str) -> str:
    """``text`` with every control character shown as its escape (ESC as ``\\x1b``), newlines and tabs kept."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class OneLineErrors(TyperGroup):
    """Every command's failure becomes one ``error:`` line on stderr and exit status 1 (130 on Ctrl-C);
    with ``--verbose`` the traceback is logged as well. Typer's own usage errors and exits pass through."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):  # usage errors: Typer says them itself
            raise
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except Exception as exc:
            log.info("the traceback:", exc_info=exc)
            fail(describe(exc), code=1)


def describe(exc: BaseException) -> str:
    """An exception in one line: its message, and its kind when that is not an expected one."""
    from qa.index import IndexUnavailable

    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, (OSError, ValueError, IndexUnavailable)):
        return message
    return f"{message} ({type(exc).__name__}; --verbose shows where)"


app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True,
                  help="Cited, extractive question answering over a news corpus.")
out = Console(markup=False, emoji=False, highlight=False)
err = Console(stderr=True, markup=False, emoji=False, highlight=False, soft_wrap=True)  # a line stays one line

CorpusOpt = Annotated[Optional[Path], typer.Option("--corpus", help="folder of documents (.txt .md .html .pdf .docx .odt .epub .rtf .eml .jsonl), subfolders included (default: seeds/)")]
IndexOpt = Annotated[Optional[Path], typer.Option("--index-root", help="where indexes are built (default: index/)")]
# Unset options fall back to Settings (QA_TOP_K, QA_RETRIEVER), as the HTTP API's do.
TopKOpt = Annotated[Optional[int], typer.Option("--top-k", "-k", min=1, max=20,
                                                help="sentences to return (default: QA_TOP_K, 5)")]
RetrieverOpt = Annotated[Optional[str], typer.Option(help=f"{' | '.join(RETRIEVERS)} (default: QA_RETRIEVER, hybrid)")]
RayOpt = Annotated[bool, typer.Option("--ray", help="the sharded index on Ray (docs/SCALE.md): on a local 2-CPU "
                                                   "instance, or the cluster at --ray-address")]
RayAddressOpt = Annotated[Optional[str], typer.Option(help="with --ray: the Ray cluster to use (e.g. HOST:6379)")]


def settings_from(corpus: Path | None, index_root: Path | None, **overrides) -> Settings:
    values = {k: v for k, v in {"corpus_dir": corpus, "index_root": index_root, **overrides}.items() if v is not None}
    return Settings(**values)


def error_line(message: str) -> Text:
    return Text.assemble(("error:", "red"), " ", visible(message))


def fail(message: str, code: int = 2) -> None:
    err.print(error_line(message))
    raise typer.Exit(code)


def note(message: str) -> None:
    """A dim line on stderr (what the command is doing)."""
    err.print(visible(message), style="dim")


def open_engine(settings: Settings, *, rebuild: bool = False, quiet: bool = False):
    """Open the engine, showing a progress bar only when the index has to be built."""
    from qa.embed import start_query_encoder

    query_encoder = start_query_encoder(settings)  # first: it loads while the engine's modules and index do
    from qa.engine import Engine
    from qa.index import IndexUnavailable

    progress = build_progress(quiet)
    tasks: dict[str, int] = {}
    stages = {"split": ("splitting", "documents"), "embed": ("embedding", "sentences")}

    def report(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            progress.start()
            label, unit = stages.get(stage, (stage, "items"))
            tasks[stage] = progress.add_task(label, total=total, unit=unit)
        progress.update(tasks[stage], completed=done, total=total)

    def announce(why: str) -> None:
        if not quiet:
            note(f"building the index of {settings.corpus_dir} ({why})…")

    try:
        return Engine.open(settings, rebuild=rebuild, progress=report, on_rebuild=announce,
                           query_encoder=query_encoder)
    except (IndexUnavailable, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    finally:
        if progress.live.is_started:
            progress.stop()


def build_progress(quiet: bool) -> Progress:
    """An index build's progress on stderr: per stage, done of total (documents split, sentences
    embedded), the rate and the time left."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[unit]}"), RateColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), console=err, transient=True, disable=quiet)


class RateColumn(ProgressColumn):
    """Items per second of a task (rich's own speed column counts bytes)."""

    def render(self, task) -> Text:
        return Text(f"{task.speed:,.0f}/s" if task.speed else "–/s", style="progress.data.speed")


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log what happens")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@app.command()
def index(corpus: CorpusOpt = None, index_root: IndexOpt = None,
          rebuild: Annotated[bool, typer.Option(help="rebuild even when the index is up to date")] = False,
          ray: RayOpt = False, ray_address: RayAddressOpt = None,
          shards: Annotated[int, typer.Option(min=1, help="with --ray: shards to build")] = 2,
          workers: Annotated[int, typer.Option(min=1, help="with --ray: encoder actors")] = 2,
          verbose: Annotated[bool, typer.Option("--verbose", "-v", help="list every file not indexed")] = False) -> None:
    """Build (or refresh) the index of the corpus and say what it holds and which files it skipped (and why);
    with --ray, as shards on Ray."""
    settings = settings_from(corpus, index_root)
    if ray:
        from qa.cluster.build import build_sharded, ensure_onnx_export, ray_session
        from qa.ingest import IngestLimits, load_corpus

        docs = load_corpus(settings.corpus_dir, IngestLimits.from_settings(settings))
        ensure_onnx_export(settings, docs)
        with ray_session(ray_address):
            built = build_sharded(docs, settings, shards=shards, workers=workers, report=note)
        m = built.manifest
        out.print(Text.assemble("sharded index ", (visible(str(built.path)), "bold"),
                                f": {len(m['shards'])} shards, {m['sentences']} sentences, {m['passages']} passages; "
                                f"built in {m['build_seconds']} s"))
        return
    engine = open_engine(settings, rebuild=rebuild)
    m = engine.index.manifest
    out.print(Text.assemble("index ", (visible(str(settings.index_dir())), "bold"),
                            visible(f": {m['documents']} documents, {m['sentences']} sentences, {m['passages']} "
                                    f"passages; model {m['model']} ({m['dim']} d); built {m['built_at']}")))
    print_corpus_summary(engine.index.documents.values(), engine.index.skipped, verbose)


def print_corpus_summary(documents, skipped, verbose: bool) -> None:
    """Documents by format, files not indexed by reason, and (``verbose``) each of those files."""
    from collections import Counter

    from qa.formats import format_of

    by_format = Counter(format_of(d.source or d.doc_id) for d in documents)
    out.print(visible("documents by format: " + ", ".join(f"{f} {n:,}" for f, n in sorted(by_format.items()))))
    if not skipped:
        out.print("skipped: none", style="dim")
        return
    by_reason = Counter(s.reason for s in skipped)
    out.print(Text.assemble(("skipped: ", "yellow"), visible(", ".join(f"{r} {n:,}" for r, n in by_reason.most_common())),
                            ("" if verbose else " (--verbose lists them)", "dim")))
    for s in skipped if verbose else ():
        out.print(visible(f"  {s.path}: {s.reason}" + (f" ({s.detail})" if s.detail and s.detail != s.reason else "")))


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="the question")],
    top_k: TopKOpt = None,
    retriever: RetrieverOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the answer object as JSON")] = False,
    corpus: CorpusOpt = None,
    index_root: IndexOpt = None,
    conversation: Annotated[Optional[str], typer.Option(
        "--conversation", "-c", help="continue the conversation NAME (created when missing): "
                                     "follow-ups are read with its earlier turns")] = None,
) -> None:
    """Answer a question with cited source sentences."""
    from qa.engine import InvalidQuestion, validate_question

    if retriever is not None and retriever not in RETRIEVERS:
        fail(f"unknown retriever {retriever!r}: choose one of {', '.join(RETRIEVERS)}")
    try:
        validate_question(question)
        if conversation is not None:
            from qa.conversation import validate_id

            validate_id(conversation)
    except (InvalidQuestion, ValueError) as exc:  # ValueError: an unusable conversation name
        fail(str(exc))
    engine = open_engine(settings_from(corpus, index_root), quiet=as_json)
    answer = engine.ask(question, top_k=top_k, retriever=retriever, conversation_id=conversation, create_missing=True)
    if as_json:
        sys.stdout.write(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2) + "\n")
    else:
        print_answer(answer)


def shown(text: str) -> str:
    """A sentence as displayed: a line break inside it (a wrapped line of the source) is a space."""
    return " ".join(text.split())


def where(cite) -> str:
    """Where a citation points: the page (for a PDF), the sentence and its characters."""
    page = f"page {cite.page} · " if cite.page is not None else ""
    return f"{page}sentence {cite.sentence_index} · chars {cite.start}–{cite.end}"


def print_answer(answer: Answer) -> None:
    from rich.panel import Panel

    if answer.understood_as:
        out.print(Text.assemble(("understood as:", "dim"), " ", visible(answer.understood_as)))
    if not answer.answered:
        out.print(Text.assemble((visible(answer.message or ""), "yellow"), " ",
                                (f"(confidence {answer.confidence:.2f})", "dim")))
        return
    for rank, s in enumerate(answer.sentences, start=1):
        c = s.citation
        body = Text()
        if s.context:
            body.append(visible(shown(s.context)) + " ", style="dim")
        body.append(visible(s.text if s.kind == "code" else shown(s.text)))
        for cite in [c, *s.also_in]:
            body.append(f"\n{'— ' if cite is c else '— also in '}{cite_line(cite)}", style="cyan")
        out.print(Panel(Group(body, *(side_by_side(s.text, c, d) for d in s.disagrees)),
                        title=f"{rank}  score {s.score:.3f}", title_align="left",
                        border_style="green" if rank == 1 else "blue"))


def cite_line(cite: Citation) -> str:
    return f"{visible(cite.title)} · {visible(cite.doc_id)} · {where(cite)}"


def side_by_side(text: str, cite: Citation, other: Disagreement):
    """A disagreement as two columns, this sentence and the other, with the parts that differ marked."""
    from rich.table import Table

    mine, theirs = [a for a, _ in other.differs], [b for _, b in other.differs]
    table = Table(title=Text("sources differ: " + "; ".join(f"{visible(a)} / {visible(b)}" for a, b in other.differs),
                             style="bold yellow"), title_justify="left", expand=True, show_lines=False)
    table.add_column(Text(cite_line(cite), style="cyan"), ratio=1)
    table.add_column(Text(cite_line(other.citation), style="cyan"), ratio=1)
    table.add_row(marked(text, mine), marked(other.text, theirs))
    return table


def marked(text: str, parts: list[str]) -> Text:
    """``text`` with each of ``parts`` (the differing names, numbers, dates) highlighted where it occurs."""
    out = Text(visible(shown(text)))
    for part in parts:
        out.highlight_words([visible(part)], style="bold black on yellow")
    return out


@app.command("eval")
def eval_(
    dataset: Annotated[str, typer.Option(help="seeds (the gold set in eval/) | squad-v2-dev | coqa | wikiqa (shared "
                                               "data: coqa asks conversations, wikiqa ranks each question's own "
                                               "candidates, then asks every question of all its pages)")] = "seeds",
    split: Annotated[str, typer.Option(help="all | tune | test (wikiqa: tune is its dev file, else test)")] = "all",
    retriever: Annotated[Optional[list[str]], typer.Option(help="repeat to choose; default: all three")] = None,
    http: Annotated[Optional[str], typer.Option(help="evaluate a running server at this URL instead")] = None,
    limit: Annotated[Optional[int], typer.Option(help="only the first N questions (coqa: dialogues; smoke runs)")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="report folder")] = Path("eval/reports"),
    gold: Annotated[Path, typer.Option(help="gold questions (seeds)")] = Path("eval/gold.jsonl"),
    corpus: CorpusOpt = None,
    index_root: IndexOpt = None,
) -> None:
    """Measure answer quality, abstention, citation integrity and latency on a gold set."""
    import datetime

    from qa import evaluate
    from qa.datasets import GoldError, load_gold, load_squad, load_wikiqa_pages
    from qa.ingest import IngestLimits, load_corpus

    modes = retriever or list(RETRIEVERS)
    if bad := [m for m in modes if m not in RETRIEVERS]:
        fail(f"unknown retriever {bad[0]!r}: choose from {', '.join(RETRIEVERS)}")
    if split not in ("all", "tune", "test"):
        fail(f"unknown split {split!r}: choose all, tune or test")
    settings = settings_from(corpus, index_root)
    if dataset == "coqa":
        return _eval_coqa(settings, split, modes[0], limit, out_dir)
    if dataset == "wikiqa":  # its own candidates ranked by each scorer, then the engine over its pages
        _eval_selection(settings, split, out_dir)
    try:
        if dataset == "seeds":
            data = load_gold(gold, load_corpus(settings.corpus_dir, IngestLimits.from_settings(settings)), gold.with_name("conversations.jsonl"))
        elif dataset == "squad-v2-dev":
            data = load_squad(settings.shared_data_dir)
            settings = settings.model_copy(update={"index_name": "squad-v2-dev"})
        elif dataset == "wikiqa":
            part = "dev" if split == "tune" else "test"
            data = load_wikiqa_pages(settings.shared_data_dir, part)
            settings = settings.model_copy(update={"index_name": f"wikiqa-{part}"})
        else:
            fail(f"unknown dataset {dataset!r}: choose seeds, squad-v2-dev, coqa or wikiqa")
    except (GoldError, FileNotFoundError) as exc:
        fail(str(exc))
    data = data.select(split)
    if limit:
        data.questions = data.questions[:limit]
    if http:
        runner = evaluate.HttpRunner(http)
    else:
        from qa.engine import Engine

        note(f"opening the {data.name} index…")
        engine = Engine.open(settings, documents=data.documents, layout=data.layout,
                             on_rebuild=lambda why: note(f"building the {data.name} index ({why})…"))
        runner = evaluate.EngineRunner(engine)
    report = evaluate.evaluate_dataset(data, runner, modes, settings.abstain_threshold)
    report["meta"] = {
        "date": datetime.date.today().isoformat(), "split": split, "questions": len(data.questions),
        "via": http or "in-process engine", "passage_size": settings.passage_size,
        "passage_overlap": settings.passage_overlap, "fusion": settings.fusion,
        "abstain_threshold": settings.abstain_threshold,
        "command": "qa " + " ".join(sys.argv[1:]),
    }
    stem = f"{data.name}-{datetime.date.today().isoformat()}" + ("" if split == "all" else f"-{split}")
    paths = evaluate.write_report(report, out_dir, stem)
    out.print(visible(evaluate.markdown(report)))
    note("wrote " + ", ".join(str(p) for p in paths.values()))


def _eval_coqa(settings, split: str, mode: str, limit: int | None, out_dir: Path) -> None:
    """CoQA's dialogues as conversations: stories written under the index root, conversations in a temp store."""
    import datetime
    import tempfile

    from qa import evaluate
    from qa.datasets import COQA_FILE, GoldError, load_coqa
    from qa.engine import Engine

    try:
        data = load_coqa(settings.shared_data_dir / COQA_FILE, settings.index_root / "_datasets" / "coqa").select(split)
    except (GoldError, FileNotFoundError) as exc:
        fail(str(exc))
    if limit:
        data = data.first_conversations(limit)
    with tempfile.TemporaryDirectory(prefix="qa-coqa-") as store:
        settings = settings.model_copy(update={"index_name": "coqa", "data_dir": Path(store)})
        note("opening the coqa index…")
        engine = Engine.open(settings, documents=data.documents,
                             on_rebuild=lambda why: note(f"building the coqa index ({why})…"))
        report = evaluate.evaluate_dialogues(data, engine, mode=mode)
        engine.conversations.close()
    today = datetime.date.today().isoformat()
    report["meta"] = {"date": today, "split": split, "dialogues": len(data.conversations), "via": "in-process engine",
                      "command": "qa " + " ".join(sys.argv[1:])}
    stem = f"coqa-{today}" + ("" if split == "all" else f"-{split}") + (f"-limit{limit}" if limit else "")
    paths = evaluate.write_report(report, out_dir, stem)
    out.print(visible(evaluate.dialogue_markdown(report)))
    note(f"wrote {paths['json']}, {paths['md']}, {paths['png']}")


def _eval_selection(settings: Settings, split: str, out_dir: Path) -> None:
    """WikiQA answer sentence selection (``--split`` test or tune, the latter WikiQA's dev file): MAP and MRR."""
    import datetime

    from qa import evaluate
    from qa.datasets import load_wikiqa

    try:
        questions = load_wikiqa(settings.shared_data_dir, "dev" if split == "tune" else "test")
    except FileNotFoundError as exc:
        fail(str(exc))
    results = evaluate.evaluate_selection(questions, evaluate.selection_scorers(settings))
    stem = f"wikiqa-{datetime.date.today().isoformat()}-" + ("dev" if split == "tune" else "test")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    out.print(visible(evaluate.selection_markdown("wikiqa " + ("dev" if split == "tune" else "test"), results)))


CHAT_HELP = """Ask a question; follow-ups ("When did it reopen?") are read with the conversation so far.
  /new      start a new conversation
  /sources  list the citations of the last answer
  /help     this text
  Ctrl-D    quit"""


@app.command()
def chat(
    conversation: Annotated[Optional[str], typer.Option(
        "--conversation", "-c", help="continue the conversation NAME (default: a new one)")] = None,
    top_k: TopKOpt = None,
    retriever: RetrieverOpt = None,
    corpus: CorpusOpt = None,
    index_root: IndexOpt = None,
) -> None:
    """Interactive conversation: questions and follow-ups, each answered with cited source sentences."""
    from qa.conversation import validate_id
    from qa.engine import InvalidQuestion

    if retriever is not None and retriever not in RETRIEVERS:
        fail(f"unknown retriever {retriever!r}: choose one of {', '.join(RETRIEVERS)}")
    if conversation is not None:
        try:
            validate_id(conversation)
        except ValueError as exc:
            fail(str(exc))
    engine = open_engine(settings_from(corpus, index_root))
    store = engine.conversations
    cid = store.create(conversation)
    last: Answer | None = None
    out.print(f"conversation {visible(cid)} · /help for commands · Ctrl-D to quit", style="dim")
    while True:
        try:
            line = out.input(Text("? ", style="bold green")).strip()
        except (EOFError, KeyboardInterrupt):
            out.print()
            break
        if not line:
            continue
        if line in ("/quit", "/exit"):
            break
        if line == "/help":
            out.print(CHAT_HELP)
        elif line == "/new":
            cid, last = store.create(), None
            out.print(f"new conversation {cid}", style="dim")
        elif line == "/sources":
            print_sources(last, (store.turns(cid) or [None])[-1])
        elif line.startswith("/"):
            out.print(Text.assemble((f"unknown command {visible(line.split()[0])}", "yellow"), " (/help)"))
        else:
            try:
                last = engine.ask(line, top_k=top_k, retriever=retriever, conversation_id=cid, create_missing=True)
            except InvalidQuestion as exc:
                err.print(error_line(str(exc)))
                continue
            print_answer(last)


def print_sources(answer: Answer | None, turn=None) -> None:
    """The citations of the last answer (or, after resuming, of the conversation's last stored turn)."""
    if answer is not None:
        cites = [(s.citation, s.text, s.disagrees) for s in answer.sentences]
    elif turn is not None:
        n = len(turn.citations)
        cites = list(zip(turn.citations, turn.texts or [""] * n, turn.disagrees or [[]] * n))
    else:
        cites = []
    if not cites:
        out.print("no sources yet", style="dim")
        return
    for rank, (c, text, disagrees) in enumerate(cites, start=1):
        out.print(visible(f"{rank}. {c.doc_id} · {where(c)} · {c.title}"), style="cyan")
        if text:
            out.print(f"   {visible(shown(text))}")
        for other in disagrees:
            out.print(side_by_side(text, c, other))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on (loopback by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port to listen on")] = 8000,
    workers: Annotated[Optional[int], typer.Option(min=1, help="worker processes (default: QA_SERVE_WORKERS, "
                                                           "or the cores up to 4)")] = None,
    allow_reload: Annotated[bool, typer.Option("--allow-reload", help="enable POST /admin/reload (it also needs "
                                                                      "QA_ADMIN_TOKEN)")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="update the index when files in the corpus folder "
                                                        "are added, changed or removed")] = False,
    access_log: Annotated[bool, typer.Option(help="log every request")] = True,
    corpus: CorpusOpt = None,
    index_root: IndexOpt = None,
    ray: RayOpt = False,
    ray_address: RayAddressOpt = None,
) -> None:
    """Serve the HTTP API and the chat page (http://HOST:PORT/; API docs at /docs); with --ray, the sharded
    index that `qa index --ray` built, on Ray Serve."""
    settings = bound_to(host, settings_from(corpus, index_root, serve_workers=workers,
                                            allow_reload=allow_reload or None, watch=watch or None))
    if ray:
        from qa.cluster import serve as cluster_serve
        from qa.cluster.build import ray_session
        from qa.cluster.shards import sharded_root

        with ray_session(ray_address):
            note(f"serving the sharded index of {settings.corpus_dir} on Ray Serve at http://{host}:{port}/")
            cluster_serve.run(settings, sharded_root(settings), host=host, port=port, blocking=True)
        return
    from qa.serve import reserve_port

    reserve_port(host, port).close()  # a busy port fails now, in one line, not after the index is built
    banner = (f"serving {settings.corpus_dir} with {settings.serve_workers} worker process(es): the chat page "
              f"is at /, the API docs at /docs")
    if settings.serve_workers == 1:
        import uvicorn

        from qa.api import serving_app
        from qa.api.middleware import uvicorn_options

        engine = open_engine(settings)  # builds the index first if needed; fails here, not in the first request
        app = serving_app(engine, settings)
        note(banner)
        uvicorn.run(app, host=host, port=port, access_log=access_log, log_level="info", **uvicorn_options(settings))
        return
    from qa.serve import run_workers

    prepare_index(settings)
    note(banner)
    run_workers(settings, host=host, port=port, access_log=access_log)


LOOPBACK = {"localhost", "127.0.0.1", "::1"}
ANY_ADDRESS = {"0.0.0.0", "::", ""}


def bound_to(host: str, settings: Settings) -> Settings:
    """The settings of a server listening on ``host``: a specific address is added to the allowed Host
    names (clients may use it); listening on every address, the user is told to name the hosts clients use,
    which no address can tell."""
    if "*" in settings.allowed_hosts or host in settings.allowed_hosts:
        return settings
    if host in ANY_ADDRESS:
        if set(settings.allowed_hosts) <= LOOPBACK:
            note(f"listening on every address, but only requests for {', '.join(settings.allowed_hosts)} are "
                 f"answered: set QA_ALLOWED_HOSTS (a JSON list) to the names and addresses clients use")
        return settings
    return settings.model_copy(update={"allowed_hosts": [*settings.allowed_hosts, host.strip("[]")]})


def prepare_index(settings: Settings) -> None:
    """Build the index if it is missing or stale (and export the query model), in a child process: a build
    loads torch, which the supervisor of the workers would otherwise hold for its lifetime (about 900 MiB)."""
    import multiprocessing

    child = multiprocessing.get_context("spawn").Process(target=_open_and_exit, args=(settings, os.getpid()),
                                                         name="qa-prepare-index")
    child.start()
    child.join()
    if child.exitcode:
        raise typer.Exit(child.exitcode)


def _open_and_exit(settings: Settings, parent: int) -> None:
    from qa.serve import end_with_parent

    end_with_parent(parent)
    try:
        open_engine(settings)
    except typer.Exit as exc:  # open_engine has said why
        sys.exit(exc.exit_code)
    except Exception as exc:
        err.print(error_line(describe(exc)))
        sys.exit(1)


if __name__ == "__main__":
    app()
