"""The one object that answers questions. The CLI, the HTTP app and the evaluation all call it, so they
cannot disagree about what the corpus says.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from qa import agreement, answer_checks, claims, rank, retrieve
from qa import index as index_mod
from qa.config import RETRIEVERS, Settings, model_key
from qa.conversation import Conversations, ConversationStore
from qa.cues import proper_words_of
from qa.embed import (BatchingEncoder, Embedded, OnnxEncoder, bulk_encoder, load_encoder, onnx_encoder, onnx_ready,
                      start_query_encoder)
from qa.ingest import Corpus, IngestLimits, read_corpus
from qa.profile import Profile, load_profile
from qa.types import Answer, Document, Query

log = logging.getLogger(__name__)

NOT_FOUND = "not found in the corpus"
MAX_QUESTION_CHARS = 1000


class InvalidQuestion(ValueError): ...


@dataclass(frozen=True)
class Ranked:
    """Scored candidate sentences and the index their ids refer to (``scored.degraded`` when part of the
    corpus, a shard, could not be searched)."""

    index: index_mod.SentenceSet
    scored: rank.ScoredSentences
    corpus_ids: np.ndarray | None = None  # the corpus-wide id of each sentence of a view; None: index is the corpus

    def in_corpus(self) -> rank.ScoredSentences:
        """The scored sentences with corpus-wide ids (``engine.index``'s), whatever index they were scored in."""
        if self.corpus_ids is None:
            return self.scored
        return replace(self.scored, ids=self.corpus_ids[self.scored.ids])


def build_spec(settings: Settings, *, layout: bool = True) -> index_mod.BuildSpec:
    return index_mod.BuildSpec(model=model_key(settings.resolved_model_path()), passage_size=settings.passage_size,
                               passage_overlap=settings.passage_overlap, layout=layout,
                               ann_min_passages=settings.ann_min_passages, token_vectors=settings.token_vectors)


class Engine:
    """Load once, answer many. Thread-safe for concurrent ``ask`` calls (all state is read-only)."""

    def __init__(self, settings: Settings, corpus_index: index_mod.Catalogue, encoder=None,
                 query_encoder: Future | None = None, profile: Profile | None = None):
        self.settings = settings
        self.profile = profile or load_profile(settings.profile)  # every scoring parameter (qa/profile.py)
        self.index = corpus_index
        self._encoder = encoder
        self._query_encoder = None
        self._pending_query_encoder = query_encoder
        self._encoder_lock = threading.RLock()
        self._conversations: Conversations | None = None
        self._conversations_lock = threading.Lock()
        import faiss  # already loaded with the index

        faiss.omp_set_num_threads(settings.search_threads)

    @property
    def threshold(self) -> float:
        """The confidence under which a standalone question is "not found": the settings' or the profile's."""
        given = self.settings.abstain_threshold
        return self.profile.abstention.threshold if given is None else given

    @property
    def threshold_within(self) -> float:
        """The same for a question answered within given sentences (a follow-up kept to its topic)."""
        given = self.settings.abstain_threshold_within
        return self.profile.abstention.threshold_within if given is None else given

    # -- construction -----------------------------------------------------------------------------

    @classmethod
    def open(cls, settings: Settings | None = None, *, documents: list[Document] | None = None,
             layout: bool = True, rebuild: bool = False, check_corpus: bool = True,
             progress: Callable[[str, int, int], None] | None = None,
             on_rebuild: Callable[[str], None] | None = None, query_encoder: Future | None = None) -> "Engine":
        """Open the index of ``settings.corpus_dir`` (or of ``documents``), building it when missing or stale.

        ``layout=False`` treats documents as plain paragraphs (no title line, headings or page furniture).
        ``query_encoder``: one already loading (``start_query_encoder``); by default loading starts here.
        """
        settings = settings or Settings()
        target = settings.index_dir()
        pending = query_encoder or start_query_encoder(settings)
        encoder = None
        if check_corpus or rebuild or documents is not None:
            def read() -> Corpus:
                return Corpus(documents) if documents is not None \
                    else read_corpus(settings.corpus_dir, IngestLimits.from_settings(settings))

            corpus = read()
            docs, skipped = corpus.documents, corpus.skipped
            spec = build_spec(settings, layout=layout)
            current, why = (False, "rebuild requested") if rebuild \
                else index_mod.index_is_current(target, docs, spec, skipped)
            if not current:
                with index_mod.build_lock(target):
                    # The folder as it is now that no other process changes the index: what was read before
                    # the lock may miss a change another process made and indexed meanwhile.
                    corpus = read()
                    docs, skipped = corpus.documents, corpus.skipped
                    if not rebuild:  # another process may have built it while this one waited for the lock
                        current, why = index_mod.index_is_current(target, docs, spec, skipped)
                    if not current:
                        if on_rebuild:
                            on_rebuild(why)
                        bulk, encoder = bulk_encoder(settings, lambda: sample_texts(docs))
                        index_mod.build(docs, bulk, spec, target, progress, reuse=not rebuild, skipped=skipped,
                                        segment_sentences=settings.build_segment_sentences)
        engine = cls(settings, index_mod.load(target, nprobe=settings.ann_nprobe), encoder, pending)
        if settings.onnx_queries and not onnx_ready(settings):
            engine.export_query_model([s.text for s in engine.index.sentences])
        engine.near_sentences  # made with the build (or read back) here, not by the first question
        return engine

    def with_index(self, corpus_index: index_mod.CorpusIndex, settings: Settings | None = None,
                   profile: Profile | None = None) -> "Engine":
        """This engine's models and conversation store over another index; with ``settings`` or ``profile``
        (settings that do not shape the index), answering with those."""
        if profile is None and (settings is None or settings.profile == self.settings.profile):
            profile = self.profile
        engine = Engine(settings or self.settings, corpus_index, self._encoder, profile=profile)
        with self._encoder_lock:
            engine._query_encoder, engine._pending_query_encoder = self._query_encoder, self._pending_query_encoder
        with self._conversations_lock:
            if self._conversations is not None:
                engine.conversations = self._conversations.for_engine(engine)
        proper_words_of(corpus_index, previous=self.index)  # both: only the changed documents read again
        engine.near_sentences = engine._near_sentences(previous=self)
        return engine

    @property
    def encoder(self):
        """The sentence-transformers encoder (torch): loaded only when an index is built or as a fallback."""
        with self._encoder_lock:
            if self._encoder is None:
                self._encoder = load_encoder(self.settings)
            return self._encoder

    @property
    def query_encoder(self):
        """The ONNX encoder when its export exists (fast start, same vectors), else sentence-transformers.
        Concurrent questions are encoded together when ``settings.query_batch`` allows (BatchingEncoder)."""
        with self._encoder_lock:
            if self._query_encoder is None:
                onnx = self._onnx_query_encoder()
                if onnx is not None and self.settings.query_batch > 1:
                    onnx = BatchingEncoder(onnx, self.settings.query_batch)
                self._query_encoder = onnx
        return self._query_encoder or self.encoder

    @cached_property
    def vocabulary(self) -> list[str]:
        """The model's word pieces by id (the same for the ONNX export and sentence-transformers)."""
        return self.query_encoder.vocabulary

    def _onnx_query_encoder(self) -> OnnxEncoder | None:
        if self._pending_query_encoder is not None:
            pending, self._pending_query_encoder = self._pending_query_encoder, None
            try:
                return pending.result()
            except Exception as exc:  # an unreadable export: tried once more below, or torch takes over
                log.warning("could not load the ONNX query model (%s)", exc)
        return onnx_encoder(self.settings) if onnx_ready(self.settings) else None

    def export_query_model(self, texts: list[str]) -> bool:
        """Export the model to ONNX once, checked against torch on (up to 200 of) ``texts``."""
        from qa.embed import export_onnx

        return export_onnx(self.encoder, self.settings.onnx_path(), texts[:: max(1, len(texts) // 200)])

    # -- answering --------------------------------------------------------------------------------

    def encode_query(self, text: str) -> np.ndarray:
        return self.embed_query(text).vectors[0]

    def embed_query(self, text: str) -> Embedded:
        """The question's vector and its word pieces' vectors, from one model run."""
        return self.query_encoder.encode_tokens([text])

    @staticmethod
    def _check_mode(mode: str) -> None:
        if mode not in RETRIEVERS:
            raise InvalidQuestion(f"unknown retriever {mode!r}: choose one of {', '.join(RETRIEVERS)}")

    def validated(self, question: str, mode: str) -> str:
        """``question`` stripped; InvalidQuestion when it is empty or too long or ``mode`` is no retriever."""
        question = validate_question(question)
        self._check_mode(mode)
        return question

    def query(self, question: str, mode: str) -> Query:
        """A standalone question analysed for retriever ``mode`` (no conversation history)."""
        question = self.validated(question, mode)
        terms = self.index.analyzer.terms(question)
        if mode == "bm25":
            return Query(question=question, text=question, terms=terms, vector=None)
        embedded = self.embed_query(question)
        return Query(question=question, text=question, terms=terms, vector=embedded.vectors[0],
                     tokens=(embedded.tokens[0], embedded.token_ids[0]),
                     names=rank.name_pieces(question, embedded.token_ids[0], self.vocabulary))

    def ask(self, question: str, *, top_k: int | None = None, retriever: str | None = None,
            conversation_id: str | None = None, start_conversation: bool = False, create_missing: bool = False,
            abstain: bool = True) -> Answer:
        """Answer ``question``; with ``conversation_id`` as the next turn of that conversation, read with its
        history (``self.conversations``, qa/conversation/). Unknown ids raise ``UnknownConversation`` unless
        ``create_missing``. ``start_conversation`` (without an id) stores the question as the first turn of a new
        conversation, whose id the answer carries. ``abstain=False`` returns the best sentences even under the
        confidence threshold (evaluation)."""
        mode = retriever or self.settings.retriever
        top_k = top_k or self.settings.top_k
        if conversation_id is not None or start_conversation:
            return self.conversations.ask(question, conversation_id, top_k=top_k, mode=mode,
                                          create_missing=create_missing, abstain=abstain)
        return self.answer(self.query(question, mode), top_k=top_k, mode=mode, abstain=abstain)

    def score(self, query: Query, mode: str, within: np.ndarray | None = None) -> rank.ScoredSentences:
        """Every candidate sentence for ``query``, scored and ranked (before grouping and abstention).
        ``within``: score exactly these sentence ids instead of retrieving candidates (a conversation that
        keeps to its documents). Ids are ``self.index``'s."""
        return self.ranked(query, mode, within).in_corpus()

    def view_of(self, ids: np.ndarray, terms: list[str]) -> tuple[index_mod.SentenceSet, np.ndarray] | None:
        """An index holding the sentences ``ids`` (``self.index``'s ids) and the ones beside them, with the
        postings of ``terms``, and the ids of ``ids`` in it: what reading a few known sentences needs (their
        vectors, which terms they hold). Here the corpus index itself; a sharded front gathers a view, and
        gives None when a shard holding some of them did not answer."""
        return self.index, np.asarray(ids, dtype=np.int64)

    def ranked(self, query: Query, mode: str, within: np.ndarray | None = None) -> Ranked:
        """The candidate sentences scored, with the index their ids refer to (a sharded front: a view)."""
        r = self.profile.ranking
        if within is None:
            passages = retrieve.retrieve(self.index, query.terms, query.vector, mode=mode,
                                         depth=r.candidate_passages, rrf_k=r.rrf_k)
            ids = rank.candidate_sentences(self.index.passages, passages, depth=r.candidate_passages)
        else:
            ids = np.asarray(within, dtype=np.int64)
        return Ranked(self.index, self.score_candidates(self.index, ids, query, mode))

    def score_candidates(self, index: index_mod.SentenceSet, ids: np.ndarray, query: Query,
                         mode: str) -> rank.ScoredSentences:
        """Score the candidate sentences ``ids`` of ``index`` with the weights ``mode`` uses."""
        weights = rank.Weights.for_mode(mode, self.profile, neighbour_cosine=query.neighbour_cosine)
        pieces = weights.reads_pieces  # the word pieces and names are read where they weigh
        scored = rank.score_sentences(index, ids, query.terms, query.vector, weights, query.text,
                                      query.tokens if pieces else None, query.names if pieces else None)
        if mode == "hybrid" and self.profile.reader.weight > 0:  # the reader's weight was chosen for hybrid
            return self.read(index, query.text, scored)
        return scored

    @cached_property
    def reader(self):
        """The shipped reader (qa/reader.py), or None when it is switched off or its files are missing."""
        from qa.reader import ReaderFiles, load_reader

        s = self.settings
        if s.reader_dir is None or self.profile.reader.depth == 0:
            return None
        if not ReaderFiles(s.reader_dir).exists():
            log.warning("no reader in %s: answering with the ranker alone", s.reader_dir)
            return None
        return load_reader(s.reader_dir, s.reader_threads)

    def read(self, index: index_mod.SentenceSet, question: str, scored: rank.ScoredSentences,
             depth: int | None = None) -> rank.ScoredSentences:
        """The ranking after the reader re-read the ranker's first ``depth`` (default: the profile's) sentences
        of ``index``."""
        if self.reader is None or not len(scored.ids):
            return scored
        depth = self.profile.reader.depth if depth is None else depth
        texts = [index.sentences[i].text for i in scored.ids[:depth].tolist()]
        return rank.with_reader(scored, self.reader.score(question, texts), self.profile.reader.weight)

    def answer(self, query: Query, *, top_k: int, mode: str, abstain: bool = True,
               within: np.ndarray | None = None) -> Answer:
        """Retrieve, score and select sentences for an already analysed query (only the sentence ids
        ``within`` when given).

        With ``abstain=False`` the sentences are returned even when the confidence is below the threshold
        (``answered`` still says whether it reached it): evaluation needs the ranking of every question.
        """
        ranked = self.ranked(query, mode, within)
        scored = ranked.scored
        threshold = self.threshold if within is None else self.threshold_within
        conf = self.confidence(ranked, query.text, mode, exact=not abstain, threshold=threshold)
        answered = conf >= threshold
        if not answered and abstain:
            return Answer(query.question, False, [], mode, confidence=conf, understood_as=query.understood_as,
                          message=NOT_FOUND, degraded=scored.degraded)
        groups = self.statements(ranked, top_k)
        return Answer(query.question, answered, rank.to_answer_sentences(ranked.index, scored, groups), mode,
                      confidence=conf, understood_as=query.understood_as, message=None if answered else NOT_FOUND,
                      degraded=scored.degraded)

    def statements(self, ranked: Ranked, top_k: int) -> list[agreement.Statement]:
        """The first ``top_k`` statements of a ranking, each with the places that state the same and those
        that differ in a name, number or date: among the candidates, then (when ``ranked`` is over the
        corpus index) among every other document's sentences close to it (``near_sentences``)."""
        r = self.profile.ranking
        table = self.near_sentences if ranked.corpus_ids is None else None  # a view's ids are not the table's
        groups = agreement.group_statements(ranked.index, ranked.scored.ids, top_k, r.duplicate_cosine,
                                            r.near_cosine, self.claim_vocabulary,
                                            None if table is None else table.keys)
        if table is not None:
            agreement.widen(ranked.index, groups, table, r.duplicate_cosine, self.claim_vocabulary)
        return groups

    @cached_property
    def claim_vocabulary(self) -> claims.Vocabulary:
        """What the claim comparison knows of the corpus's words (its proper names)."""
        return claims.Vocabulary(proper_words_of(self.index))

    @cached_property
    def near_sentences(self) -> agreement.NearSentences | None:
        """The index's table of close sentences of other documents (qa/agreement.py), made once per build
        and saved with it; None when switched off (``near_limit`` 0) or the index has no sentence vectors."""
        return self._near_sentences()

    def _near_sentences(self, previous: "Engine | None" = None) -> agreement.NearSentences | None:
        r = self.profile.ranking
        if r.near_limit == 0:
            return None
        before = None
        if previous is not None and "near_sentences" in previous.__dict__:
            before = (previous.index, previous.near_sentences)
        return agreement.near_sentences(self.index, r.near_cosine, r.near_limit, self.claim_vocabulary, before)

    def decision_features(self, ranked: Ranked, question: str) -> dict[str, float]:
        """What the abstention model weighs (``rank.DECISION_FEATURES``): the ranking's evidence about its best
        sentence and the answer checks of that sentence in its context (qa/answer_checks.py)."""
        scored = ranked.scored
        best = int(scored.ids[0]) if len(scored.ids) else None
        return {**rank.abstention_features(scored, self.profile.abstention.token_match_centre),
                **answer_checks.check_best(ranked.index, question, best)}

    def confidence(self, ranked: Ranked, question: str, mode: str, *, exact: bool = False,
                   threshold: float | None = None) -> float:
        """The probability that the best sentence of ``ranked`` answers. In hybrid mode the reader's logit
        joins it (the profile's reader term); when the ranking was not read already, the reader reads the best
        sentence only if its bounded term could change the decision at the threshold
        (``rank.reader_could_decide``), or always when ``exact`` (a confidence compared with other thresholds:
        ``abstain=False``, the evaluation's refusal curve). ``threshold``: the one the decision is taken at
        (default :attr:`threshold`)."""
        threshold = self.threshold if threshold is None else threshold
        scored, abstention = ranked.scored, self.profile.abstention
        z = rank.log_odds(self.decision_features(ranked, question), abstention.models[mode])
        if mode == "hybrid" and scored.reader is None and len(scored.ids) and abstention.reader_weight and \
                (exact or rank.reader_could_decide(z, abstention, threshold)):
            scored = self.read(ranked.index, question, scored, depth=1)  # one sentence: the order stays
        return rank.confidence(z, scored, abstention)

    @property
    def conversations(self) -> Conversations:
        """The conversations this engine answers, kept in the store under ``settings.data_dir`` (opened on
        first use: asking without a conversation never touches the disk) unless another was attached."""
        with self._conversations_lock:
            if self._conversations is None:
                self._conversations = Conversations(self, ConversationStore.from_settings(self.settings))
            return self._conversations

    @conversations.setter
    def conversations(self, conversations: Conversations) -> None:
        with self._conversations_lock:
            self._conversations = conversations

    # -- the corpus -------------------------------------------------------------------------------

    def documents(self) -> list[Document]:
        return list(self.index.documents.values())

    def document(self, doc_id: str) -> Document | None:
        return self.index.documents.get(doc_id)


def sample_texts(docs: list[Document]) -> list[str]:
    """Up to 200 sentences of the first documents: what an ONNX export is checked on against torch."""
    from qa.ingest import split_sentences

    return [s.text for d in docs[:50] for s in split_sentences(d)][:200]


def validate_question(question: str) -> str:
    if question is None or not question.strip():
        raise InvalidQuestion("the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise InvalidQuestion(f"the question is longer than {MAX_QUESTION_CHARS} characters")
    return question.strip()
