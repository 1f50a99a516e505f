"""HTML pages (qa/formats/html.py): a documentation page read from its structure — code blocks as code, heading
anchors left out, definition lists, notes, tables and footnotes kept — and lines broken by <br>."""

from __future__ import annotations

from qa.formats import read_file_bytes
from qa.ingest import make_document, split_sentences

SPHINX_PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8">
<title>csv — CSV File Reading and Writing — Python 3.11 documentation</title></head><body>
<div class="related" role="navigation"><ul><li><a href="index.html">index</a></li><li><a href="json.html">next</a></li></ul></div>
<div class="document"><div class="body" role="main">
<section id="module-csv"><h1><code>csv</code> — CSV File Reading and Writing<a class="headerlink" href="#module-csv"
 title="Permalink to this headline">¶</a></h1>
<p>The <code class="docutils literal"><span class="pre">csv</span></code> module implements classes to read and
write tabular data in CSV
format.  It lets programmers say “write this data in the format preferred by Excel.”</p>
<dl class="py function"><dt class="sig" id="csv.reader">csv.reader(<em>csvfile</em>, <em>dialect='excel'</em>)<a
 class="headerlink" href="#csv.reader" title="Permalink to this definition">¶</a></dt>
<dd><p>Return a reader object which will iterate over lines in the given <em>csvfile</em>. Call
<code>date(2002, 12, 4).weekday()</code> to see why dates need care.</p>
<p>A short usage example:</p>
<div class="highlight-pycon3"><div class="highlight"><pre><span class="gp">&gt;&gt;&gt; </span>import csv
<span class="gp">&gt;&gt;&gt; </span>with open('eggs.csv', newline='') as f:
<span class="gp">... </span>    print(list(csv.reader(f)))
</pre></div></div>
<div class="admonition note"><p class="admonition-title">Note</p>
<p>The csv module does not support input with NUL characters.</p></div>
</dd></dl>
<table class="docutils"><thead><tr><th><p>Level</p></th><th><p>Numeric value</p></th></tr></thead>
<tbody><tr><td><p><code>WARNING</code></p></td><td><p>30</p></td></tr></tbody></table>
<aside class="footnote brackets" id="id3"><span class="label">1</span>
<p>If newline='' is not specified, newlines inside quoted fields will not be read correctly.</p></aside>
</section></div></div>
<div class="sphinxsidebar" role="navigation"><h3>Previous topic</h3><p><a href="fileformats.html">File Formats</a></p></div>
<div class="footer">© Copyright 2001-2023, Python Software Foundation.</div>
</body></html>"""


def read(page: str, name: str = "csv.html"):
    found = read_file_bytes(page.encode("utf-8"), ".html")
    doc = make_document(name, found.text, found.meta, source=name, blocks=found.blocks)
    sentences = split_sentences(doc)
    assert all(doc.raw[s.start:s.end] == s.text for s in sentences)
    return doc, sentences


def test_a_documentation_page_reads_as_its_structure():
    doc, sents = read(SPHINX_PAGE)
    got = [(s.kind, s.text) for s in sents]
    assert doc.title == "csv — CSV File Reading and Writing"
    assert got[0] == ("title", "csv — CSV File Reading and Writing")
    assert ("body", "The csv module implements classes to read and write tabular data in CSV format.") in got
    assert ("heading", "csv.reader(csvfile, dialect='excel')") in got  # an API signature introduces its entry
    assert ("body", "Call date(2002, 12, 4).weekday() to see why dates need care.") in got  # not cut in the code
    assert ("body", "The csv module does not support input with NUL characters.") in got  # the note is kept
    assert ("body", "WARNING | 30") in got  # a table row is one unit
    assert any(k == "body" and t.startswith("If newline='' is not specified") for k, t in got)  # the footnote
    for furniture in ("¶", "index", "Previous topic", "Copyright", "File Formats"):
        assert furniture not in doc.raw


def test_a_code_block_is_one_unit_with_its_lines_and_never_glued_to_prose():
    doc, sents = read(SPHINX_PAGE)
    code = [s for s in sents if s.kind == "code"]
    assert [s.text for s in code] == [">>> import csv\n>>> with open('eggs.csv', newline='') as f:\n"
                                      "...     print(list(csv.reader(f)))"]
    before = sents[sents.index(code[0]) - 1]
    assert before.text == "A short usage example:" and before.kind == "body"


def test_permalinks_and_hash_anchors_never_reach_the_text():
    page = """<html><head><title>Install</title></head><body><main><article>
<h2 id="setup">Setup<a class="headerlink" href="#setup" title="Permanent link">&para;</a></h2>
<p>Download the installer and run it as an administrator on the target machine.</p>
<h3 id="linux"><a class="anchor" href="#linux" aria-hidden="true">#</a>Linux</h3>
<p>Use the package manager of the distribution to install the program and its data.</p>
<h3 id="mac">macOS <a href="#mac" title="Link to this heading">🔗</a></h3>
<p>Drag the application into the Applications folder and open it once from there.</p></article></main></body></html>"""
    doc, sents = read(page, "install.html")
    assert [s.text for s in sents if s.kind == "heading"] == ["Setup", "Linux", "macOS"]
    assert "¶" not in doc.raw and "#" not in doc.raw and "🔗" not in doc.raw


def test_lines_broken_by_br_stay_lines():
    page = """<html><body><article><h1>Contact</h1><p>Write to us at the address below for any question.</p>
<p>Harbour Office<br>1 Quay Street<br>Portsmouth</p></article></body></html>"""
    doc, sents = read(page, "contact.html")
    assert [s.text for s in sents][-3:] == ["Harbour Office", "1 Quay Street", "Portsmouth"]
    assert "Harbour Office\n1 Quay Street\nPortsmouth" in doc.raw
