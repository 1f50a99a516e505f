"""The ``qa`` command: option parsing over :class:`qa.engine.Engine` (ask, chat, index), :mod:`qa.serve`
(serve), :mod:`qa.evaluate` (eval) and :mod:`qa.cluster` (``--ray``); what the terminal shows is
:mod:`qa.console`'s. A failure of any command is one ``error:`` line on stderr and a non-zero exit
(:class:`OneLineErrors`), never a traceback.
"""

from __future__ import annotations

import enum
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text
from typer.core import TyperGroup

from qa.config import RETRIEVERS, Settings
from qa import console
from qa.console import (describe, err, error_line, note, out, print_answer, print_corpus_summary, print_sources,
                        visible)
from qa.evaluate import DATASETS, DEFAULT_GOLD, SPLITS
from qa.types import Answer

log = logging.getLogger(__name__)


class OneLineErrors(TyperGroup):
    """Every command's failure becomes one ``error:`` line on stderr: exit status 2 for a usage error (a bad
    option or argument), 1 for anything else (130 on Ctrl-C); with ``--verbose`` the traceback is logged."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except typer.TyperException as exc:  # Typer's (vendored click's) own errors: a usage error exits 2
            if getattr(exc, "exit_code", None) != 2:
                raise
            fail(exc.format_message(), code=2)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except Exception as exc:
            log.info("the traceback:", exc_info=exc)
            fail(describe(exc), code=1)


app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True,
                  help="Cited, extractive question answering over a news corpus.")

CorpusOpt = Annotated[Optional[Path], typer.Option("--corpus", help="folder of documents (.txt .md .html .pdf .docx .odt .epub .rtf .eml .jsonl), subfolders included (default: seeds/)")]
IndexOpt = Annotated[Optional[Path], typer.Option("--index-root", help="where indexes are built (default: index/)")]
# Unset options fall back to Settings (QA_TOP_K, QA_RETRIEVER), as the HTTP API's do.
TopKOpt = Annotated[Optional[int], typer.Option("--top-k", "-k", min=1, max=20,
                                                help="sentences to return (default: QA_TOP_K, 5)")]
# Choices as enums: Typer lists them in --help and refuses anything else before a command runs.
Retriever = enum.Enum("Retriever", {name: name for name in RETRIEVERS}, type=str)
Dataset = enum.Enum("Dataset", {name: name for name in DATASETS}, type=str)
Split = enum.Enum("Split", {name: name for name in SPLITS}, type=str)
RetrieverOpt = Annotated[Optional[Retriever], typer.Option(help="default: QA_RETRIEVER, hybrid")]
ConversationOpt = Annotated[Optional[str], typer.Option(
    "--conversation", "-c", help="continue the conversation NAME (created when missing): follow-ups are read "
                                 "with its earlier turns")]
RayOpt = Annotated[bool, typer.Option("--ray", help="the sharded index on Ray (docs/SCALE.md): on a local 2-CPU "
                                                   "instance, or the cluster at --ray-address")]
RayAddressOpt = Annotated[Optional[str], typer.Option(help="with --ray: the Ray cluster to use (e.g. HOST:6379)")]


def settings_from(corpus: Path | None, index_root: Path | None, **overrides) -> Settings:
    values = {k: v for k, v in {"corpus_dir": corpus, "index_root": index_root, **overrides}.items() if v is not None}
    return Settings(**values)


def fail(message: str, code: int = 2) -> None:
    err.print(error_line(message))
    raise typer.Exit(code)


def open_engine(settings: Settings, *, rebuild: bool = False, quiet: bool = False):
    """The engine (:func:`qa.console.open_engine`: a progress bar while an index is built); a corpus or an
    index that cannot be used is a usage error, said in one line (exit 2)."""
    from qa.index import IndexUnavailable

    try:
        return console.open_engine(settings, rebuild=rebuild, quiet=quiet)
    except (IndexUnavailable, FileNotFoundError, ValueError) as exc:
        fail(str(exc))


def checked_conversation(name: str | None) -> None:
    """A conversation name from the command line, refused (exit 2) when no conversation can be called so."""
    if name is None:
        return
    from qa.conversation import validate_id

    try:
        validate_id(name)
    except ValueError as exc:
        fail(str(exc))


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log what happens")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@app.command()
def index(corpus: CorpusOpt = None, index_root: IndexOpt = None,
          rebuild: Annotated[bool, typer.Option(help="rebuild even when the index is up to date")] = False,
          ray: RayOpt = False, ray_address: RayAddressOpt = None,
          shards: Annotated[Optional[int], typer.Option(min=1, help="with --ray: shards to build (2)")] = None,
          workers: Annotated[Optional[int], typer.Option(min=1, help="with --ray: encoder actors (2)")] = None,
          verbose: Annotated[bool, typer.Option("--verbose", "-v", help="list every file not indexed")] = False) -> None:
    """Build (or refresh) the index of the corpus and say what it holds and which files it skipped (and why);
    with --ray, as shards on Ray."""
    settings = settings_from(corpus, index_root)
    if ray:
        refuse_with_ray({"--rebuild (a sharded build always builds anew)": rebuild,
                         "--verbose (the sharded build does not list skipped files)": verbose})
        from qa.cluster.build import build_corpus

        built = build_corpus(settings, ray_address, shards=shards or 2, workers=workers or 2, report=note)
        m = built.manifest
        out.print(Text.assemble("sharded index ", (visible(str(built.path)), "bold"),
                                f": {len(m['shards'])} shards, {m['sentences']} sentences, {m['passages']} passages; "
                                f"built in {m['build_seconds']} s"))
        return
    if shards is not None or workers is not None or ray_address is not None:
        fail("--shards, --workers and --ray-address are options of a sharded build: add --ray")
    engine = open_engine(settings, rebuild=rebuild)
    m = engine.index.manifest
    out.print(Text.assemble("index ", (visible(str(settings.index_dir())), "bold"),
                            visible(f": {m['documents']} documents, {m['sentences']} sentences, {m['passages']} "
                                    f"passages; model {m['model']} ({m['dim']} d); built {m['built_at']}")))
    print_corpus_summary(engine.index.documents.values(), engine.index.skipped, verbose)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="the question")],
    top_k: TopKOpt = None,
    retriever: RetrieverOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the answer object as JSON")] = False,
    corpus: CorpusOpt = None,
    index_root: IndexOpt = None,
    conversation: ConversationOpt = None,
) -> None:
    """Answer a question with cited source sentences."""
    from qa.engine import InvalidQuestion, validate_question

    try:
        validate_question(question)
    except InvalidQuestion as exc:
        fail(str(exc))
    checked_conversation(conversation)
    engine = open_engine(settings_from(corpus, index_root), quiet=as_json)
    answer = engine.ask(question, top_k=top_k, retriever=retriever and retriever.value, conversation_id=conversation,
                        create_missing=True)
    if as_json:
        sys.stdout.write(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2) + "\n")
    else:
        print_answer(answer)


@app.command("eval")
def eval_(
    dataset: Annotated[Dataset, typer.Option(help="seeds: the gold questions of --gold over --corpus; the "
                                                  "others are read from QA_SHARED_DATA_DIR")] = Dataset.seeds,
    split: Annotated[Split, typer.Option(help="wikiqa: tune is its dev file, else test")] = Split.all,
    retriever: Annotated[Optional[list[Retriever]], typer.Option(help="repeat to choose; default: all "
                                                                      "three")] = None,
    http: Annotated[Optional[str], typer.Option(help="evaluate a running server at this URL instead")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="only the first N questions (coqa: dialogues; smoke "
                                                             "runs)")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="report folder")] = Path("eval/reports"),
    gold: Annotated[Path, typer.Option(help="gold questions over the corpus, one JSON object a line (README: "
                                            "\"Evaluate on your own questions\"); the report is named after it")]
    = DEFAULT_GOLD,
    conversations: Annotated[Optional[Path], typer.Option(help="dialogues over the corpus, asked turn by turn "
                                                               "(default: eval/conversations.jsonl with the "
                                                               "default --gold, else none)")] = None,
    corpus: CorpusOpt = None,
    index_root: IndexOpt = None,
) -> None:
    """Measure answer quality, abstention, citation integrity and latency on a gold set."""
    from qa.evaluate import EvalRun, run_evaluation

    if dataset is not Dataset.seeds and (gold != DEFAULT_GOLD or conversations is not None):
        fail(f"--gold and --conversations are questions over --corpus (--dataset seeds), not over {dataset.value}")
    modes = tuple(r.value for r in retriever) if retriever else RETRIEVERS
    run = EvalRun(dataset.value, split.value, modes, http, limit, out_dir, gold, conversations,
                  command="qa " + " ".join(sys.argv[1:]))
    for outcome in run_evaluation(run, settings_from(corpus, index_root), note):
        out.print(visible(outcome.text))
        note("wrote " + ", ".join(str(p) for p in outcome.paths.values()))


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
    from qa.engine import InvalidQuestion

    checked_conversation(conversation)
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
                last = engine.ask(line, top_k=top_k, retriever=retriever and retriever.value, conversation_id=cid,
                                  create_missing=True)
            except InvalidQuestion as exc:
                err.print(error_line(str(exc)))
                continue
            print_answer(last)


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
    from qa import serve as serving

    settings = serving.bound_to(host, settings_from(corpus, index_root, serve_workers=workers,
                                                    allow_reload=allow_reload or None, watch=watch or None))
    if ray:
        refuse_with_ray({"--workers (Ray Serve runs one front and one replica per shard)": workers is not None,
                         "--allow-reload (with --ray, --watch or PUT/DELETE change the index)":
                             bool(settings.allow_reload),
                         "--no-access-log": not access_log})
        from qa.cluster import serve as cluster_serve
        from qa.cluster.build import ray_session
        from qa.cluster.shards import sharded_root

        with ray_session(ray_address):
            note(f"serving the sharded index of {settings.corpus_dir} on Ray Serve at http://{host}:{port}/")
            cluster_serve.run(settings, sharded_root(settings), host=host, port=port, blocking=True)
        return
    if ray_address is not None:
        fail("--ray-address needs --ray")
    serving.serve(settings, host=host, port=port, access_log=access_log)


def refuse_with_ray(options: dict[str, bool]) -> None:
    """One error line naming the first option given that the sharded index on Ray does not support (an option
    is either honoured or refused, never ignored), or saying how to install Ray when it is missing."""
    for option, given in options.items():
        if given:
            fail(f"{option} is not supported with --ray (docs/SCALE.md)")
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        fail("--ray needs Ray: .venv/bin/pip install -e '.[ray]' (scripts/setup --dev installs it)")


if __name__ == "__main__":
    app()
