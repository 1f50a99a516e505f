"""What the terminal shows: answers with their citations and disagreements, a conversation's sources, the
corpus summary of ``qa index``, an index build's progress, and one-line errors.

Every string from a user or the corpus is text: the consoles interpret no Rich markup or emoji codes
(styles are given as arguments, never inside strings), and :func:`visible` shows control characters
escaped, so a document cannot move the cursor or recolour the terminal.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from rich.console import Console, Group
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.text import Text

from qa.config import Settings
from qa.types import Answer, Citation, Disagreement

out = Console(markup=False, emoji=False, highlight=False)
err = Console(stderr=True, markup=False, emoji=False, highlight=False, soft_wrap=True)  # a line stays one line

# C0 and C1 control characters (but newline and tab), DEL, and the bidirectional overrides and isolates
# that reorder what a terminal shows.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible(text: str) -> str:
    """``text`` with every control character shown as its escape (ESC as ``\\x1b``), newlines and tabs kept."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def describe(exc: BaseException) -> str:
    """An exception in one line: its message, and its kind when that is not an expected one."""
    from qa.index import IndexUnavailable

    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, (OSError, ValueError, IndexUnavailable)):
        return message
    return f"{message} ({type(exc).__name__}; --verbose shows where)"


def error_line(message: str) -> Text:
    return Text.assemble(("error:", "red"), " ", visible(message))


def note(message: str) -> None:
    """A dim line on stderr (what the command is doing)."""
    err.print(visible(message), style="dim")


def open_engine(settings: Settings, *, rebuild: bool = False, quiet: bool = False):
    """Open the engine, showing a progress bar on stderr only when the index has to be built."""
    from qa.embed import start_query_encoder

    query_encoder = start_query_encoder(settings)  # first: it loads while the engine's modules and index do
    from qa.engine import Engine

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


def print_corpus_summary(documents: Iterable, skipped: list, verbose: bool) -> None:
    """Documents by format, files not indexed by reason, and (``verbose``) each of those files."""
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


def shown(text: str) -> str:
    """A sentence as displayed: a line break inside it (a wrapped line of the source) is a space."""
    return " ".join(text.split())


def where(cite: Citation) -> str:
    """Where a citation points: the page (for a PDF), the sentence and its characters."""
    page = f"page {cite.page} · " if cite.page is not None else ""
    return f"{page}sentence {cite.sentence_index} · chars {cite.start}–{cite.end}"


def cite_line(cite: Citation) -> str:
    return f"{visible(cite.title)} · {visible(cite.doc_id)} · {where(cite)}"


def print_answer(answer: Answer) -> None:
    """An answer as panels, one per sentence: its context, the sentence (code as written), where it is and
    where else it is said, and the sources that differ from it side by side."""
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
    line = Text(visible(shown(text)))
    for part in parts:
        line.highlight_words([visible(part)], style="bold black on yellow")
    return line


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
