"""The searchable index of a corpus: built, saved, published and loaded.

An index folder holds one or more immutable builds and a ``current`` symlink to the one in service. A build
is written into its own new folder and published by atomically replacing the symlink, so a reader never sees
a half-written index and a server keeps answering from the old build until then.

* :mod:`qa.index.spec`: the format, the build spec, the corpus fingerprint, passages, errors;
* :mod:`qa.index.build`: documents → a published build (:func:`build`), reusing the build in service
  (:mod:`qa.index.reuse`);
* :mod:`qa.index.storage`: a build folder written (:class:`BuildParts`, :func:`save_build`) and loaded
  (:func:`load` → :class:`CorpusIndex`, :mod:`qa.index.corpus`);
* :mod:`qa.index.publish`: the ``current`` link and the build lock;
* :mod:`qa.index.rows`: vectors and word pieces read row by row from disk.
"""

from qa.index.build import build, dense_index, write_build
from qa.index.segments import apply_files, index_change, merge_due, merge_segments, segment_sizes, segments_of, update
from qa.index.corpus import Catalogue, CorpusIndex, SentenceLookups, SentenceSet, WordPieces
from qa.index.publish import CURRENT, TMP_PREFIX, build_lock, build_running, publish, published_build
from qa.index.reuse import encode_texts, split_documents
from qa.index.rows import (SentenceTokens, TokenRows, VectorRows, gather_ranges, mean_vectors, piece_frequencies,
                           token_weights, weights_of_pieces)
from qa.index.spec import (FORMAT_VERSION, KINDS, BuildSpec, IndexCorrupt, IndexMissing, IndexUnavailable,
                           corpus_fingerprint, document_chunk, document_fields, make_passages, passage_text,
                           split_key, splitter_version)
from qa.index.storage import BuildParts, index_is_current, load, read_manifest, save_build

__all__ = ["build", "dense_index", "write_build", "apply_files", "index_change", "merge_due", "merge_segments", "segment_sizes", "segments_of", "update", "document_chunk",
           "document_fields", "Catalogue", "CorpusIndex", "SentenceLookups", "SentenceSet", "WordPieces", "CURRENT", "TMP_PREFIX", "build_lock", "build_running", "publish",
           "published_build", "encode_texts", "split_documents", "SentenceTokens", "TokenRows", "VectorRows",
           "gather_ranges", "mean_vectors", "piece_frequencies", "token_weights", "weights_of_pieces",
           "FORMAT_VERSION", "KINDS", "BuildSpec", "IndexCorrupt", "IndexMissing", "IndexUnavailable",
           "corpus_fingerprint", "make_passages", "passage_text", "split_key", "splitter_version", "BuildParts",
           "index_is_current", "load", "read_manifest", "save_build"]
