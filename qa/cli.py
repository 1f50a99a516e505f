"""The ``qa`` command. Thin: every command opens the same :class:`qa.engine.Engine` and prints its answer."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from qa.config import Settings
from qa.types import Answer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Cited, extractive question answering over a news corpus.")
out = Console()
err = Console(stderr=True)

CorpusOpt = Annotated[Optional[Path], typer.Option("--corpus", help="folder of .txt documents (default: seeds/)")]
IndexOpt = Annotated[Optional[Path], typer.Option("--index-root", help="where indexes are built (default: index/)")]


def settings_from(corpus: Path | None, index_root: Path | None, **overrides) -> Settings:
    values = {k: v for k, v in {"corpus_dir": corpus, "index_root": index_root, **overrides}.items() if v is not None}
    return Settings(**values)


def fail(message: str, code: int = 2) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def open_engine(settings: Settings, *, rebuild: bool = False, quiet: bool = False):
    """Open the engine, showing a progress bar only when the index has to be built."""
    from qa.embed import start_query_encoder

    query_encoder = start_query_encoder(settings)  # first: it loads while the engine's modules and index do
    from qa.engine import Engine
    from qa.index import IndexUnavailable

    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                        TimeElapsedColumn(), console=err, transient=True, disable=quiet)
    tasks: dict[str, int] = {}

    def report(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            progress.start()
            tasks[stage] = progress.add_task({"split": "splitting documents", "embed": "embedding"}.get(stage, stage),
                                             total=total)
        progress.update(tasks[stage], completed=done)

    def announce(why: str) -> None:
        if not quiet:
            err.print(f"[dim]building the index of {settings.corpus_dir} ({why})…[/dim]")

    try:
        return Engine.open(settings, rebuild=rebuild, progress=report, on_rebuild=announce,
                           query_encoder=query_encoder)
    except (IndexUnavailable, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    finally:
        progress.stop()


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log what happens")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@app.command()
def index(corpus: CorpusOpt = None, index_root: IndexOpt = None,
          rebuild: Annotated[bool, typer.Option(help="rebuild even when the index is up to date")] = False) -> None:
    """Build (or refresh) the index of the corpus."""
    settings = settings_from(corpus, index_root)
    engine = open_engine(settings, rebuild=rebuild)
    m = engine.index.manifest
    out.print(f"index [bold]{settings.index_dir()}[/bold]: {m['documents']} documents, {m['sentences']} sentences, "
              f"{m['passages']} passages; model {m['model']} ({m['dim']} d); built {m['built_at']}")


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="the question")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, max=20, help="sentences to return")] = 5,
    retriever: Annotated[str, typer.Option(help="hybrid | bm25 | dense")] = "hybrid",
    as_json: Annotated[bool, typer.Option("--json", help="print the answer object as JSON")] = False,
    corpus: CorpusOpt = None,
    index_root: IndexOpt = None,
    conversation: Annotated[Optional[str], typer.Option(
        "--conversation", "-c", help="continue the conversation NAME (created when missing): "
                                     "follow-ups are read with its earlier turns")] = None,
) -> None:
    """Answer a question with cited source sentences."""
    from qa.engine import RETRIEVERS, InvalidQuestion, validate_question

    if retriever not in RETRIEVERS:
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


def print_answer(answer: Answer) -> None:
    from rich.panel import Panel
    from rich.text import Text

    if answer.understood_as:
        out.print(f"[dim]understood as:[/dim] {answer.understood_as}", highlight=False)
    if not answer.answered:
        out.print(f"[yellow]{answer.message}[/yellow] [dim](confidence {answer.confidence:.2f})[/dim]")
        return
    for rank, s in enumerate(answer.sentences, start=1):
        c = s.citation
        body = Text()
        if s.context:
            body.append(s.context + " ", style="dim")
        body.append(s.text)
        for cite in [c, *s.also_in]:
            body.append(f"\n{'— ' if cite is c else '— also in '}{cite.title} · {cite.doc_id} · sentence "
                        f"{cite.sentence_index} · chars {cite.start}–{cite.end}", style="cyan")
        out.print(Panel(body, title=f"{rank}  score {s.score:.3f}", title_align="left",
                        border_style="green" if rank == 1 else "blue"))


@app.command("eval")
def eval_(
    dataset: Annotated[str, typer.Option(help="seeds (the gold set in eval/) | squad-v2-dev | wikiqa (shared "
                                               "data; wikiqa ranks each question's own candidates)")] = "seeds",
    split: Annotated[str, typer.Option(help="all | tune | test")] = "all",
    retriever: Annotated[Optional[list[str]], typer.Option(help="repeat to choose; default: all three")] = None,
    http: Annotated[Optional[str], typer.Option(help="evaluate a running server at this URL instead")] = None,
    limit: Annotated[Optional[int], typer.Option(help="only the first N questions (smoke runs)")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="report folder")] = Path("eval/reports"),
    gold: Annotated[Path, typer.Option(help="gold questions (seeds)")] = Path("eval/gold.jsonl"),
    corpus: CorpusOpt = None,
    index_root: IndexOpt = None,
) -> None:
    """Measure answer quality, abstention, citation integrity and latency on a gold set."""
    import datetime

    from qa import evaluate
    from qa.datasets import GoldError, load_gold, load_squad
    from qa.engine import RETRIEVERS
    from qa.ingest import load_corpus

    modes = retriever or list(RETRIEVERS)
    if bad := [m for m in modes if m not in RETRIEVERS]:
        fail(f"unknown retriever {bad[0]!r}: choose from {', '.join(RETRIEVERS)}")
    if split not in ("all", "tune", "test"):
        fail(f"unknown split {split!r}: choose all, tune or test")
    settings = settings_from(corpus, index_root)
    if dataset == "wikiqa":
        _eval_selection(settings, split, out_dir)
        return
    try:
        if dataset == "seeds":
            data = load_gold(gold, load_corpus(settings.corpus_dir), gold.with_name("conversations.jsonl"))
        elif dataset == "squad-v2-dev":
            data = load_squad(settings.shared_data_dir)
            settings = settings.model_copy(update={"index_name": "squad-v2-dev"})
        else:
            fail(f"unknown dataset {dataset!r}: choose seeds, squad-v2-dev or wikiqa")
    except (GoldError, FileNotFoundError) as exc:
        fail(str(exc))
    data = data.select(split)
    if limit:
        data.questions = data.questions[:limit]
    if http:
        runner = evaluate.HttpRunner(http)
    else:
        from qa.engine import Engine

        err.print(f"[dim]opening the {data.name} index…[/dim]")
        engine = Engine.open(settings, documents=data.documents, layout=data.layout,
                             on_rebuild=lambda why: err.print(f"[dim]building the {data.name} index ({why})…[/dim]"))
        runner = evaluate.EngineRunner(engine)
    report = evaluate.evaluate_dataset(data, runner, modes)
    report["meta"] = {
        "date": datetime.date.today().isoformat(), "split": split, "questions": len(data.questions),
        "via": http or "in-process engine", "passage_size": settings.passage_size,
        "passage_overlap": settings.passage_overlap, "fusion": settings.fusion,
        "abstain_threshold": settings.abstain_threshold,
        "command": "qa " + " ".join(sys.argv[1:]),
    }
    stem = f"{data.name}-{datetime.date.today().isoformat()}" + ("" if split == "all" else f"-{split}")
    paths = evaluate.write_report(report, out_dir, stem)
    out.print(evaluate.markdown(report), markup=False, highlight=False)
    err.print(f"[dim]wrote {paths['json']}, {paths['md']}, {paths['png']}[/dim]")


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
    out.print(evaluate.selection_markdown("wikiqa " + ("dev" if split == "tune" else "test"), results), markup=False,
              highlight=False)


CHAT_HELP = """Ask a question; follow-ups ("When did it reopen?") are read with the conversation so far.
  /new      start a new conversation
  /sources  list the citations of the last answer
  /help     this text
  Ctrl-D    quit"""


@app.command()
def chat(
    conversation: Annotated[Optional[str], typer.Option(
        "--conversation", "-c", help="continue the conversation NAME (default: a new one)")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, max=20, help="sentences to return")] = 5,
    retriever: Annotated[str, typer.Option(help="hybrid | bm25 | dense")] = "hybrid",
    corpus: CorpusOpt = None,
    index_root: IndexOpt = None,
) -> None:
    """Interactive conversation: questions and follow-ups, each answered with cited source sentences."""
    from qa.conversation import validate_id
    from qa.engine import RETRIEVERS, InvalidQuestion

    if retriever not in RETRIEVERS:
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
    out.print(f"[dim]conversation {cid} · /help for commands · Ctrl-D to quit[/dim]", highlight=False)
    while True:
        try:
            line = out.input("[bold green]?[/bold green] ").strip()
        except (EOFError, KeyboardInterrupt):
            out.print()
            break
        if not line:
            continue
        if line in ("/quit", "/exit"):
            break
        if line == "/help":
            out.print(CHAT_HELP, highlight=False, markup=False)
        elif line == "/new":
            cid, last = store.create(), None
            out.print(f"[dim]new conversation {cid}[/dim]", highlight=False)
        elif line == "/sources":
            print_sources(last, (store.turns(cid) or [None])[-1])
        elif line.startswith("/"):
            out.print(f"[yellow]unknown command {line.split()[0]}[/yellow] (/help)", highlight=False)
        else:
            try:
                last = engine.ask(line, top_k=top_k, retriever=retriever, conversation_id=cid, create_missing=True)
            except InvalidQuestion as exc:
                err.print(f"[red]error:[/red] {exc}", highlight=False)
                continue
            print_answer(last)


def print_sources(answer: Answer | None, turn=None) -> None:
    """The citations of the last answer (or, after resuming, of the conversation's last stored turn)."""
    if answer is not None:
        cites = [(s.citation, s.text) for s in answer.sentences]
    elif turn is not None:
        cites = list(zip(turn.citations, turn.texts or [""] * len(turn.citations)))
    else:
        cites = []
    if not cites:
        out.print("[dim]no sources yet[/dim]")
        return
    for rank, (c, text) in enumerate(cites, start=1):
        out.print(f"{rank}. {c.doc_id} · sentence {c.sentence_index} · chars {c.start}–{c.end} · {c.title}",
                  style="cyan", highlight=False)
        if text:
            out.print(f"   {text}", highlight=False, markup=False)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on (loopback by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port to listen on")] = 8000,
    workers: Annotated[Optional[int], typer.Option(min=1, help="worker processes (default: QA_SERVE_WORKERS, "
                                                           "or the cores up to 4)")] = None,
    allow_reload: Annotated[bool, typer.Option("--allow-reload", help="enable POST /admin/reload")] = False,
    access_log: Annotated[bool, typer.Option(help="log every request")] = True,
    corpus: CorpusOpt = None,
    index_root: IndexOpt = None,
) -> None:
    """Serve the HTTP API and the chat page (http://HOST:PORT/; API docs at /docs)."""
    settings = settings_from(corpus, index_root, serve_workers=workers, allow_reload=allow_reload or None)
    banner = (f"[dim]serving {settings.corpus_dir} with {settings.serve_workers} worker process(es): the chat page "
              f"is at /, the API docs at /docs[/dim]")
    if settings.serve_workers == 1:
        import uvicorn

        from qa.api import serving_app

        engine = open_engine(settings)  # builds the index first if needed; fails here, not in the first request
        app = serving_app(engine, settings)
        err.print(banner)
        uvicorn.run(app, host=host, port=port, access_log=access_log, log_level="info")
        return
    from qa.serve import run_workers

    prepare_index(settings)
    err.print(banner)
    run_workers(settings, host=host, port=port, access_log=access_log)


def prepare_index(settings: Settings) -> None:
    """Build the index if it is missing or stale (and export the query model), in a child process: a build
    loads torch, which the supervisor of the workers would otherwise hold for its lifetime (about 900 MiB)."""
    import multiprocessing

    child = multiprocessing.get_context("spawn").Process(target=_open_and_exit, args=(settings,),
                                                         name="qa-prepare-index")
    child.start()
    child.join()
    if child.exitcode:
        raise typer.Exit(child.exitcode)


def _open_and_exit(settings: Settings) -> None:
    try:
        open_engine(settings)
    except typer.Exit as exc:  # open_engine has said why
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    app()
