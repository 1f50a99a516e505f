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
        return Engine.open(settings, rebuild=rebuild, progress=report, on_rebuild=announce)
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
) -> None:
    """Answer a question with cited source sentences."""
    from qa.engine import RETRIEVERS, InvalidQuestion, validate_question

    if retriever not in RETRIEVERS:
        fail(f"unknown retriever {retriever!r}: choose one of {', '.join(RETRIEVERS)}")
    try:
        validate_question(question)
    except InvalidQuestion as exc:
        fail(str(exc))
    engine = open_engine(settings_from(corpus, index_root), quiet=as_json)
    answer = engine.ask(question, top_k=top_k, retriever=retriever)
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


if __name__ == "__main__":
    app()
