// The qa chat page: plain DOM, no framework, no build step. Text from the server (answers, documents) is only
// ever put into the page with textContent / text nodes, never parsed as HTML.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const messages = $("messages");
  const form = $("ask-form");
  const input = $("question");
  const askButton = $("ask-button");
  const statusEl = $("status");
  const viewer = $("viewer");
  const viewerBody = $("viewer-body");

  let conversationId = null; // kept between questions so follow-ups are read in context
  const documents = new Map(); // doc_id → Promise of the /documents/{id} response

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  async function api(method, path, body) {
    const init = { method, headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const err = new Error((data && data.detail) || `${response.status} ${response.statusText}`);
      err.status = response.status;
      throw err;
    }
    return data;
  }

  // -- service status ---------------------------------------------------------------------------------

  async function checkHealth() {
    try {
      const response = await fetch("/health", { headers: { Accept: "application/json" } });
      const h = await response.json();
      if (h.ready) {
        const skipped = h.skipped ? ` · ${h.skipped} ${h.skipped === 1 ? "file" : "files"} skipped` : "";
        statusEl.textContent = `ready · ${h.documents} documents · ${h.sentences} sentences${skipped}`;
        statusEl.className = "status ok";
        statusEl.title = `index built ${h.index_built_at}; model ${h.model}; corpus ${h.corpus_fingerprint}`;
        if (h.skipped) describeSkipped();
        return;
      }
      statusEl.textContent = h.status === "error" ? "index unavailable" : "loading the index…";
      statusEl.className = h.status === "error" ? "status bad" : "status";
      statusEl.title = h.error || "";
    } catch (_) {
      statusEl.textContent = "server unreachable";
      statusEl.className = "status bad";
    }
    setTimeout(checkHealth, 2000);
  }

  // The files the index left out, with their reasons, in the status line's tooltip.
  async function describeSkipped() {
    try {
      const skipped = await api("GET", "/documents/skipped");
      const lines = skipped.slice(0, 30).map((f) => `${f.path}: ${f.reason}`);
      if (skipped.length > lines.length) lines.push(`… and ${skipped.length - lines.length} more`);
      statusEl.title += `\nnot indexed:\n${lines.join("\n")}`;
    } catch (_) {
      // the count is still shown
    }
  }

  // -- the conversation -------------------------------------------------------------------------------

  function hideHint() {
    const hint = $("empty-hint");
    if (hint) hint.remove();
  }

  function addMessage(className) {
    hideHint();
    const li = el("li", `message ${className}`);
    messages.appendChild(li);
    return li;
  }

  function scrollToEnd(node) {
    node.scrollIntoView({ block: "end", behavior: "smooth" });
  }

  // Where a citation points: the page of a PDF, and the sentence.
  function place(c) {
    return `${c.page ? `page ${c.page} · ` : ""}sentence ${c.sentence_index}`;
  }

  function citationLabel(c) {
    return `${c.title} · ${c.doc_id} · ${place(c)}`;
  }

  // A sentence as shown: a line break inside prose (a wrapped line of the source) is a space; code keeps its lines.
  function sentenceNode(s) {
    if (s.kind === "code") {
      const pre = el("pre", "text code");
      pre.appendChild(el("code", "", s.text));
      return pre;
    }
    return el("span", "text", s.text.replace(/\s+/g, " "));
  }

  function chip(citation, kind) {
    const button = el("button", `chip ${kind}`);
    button.type = "button";
    button.title = `chars ${citation.start}–${citation.end} — open the source with this sentence highlighted`;
    if (kind === "also") button.appendChild(el("span", "chip-prefix", "also in"));
    if (kind === "differ") button.appendChild(el("span", "chip-prefix", "differs"));
    button.appendChild(el("span", "chip-title", citation.title));
    button.appendChild(el("span", "chip-doc", `${citation.doc_id} · ${place(citation)}`));
    button.setAttribute("aria-label", `Open source: ${citationLabel(citation)}`);
    button.dataset.docId = citation.doc_id;
    button.dataset.sentenceIndex = String(citation.sentence_index);
    button.addEventListener("click", () => openDocument(citation, button));
    return button;
  }

  // `text` as nodes, each occurrence of one of `parts` (the differing names, numbers, dates) in a <mark>.
  function marked(text, parts) {
    const span = el("span", "side-text");
    const wanted = parts.filter((p) => p);
    let pos = 0;
    while (pos < text.length) {
      let best = -1;
      let part = "";
      for (const p of wanted) {
        const at = text.indexOf(p, pos);
        if (at >= 0 && (best < 0 || at < best)) { best = at; part = p; }
      }
      if (best < 0) break;
      if (best > pos) span.appendChild(document.createTextNode(text.slice(pos, best)));
      span.appendChild(el("mark", "differs", part));
      pos = best + part.length;
    }
    if (pos < text.length) span.appendChild(document.createTextNode(text.slice(pos)));
    return span;
  }

  // "Sources differ": the answer sentence and the other source's, side by side, the differences marked.
  function disagreement(sentence, other) {
    const box = el("section", "disagreement");
    box.setAttribute("aria-label", "Sources differ");
    const pairs = other.differs || [];
    box.appendChild(el("p", "differ-title",
      "sources differ: " + pairs.map(([a, b]) => `${a} / ${b}`).join("; ")));
    const sides = el("div", "sides");
    for (const [cite, text, parts] of [[sentence, sentence.text, pairs.map((p) => p[0])],
                                       [other, other.text, pairs.map((p) => p[1])]]) {
      const side = el("div", "side");
      side.appendChild(marked(text, parts));
      side.appendChild(chip(cite, cite === sentence ? "primary" : "differ"));
      sides.appendChild(side);
    }
    box.appendChild(sides);
    return box;
  }

  function renderAnswer(li, answer) {
    li.replaceChildren();
    if (answer.understood_as) {
      const u = el("p", "understood");
      u.appendChild(el("span", "label", "understood as"));
      u.appendChild(el("span", "", answer.understood_as));
      li.appendChild(u);
    }
    if (!answer.answered) {
      li.classList.add("not-found");
      const box = el("div", "not-found-box");
      const message = answer.message || "not found in the corpus";
      box.appendChild(el("strong", "", message.charAt(0).toUpperCase() + message.slice(1)));
      box.appendChild(el("span", "meta", answer.sentences.length
        ? "These are the closest sentences, but none answers the question with enough confidence."
        : "No sentence in the indexed articles answers this question."));
      li.appendChild(box);
    }
    if (answer.sentences.length) {
      const list = el("ol", "sentences");
      for (const s of answer.sentences) {
        const item = el("li", "sentence");
        const quote = el("blockquote", "quote");
        if (s.context) quote.appendChild(el("span", "context", s.context.replace(/\s+/g, " ") + " "));
        quote.appendChild(sentenceNode(s));
        item.appendChild(quote);
        const chips = el("div", "chips");
        chips.appendChild(chip(s, "primary"));
        for (const other of s.also_in || []) chips.appendChild(chip(other, "also"));
        item.appendChild(chips);
        for (const other of s.disagrees || []) item.appendChild(disagreement(s, other));
        list.appendChild(item);
      }
      li.appendChild(list);
    }
    li.appendChild(el("p", "meta footer",
      `${answer.retriever} · confidence ${answer.confidence.toFixed(2)} · ${Math.round(answer.took_ms)} ms`));
  }

  async function ask(question) {
    const q = question.trim();
    if (!q) return;
    const mine = addMessage("question");
    mine.appendChild(el("p", "", q));
    const pending = addMessage("answer pending");
    pending.appendChild(el("p", "meta", "searching the corpus…"));
    scrollToEnd(pending);
    input.value = "";
    autoGrow();
    askButton.disabled = true;
    try {
      const body = {
        question: q,
        conversation_id: conversationId,
        top_k: Math.min(20, Math.max(1, parseInt($("top-k").value, 10) || 5)),
        retriever: $("retriever").value,
      };
      let answer;
      try {
        answer = await api("POST", "/ask", body);
      } catch (err) {
        if (err.status !== 404 || !conversationId) throw err;
        // The conversation expired on the server: start a new one and say so.
        conversationId = null;
        pending.before(notice("That conversation no longer exists on the server; this question starts a new one."));
        answer = await api("POST", "/ask", { ...body, conversation_id: null });
      }
      conversationId = answer.conversation_id;
      pending.classList.remove("pending");
      renderAnswer(pending, answer);
    } catch (err) {
      pending.classList.remove("pending");
      pending.classList.add("error");
      pending.replaceChildren(el("p", "", `Could not answer: ${err.message}`));
    } finally {
      askButton.disabled = false;
      scrollToEnd(pending);
      input.focus();
    }
  }

  function notice(text) {
    const li = el("li", "message notice");
    li.appendChild(el("p", "", text));
    return li;
  }

  function newConversation() {
    conversationId = null;
    messages.replaceChildren();
    messages.appendChild(notice("New conversation. Questions no longer refer to the earlier ones."));
    closeViewer();
    input.focus();
  }

  // -- the source document ----------------------------------------------------------------------------

  function fetchDocument(docId) {
    if (!documents.has(docId)) {
      const p = api("GET", `/documents/${encodeURIComponent(docId)}`);
      p.catch(() => documents.delete(docId));
      documents.set(docId, p);
    }
    return documents.get(docId);
  }

  // Offsets count Unicode code points (Python string indices), not UTF-16 units: slice code points.
  function renderDocument(doc, citation) {
    const chars = Array.from(doc.text);
    const body = document.createDocumentFragment();
    let pos = 0;
    let cited = null;
    const sentences = [...doc.sentences].sort((a, b) => a.start - b.start);
    for (const s of sentences) {
      if (s.start < pos) continue;
      if (s.start > pos) body.appendChild(document.createTextNode(chars.slice(pos, s.start).join("")));
      const isCited = s.index === citation.sentence_index;
      const span = el(isCited ? "mark" : "span", `sentence kind-${s.kind}${isCited ? " cited" : ""}`,
        chars.slice(s.start, s.end).join(""));
      span.dataset.index = String(s.index);
      if (isCited) cited = span;
      body.appendChild(span);
      pos = s.end;
    }
    if (pos < chars.length) body.appendChild(document.createTextNode(chars.slice(pos).join("")));
    viewerBody.replaceChildren(body);
    return cited;
  }

  async function openDocument(citation, button) {
    document.querySelectorAll(".chip.active").forEach((c) => c.classList.remove("active"));
    button.classList.add("active");
    viewer.hidden = false;
    document.body.classList.add("viewing");
    $("viewer-title").textContent = citation.title;
    $("viewer-meta").textContent = `${citation.doc_id} · loading…`;
    viewerBody.replaceChildren();
    try {
      const doc = await fetchDocument(citation.doc_id);
      $("viewer-title").textContent = doc.title;
      $("viewer-meta").textContent =
        `${doc.doc_id} · ${place(citation)} · chars ${citation.start}–${citation.end}` +
        (doc.published ? ` · ${doc.published}` : "");
      const cited = renderDocument(doc, citation);
      if (cited) {
        cited.scrollIntoView({ block: "center" });
      } else {
        $("viewer-meta").textContent += " · the cited sentence is not in this version of the document";
      }
    } catch (err) {
      viewerBody.replaceChildren(el("p", "error", `Could not open the document: ${err.message}`));
    }
  }

  function closeViewer() {
    viewer.hidden = true;
    document.body.classList.remove("viewing");
    document.querySelectorAll(".chip.active").forEach((c) => c.classList.remove("active"));
  }

  // -- wiring -----------------------------------------------------------------------------------------

  function autoGrow() {
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, 160) + "px";
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    ask(input.value);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  input.addEventListener("input", autoGrow);
  $("new-conversation").addEventListener("click", newConversation);
  $("viewer-close").addEventListener("click", closeViewer);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !viewer.hidden) closeViewer();
  });
  document.querySelectorAll("button.example").forEach((b) => b.addEventListener("click", () => ask(b.textContent)));

  checkHealth();
  input.focus();
})();
