"""Report-chunking synthesis tasks: the training data for a research agent's last step, writing the report.

Pages in, task rows out, like every other stage:

1. `read_sources` reads candidate pages and their link neighbourhood from a snapshot (or the store), read-only;
   `select_sources` keeps long, structured, English prose pages (`SourceCriteria`) and counts why others go.
2. `chunk_page` cuts a page on section/paragraph/sentence boundaries under a token budget (`pipeline.synthesis.chunking`).
3. `build_report_tasks` assembles three task kinds, each a row with its prompt, chunks and gold:
   - `reorder`: the shuffled consecutive chunks of one page; gold: the original order (a permutation of ids);
   - `synthesise`: chunks of a page and the pages it links to, shuffled, with distractor chunks from unrelated
     pages; gold: the source outline and verified key points; the answer is a report citing chunk ids;
   - `analyse_merge`: the same material; first one note per chunk (intermediate targets), then a merged summary.
   Key points and reference answers come from a teacher model through the generation layer (`Backend.generate`
   with a JSON schema). A key point survives only if its quote occurs literally (after whitespace/case
   normalisation) in its chunk; a malformed answer is a counted rejection, never an error.
4. `check_tasks` states the data contracts (chunks trace to their source text, gold is consistent, the split is
   a function of the sources) and `task_table` gives the rows as Arrow with a fixed schema.

Determinism: every random choice comes from an RNG seeded by (seed, task kind, anchor page URL), so a task does
not change when other pages come and go; teacher calls are greedy and cached by the generation layer.
Split: a page's split is `split_of(page URL)`; a task draws all its pages (companions, distractors) from its
anchor page's split, so no page's text is in both train and eval, and `split_key` (the anchor URL) decides it.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pyarrow as pa

from pipeline.synthesis.chunking import CountTokens, PageProfile, chunk_spans, profile_text, split_blocks
from pipeline.text.lexical import normalize, quote_in, sentence_spans, strip_quote, token_recall, tokens
from pipeline.datasets.splits import split_of

TASK_KINDS = ("reorder", "synthesise", "analyse_merge")
# Bump a version whenever the text of that prompt changes: it is recorded on every row it produced.
PROMPT_VERSIONS = {
    "reorder": "reorder-v1",
    "synthesise": "synthesise-v1",
    "analyse_merge": "analyse_merge-v1",
    "key_points": "key_points-v2",
    "reference_report": "reference_report-v1",
    "reference_summary": "reference_summary-v1",
}
OFF_TOPIC_NOTE = "off-topic"
_BRACKETS = re.compile(r"\s*\[[^\[\]]{0,40}\]")


# ---- configuration ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SourceCriteria:
    """What makes a page a source: long, structured, mostly English prose."""

    min_chars: int = 3000
    min_prose_paragraphs: int = 6
    min_headings: int = 1
    min_prose_share: float = 0.6
    min_stopword_share: float = 0.25


@dataclass(frozen=True)
class ReportTaskConfig:
    n_reorder: int = 10
    n_synthesise: int = 10
    n_analyse_merge: int = 10
    chunk_max_tokens: int = 192
    """Token budget of one chunk, measured with the model's tokenizer."""
    chunk_min_tokens: int = 48
    """A chunk below this keeps growing across a section boundary (if the next section's start fits)."""
    chunks_per_task: int = 6
    """Source chunks shown in one task (distractors come on top)."""
    min_chunks_per_task: int = 3
    distractors: int = 1
    """Distractor chunks from unrelated pages per synthesise / analyse_merge task."""
    max_sources_per_task: int = 2
    """Pages one synthesise / analyse_merge task draws from: the anchor page and pages it links to."""
    seed: int = 0
    eval_fraction: float = 0.1
    key_points_per_chunk: int = 3
    key_points_max_tokens: int = 192
    reference_max_tokens: int = 384
    with_references: bool = True
    """Ask the teacher for reference answers (synthesise, analyse_merge); reorder's reference is its gold."""
    min_reference_score: float = 0.0
    """Drop teacher references whose mean verifier score is below this (counted as ref_low_score)."""
    criteria: SourceCriteria = field(default_factory=SourceCriteria)

    def count(self, kind: str) -> int:
        return {"reorder": self.n_reorder, "synthesise": self.n_synthesise, "analyse_merge": self.n_analyse_merge}[kind]


# ---- reading sources ---------------------------------------------------------------------------------------------

# Candidates: long pages, a seeded sample per host (md5 is stable across DuckDB versions, `hash` is not).
_CANDIDATES_SQL = """
SELECT page_id, url, host, title, text
FROM pages
WHERE text IS NOT NULL AND length(text) >= $min_chars
QUALIFY row_number() OVER (PARTITION BY host ORDER BY md5($seed || url)) <= $per_host
ORDER BY md5($seed || url)
"""
# Neighbours worth grouping with a candidate: its most-clicked (then most-linked) long outlinks whose link sits
# in the page's main text (the sentence around it was extracted with it): navigation links relate nothing.
_NEIGHBOUR_EDGES_SQL = """
SELECT g.src_id, g.dst_id, g.n_links, g.clicks
FROM link_graph g JOIN pages d ON d.page_id = g.dst_id JOIN pages s ON s.page_id = g.src_id
WHERE list_contains($ids, g.src_id) AND length(d.text) >= $min_chars
  AND g.context <> '' AND contains(s.text, g.context)
QUALIFY row_number() OVER (PARTITION BY g.src_id ORDER BY g.clicks DESC, g.n_links DESC, md5($seed || d.url))
        <= $per_page
"""
# Every edge among the pages in hand: what makes a distractor page unrelated.
_EDGES_AMONG_SQL = """
SELECT src_id, dst_id, n_links, clicks FROM link_graph
WHERE list_contains($ids, src_id) AND list_contains($ids, dst_id)
"""
_PAGES_BY_ID_SQL = "SELECT page_id, url, host, title, text FROM pages WHERE list_contains($ids, page_id)"
_TEXTS_BY_URL_SQL = "SELECT url, text FROM pages WHERE list_contains($urls, url)"


@dataclass
class SourceRows:
    pages: list[dict]
    edges: list[dict]


def _rows(con, sql: str, params: dict) -> list[dict]:
    cur = con.execute(sql, params)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def read_sources(db_path: str | Path, *, seed: int = 0, min_chars: int = 3000, per_host: int = 200,
                 neighbours_per_page: int = 3) -> SourceRows:
    """Candidate pages (up to `per_host` per host), their best-linked long neighbours, and the edges among them.

    `db_path` is a snapshot's `snapshot.duckdb` or the store: any DuckDB file with `pages` and `link_graph`.
    Opened read-only.
    """
    import duckdb

    with duckdb.connect(str(db_path), read_only=True) as con:
        base = {"seed": str(seed), "min_chars": min_chars}
        pages = _rows(con, _CANDIDATES_SQL, {**base, "per_host": per_host})
        ids = [p["page_id"] for p in pages]
        has_links = bool(con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'link_graph'").fetchone()[0])
        edges: list[dict] = []
        if has_links and ids and neighbours_per_page > 0:
            edges = _rows(con, _NEIGHBOUR_EDGES_SQL, {**base, "ids": ids, "per_page": neighbours_per_page})
            known = set(ids)
            extra = sorted({e["dst_id"] for e in edges} - known)
            if extra:
                pages += _rows(con, _PAGES_BY_ID_SQL, {"ids": extra})
            all_ids = [p["page_id"] for p in pages]
            seen = {(e["src_id"], e["dst_id"]) for e in edges}
            edges += [e for e in _rows(con, _EDGES_AMONG_SQL, {"ids": all_ids}) if (e["src_id"], e["dst_id"]) not in seen]
    return SourceRows(pages=pages, edges=edges)


def read_texts(db_path: str | Path, urls: Iterable[str]) -> dict[str, str]:
    """The stored text of each URL (for checks that re-read the source independently of the build)."""
    import duckdb

    with duckdb.connect(str(db_path), read_only=True) as con:
        return {r["url"]: r["text"] for r in _rows(con, _TEXTS_BY_URL_SQL, {"urls": sorted(set(urls))})}


# ---- selecting sources ----------------------------------------------------------------------------------------------

def source_rejection(profile: PageProfile, criteria: SourceCriteria) -> str | None:
    """Why a page is not a source (None: it is one)."""
    if profile.n_chars < criteria.min_chars:
        return "page_too_short"
    if profile.stopword_share < criteria.min_stopword_share:
        return "page_not_english_prose"
    if profile.prose_share < criteria.min_prose_share:
        return "page_not_prose"
    if profile.n_prose_paragraphs < criteria.min_prose_paragraphs:
        return "page_few_paragraphs"
    if profile.n_headings < criteria.min_headings:
        return "page_few_sections"
    return None


def _order_key(seed: int, url: str) -> str:
    return hashlib.md5(f"{seed}{url}".encode("utf-8")).hexdigest()


def select_sources(pages: Iterable[dict], criteria: SourceCriteria = SourceCriteria(), seed: int = 0
                   ) -> tuple[list[dict], Counter]:
    """Pages that qualify as sources, in a seeded order that alternates between hosts; rejections by reason."""
    rejected: Counter = Counter()
    by_host: dict[str, list[dict]] = defaultdict(list)
    seen_urls: set[str] = set()
    for page in pages:
        if page["url"] in seen_urls:
            continue
        seen_urls.add(page["url"])
        reason = source_rejection(profile_text(page.get("text") or ""), criteria)
        if reason:
            rejected[reason] += 1
        else:
            by_host[page.get("host") or ""].append(page)
    queues = [sorted(ps, key=lambda p: _order_key(seed, p["url"])) for _, ps in sorted(by_host.items())]
    ordered = [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]
    return ordered, rejected


def display_titles(pages: Sequence[dict]) -> dict[str, str]:
    """A title per URL that names the page: its own title, unless several pages of its host share that title
    ("Blogs"), then the first line of its text when that is short (the page's heading, as extracted)."""
    shared = Counter((p.get("host"), p.get("title")) for p in pages)
    out = {}
    for p in pages:
        title = (p.get("title") or "").strip()
        first = (p.get("text") or "").lstrip().split("\n", 1)[0].strip()
        if (not title or shared[(p.get("host"), p.get("title"))] > 1) and 0 < len(first) <= 100:
            title = first
        out[p["url"]] = title
    return out


# ---- chunks -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Chunk:
    """A contiguous slice of one page's text: `page text[char_start:char_end] == text`."""

    source_chunk_id: str  # "<page key>#<position>"
    url: str
    title: str
    position: int  # index of the chunk in its page
    char_start: int
    char_end: int
    section: str  # the heading in force where the chunk starts ("" before the first heading)
    text: str
    n_tokens: int


def page_key(page: dict) -> str:
    pid = page.get("page_id")
    return str(pid) if pid is not None else hashlib.sha256(page["url"].encode()).hexdigest()[:12]


def chunk_page(page: dict, count_tokens: CountTokens, max_tokens: int, min_tokens: int = 0) -> list[Chunk]:
    """The chunks of one page dict (`url`, `text`, optional `page_id`, `title`)."""
    text = page.get("text") or ""
    key = page_key(page)
    out = []
    for i, span in enumerate(chunk_spans(text, count_tokens, max_tokens, min_tokens)):
        piece = text[span.start:span.end]
        out.append(Chunk(f"{key}#{i}", page["url"], page.get("title") or "", i, span.start, span.end,
                         span.section, piece, count_tokens(piece)))
    return out


def load_tokenizer(name_or_path: str | Path):
    """A Hugging Face tokenizer from a model folder or name, or straight from a `.gguf` file."""
    from transformers import AutoTokenizer

    path = Path(name_or_path)
    if path.suffix == ".gguf":
        return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return AutoTokenizer.from_pretrained(str(name_or_path))


def tokenizer_counter(tokenizer) -> CountTokens:
    """`count_tokens` for a Hugging Face tokenizer: tokens of the text, without special tokens."""
    return lambda s: len(tokenizer(s, add_special_tokens=False)["input_ids"])


# ---- prompts ----------------------------------------------------------------------------------------------------

_SYSTEM = "You are a careful research assistant. You only state facts found in the material you are given."


def _fragments(chunks: Sequence[dict]) -> str:
    return "\n\n".join(f"[{c['chunk_id']}]\n{c['text']}" for c in chunks)


def _topic(titles: Sequence[str]) -> str:
    titles = [t for t in titles if t]
    return " and ".join(f'"{t}"' for t in titles) if titles else "the subject of the fragments"


def reorder_prompt(title: str, chunks: Sequence[dict]) -> list[dict]:
    user = (f"The {len(chunks)} fragments below were cut from one document, {_topic([title])}, and shuffled. "
            "Put them back in their original order.\n"
            "Answer with the fragment ids in the original order, separated by commas, and nothing else "
            "(for example: C3, C1, C2).\n\n"
            f"Fragments:\n\n{_fragments(chunks)}")
    return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": user}]


def synthesise_prompt(titles: Sequence[str], chunks: Sequence[dict], min_words: int, max_words: int) -> list[dict]:
    user = (f"Write a research report on {_topic(titles)} from the fragments below. They were collected from "
            f"{len(titles)} source{'s' if len(titles) > 1 else ''} and are in no particular order; some fragments "
            "may be off-topic: leave those out.\n\n"
            "Format it in Markdown: a title line starting with \"# \", then two or more sections, each under a "
            "heading line starting with \"## \". End every sentence with the ids of the fragments that support it "
            "in square brackets, for example [C2] or [C1][C4]. Use only facts stated in the fragments. "
            f"Length: {min_words} to {max_words} words.\n\n"
            f"Fragments:\n\n{_fragments(chunks)}")
    return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": user}]


def analyse_merge_prompt(titles: Sequence[str], chunks: Sequence[dict], min_words: int, max_words: int) -> list[dict]:
    user = (f"Below are {len(chunks)} fragments about {_topic(titles)}, in no particular order; some may be "
            "off-topic.\n\n"
            "Step 1, analyse: under a heading line \"## Notes\", write one line per fragment: its id in square "
            "brackets, then its main facts in one or two sentences, for example \"[C2] The bridge opened in 1932.\" "
            f"For a fragment unrelated to {_topic(titles)} write \"[C5] {OFF_TOPIC_NOTE}\".\n"
            "Step 2, merge: under a heading line \"## Summary\", merge the notes into one coherent summary of "
            f"{min_words} to {max_words} words. End every sentence with the ids of the fragments it uses in square "
            "brackets, for example [C3].\n\n"
            f"Fragments:\n\n{_fragments(chunks)}")
    return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": user}]


KEY_POINTS_SCHEMA = {
    "type": "object",
    "properties": {"key_points": {"type": "array", "items": {
        "type": "object",
        "properties": {"point": {"type": "string"}, "quote": {"type": "string"}},
        "required": ["point", "quote"]}}},
    "required": ["key_points"],
}
_SENTENCES_SCHEMA = {"type": "array", "items": {
    "type": "object",
    "properties": {"text": {"type": "string"}, "cites": {"type": "array", "items": {"type": "string"}}},
    "required": ["text", "cites"]}}
REPORT_SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "sections": {"type": "array", "items": {
        "type": "object",
        "properties": {"heading": {"type": "string"}, "sentences": _SENTENCES_SCHEMA},
        "required": ["heading", "sentences"]}}},
    "required": ["title", "sections"],
}
SUMMARY_SCHEMA = {"type": "object", "properties": {"sentences": _SENTENCES_SCHEMA}, "required": ["sentences"]}

def _key_points_user(passage: str, n: int) -> str:
    return (f"Passage:\n{passage}\n\nList up to {n} key points of the passage. For each key point give \"point\": "
            "the fact in a short sentence, and \"quote\": a sentence copied word for word from the passage that "
            "supports it. Reply with JSON only: {\"key_points\": [{\"point\": \"...\", \"quote\": \"...\"}]}")


def key_points_chat(passage: str, n: int = 3) -> list[dict]:
    """The teacher prompt for one chunk's key points. Zero-shot on purpose: given a worked example, the 135M
    embedded model copies the example's key points instead of reading the passage."""
    return [
        {"role": "system", "content": "You extract the key facts of a passage. Reply with JSON only."},
        {"role": "user", "content": _key_points_user(passage, n)},
    ]


def key_points_schema(n: int) -> dict:
    """KEY_POINTS_SCHEMA with at most `n` items (grammar-constrained backends then cannot loop)."""
    items = dict(KEY_POINTS_SCHEMA["properties"]["key_points"], minItems=1, maxItems=n)
    return {**KEY_POINTS_SCHEMA, "properties": {"key_points": items}}


def reference_report_chat(prompt: list[dict]) -> list[dict]:
    shape = ('{"title": "...", "sections": [{"heading": "...", "sentences": [{"text": "...", "cites": ["C1"]}]}]}')
    return [prompt[0], {"role": "user", "content": prompt[1]["content"] + (
        "\n\nReply with JSON only, in this shape (each sentence with the ids of the fragments that support it): "
        + shape)}]


def reference_summary_chat(titles: Sequence[str], notes: Sequence[dict], min_words: int, max_words: int
                           ) -> list[dict]:
    lines = "\n".join(f"[{n['chunk_id']}] {n['note']}" for n in notes if n["note"] != OFF_TOPIC_NOTE)
    user = (f"Here are notes on fragments about {_topic(titles)}, each with its fragment id:\n\n{lines}\n\n"
            f"Merge the notes into one coherent summary of {min_words} to {max_words} words. Reply with JSON only: "
            '{"sentences": [{"text": "...", "cites": ["C1"]}]}, where "cites" lists the ids of the notes each '
            "sentence uses.")
    return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": user}]


# ---- rendering answers ------------------------------------------------------------------------------------------------

def _clean_sentence(text: str) -> str:
    return _BRACKETS.sub("", text or "").strip()


def _cited(text: str, cites: Iterable[str], valid: set[str] | None = None) -> str:
    ids = []
    for c in cites:
        c = str(c).strip().strip("[]").upper()
        if c and c not in ids and (valid is None or c in valid):
            ids.append(c)
    text = _clean_sentence(text).rstrip()
    end = ""
    if text and text[-1] in ".!?":
        text, end = text[:-1], text[-1]
    return f"{text} {''.join(f'[{i}]' for i in ids)}{end or '.'}" if ids else f"{text}{end or '.'}"


def render_report(title: str, sections: Sequence[dict], valid_ids: set[str] | None = None) -> str:
    """Markdown report from {"heading", "sentences": [{"text", "cites"}]} sections (citations before the stop)."""
    lines = [f"# {_clean_sentence(title) or 'Report'}"]
    for sec in sections:
        sentences = [_cited(s["text"], s.get("cites") or [], valid_ids) for s in sec.get("sentences") or []
                     if _clean_sentence(s.get("text", ""))]
        if not sentences:
            continue
        lines += ["", f"## {_clean_sentence(sec.get('heading', '')) or 'Section'}", " ".join(sentences)]
    return "\n".join(lines)


def render_notes_summary(notes: Sequence[dict], summary_sentences: Sequence[dict],
                         valid_ids: set[str] | None = None) -> str:
    lines = ["## Notes"] + [f"[{n['chunk_id']}] {n['note']}" for n in notes]
    lines += ["", "## Summary", " ".join(_cited(s["text"], s.get("cites") or [], valid_ids)
                                         for s in summary_sentences if _clean_sentence(s.get("text", "")))]
    return "\n".join(lines)


def gold_report(row: dict) -> str:
    """The gold answer of a synthesise task: the source outline with its key points, each citing its chunk."""
    kps = defaultdict(list)
    for kp in row["key_points"]:
        kps[kp["chunk_id"]].append(kp)
    sections = []
    for source in row["outline"]:
        for sec in source["sections"]:
            sentences = [{"text": kp["point"], "cites": [cid]} for cid in sec["chunk_ids"] for kp in kps[cid]]
            heading = sec["heading"] or source["title"]
            if source["title"] and heading != source["title"] and len(row["outline"]) > 1:
                heading = f"{source['title']}: {heading}"
            sections.append({"heading": heading, "sentences": sentences})
    return render_report(" and ".join(s["title"] for s in row["outline"] if s["title"]) or "Report", sections)


def gold_notes_summary(row: dict) -> str:
    """The gold answer of an analyse_merge task: the gold notes, then the key points in source order."""
    kps = defaultdict(list)
    for kp in row["key_points"]:
        kps[kp["chunk_id"]].append(kp)
    summary = [{"text": kp["point"], "cites": [cid]} for cid in row["gold_order"] for kp in kps[cid]]
    return render_notes_summary(row["notes"], summary)


def gold_answer(row: dict) -> str:
    if row["task_kind"] == "reorder":
        return ", ".join(row["gold_order"])
    if row["task_kind"] == "synthesise":
        return gold_report(row)
    return gold_notes_summary(row)


# ---- key points ---------------------------------------------------------------------------------------------------

MIN_QUOTE_WORDS = 4
MAX_QUOTE_WORDS = 60


def verify_key_points(items: Any, chunk_text: str, limit: int) -> tuple[list[dict], Counter]:
    """Key points a chunk supports: each must come with a quote that occurs literally in the chunk (whitespace,
    case and quote marks normalised) and say something the chunk's words cover. Rejections by reason."""
    kept: list[dict] = []
    rejected: Counter = Counter()
    seen: set[str] = set()
    for item in items if isinstance(items, list) else []:
        point = str((item or {}).get("point") or "").strip() if isinstance(item, dict) else ""
        quote = str((item or {}).get("quote") or "").strip() if isinstance(item, dict) else ""
        n_quote = len(tokens(strip_quote(quote)))
        if not point or not quote:
            rejected["kp_empty"] += 1
        elif n_quote < MIN_QUOTE_WORDS:
            rejected["kp_quote_too_short"] += 1
        elif n_quote > MAX_QUOTE_WORDS:
            rejected["kp_quote_too_long"] += 1
        elif not quote_in(quote, chunk_text):
            rejected["kp_quote_not_in_chunk"] += 1
        elif token_recall(point, chunk_text) < 0.5:
            rejected["kp_point_not_grounded"] += 1
        elif normalize(point) in seen or normalize(strip_quote(quote)) in seen:
            rejected["kp_duplicate"] += 1
        elif len(kept) >= limit:
            rejected["kp_over_limit"] += 1
        else:
            seen |= {normalize(point), normalize(strip_quote(quote))}
            kept.append({"point": point, "quote": strip_quote_keep_case(quote, chunk_text)})
    return kept, rejected


def strip_quote_keep_case(quote: str, chunk_text: str) -> str:
    """The quote as the chunk writes it when it can be located exactly, else the model's (stripped) wording."""
    q = quote.strip().strip("\"'`\u201c\u201d\u2018\u2019\u2026 .")
    i = chunk_text.find(q)
    return chunk_text[i:i + len(q)] if i >= 0 and q else q


def lead_key_point(chunk_text: str) -> dict | None:
    """The extractive fallback: the first sentence of the chunk's first paragraph (not a heading)."""
    for block in split_blocks(chunk_text):
        if block.kind != "paragraph":
            continue
        for a, b in sentence_spans(chunk_text, block.start, block.end):
            sentence = chunk_text[a:b]
            if len(tokens(sentence)) >= 6:
                return {"point": sentence, "quote": sentence}
    return None


# ---- building tasks ---------------------------------------------------------------------------------------------

@dataclass
class BuildResult:
    rows: list[dict]
    rejections: Counter
    stats: dict[str, Any]


def _rng(seed: int, *parts: str) -> random.Random:
    return random.Random(hashlib.sha256("|".join([str(seed), *parts]).encode()).hexdigest())


def _window(chunks: list[Chunk], n: int, rng: random.Random) -> list[Chunk]:
    n = min(n, len(chunks))
    start = rng.randrange(len(chunks) - n + 1)
    return chunks[start:start + n]


def _shuffle_not_identity(items: list, rng: random.Random) -> list:
    out = list(items)
    for _ in range(10):
        rng.shuffle(out)
        if len(out) < 2 or out != list(items):
            return out
    return out[1:] + out[:1]


def _present(source: list[tuple[Chunk, bool]], rng: random.Random, shuffle: Callable) -> list[dict]:
    shown = shuffle(source, rng)
    return [{"chunk_id": f"C{i + 1}", "source_chunk_id": c.source_chunk_id, "url": c.url, "title": c.title,
             "position": c.position, "char_start": c.char_start, "char_end": c.char_end, "section": c.section,
             "text": c.text, "n_tokens": c.n_tokens, "is_distractor": d} for i, (c, d) in enumerate(shown)]


def _outline(chunks: list[dict], sources: list[dict]) -> list[dict]:
    out = []
    for page in sources:
        mine = sorted((c for c in chunks if c["url"] == page["url"] and not c["is_distractor"]),
                      key=lambda c: c["position"])
        sections: list[dict] = []
        for c in mine:
            if not sections or sections[-1]["heading"] != c["section"]:
                sections.append({"heading": c["section"], "chunk_ids": []})
            sections[-1]["chunk_ids"].append(c["chunk_id"])
        out.append({"url": page["url"], "title": page.get("title") or "", "sections": sections})
    return out


def _word_bounds(chunks: list[dict]) -> tuple[int, int]:
    words = sum(len(c["text"].split()) for c in chunks if not c["is_distractor"])
    return max(40, round(words * 0.1 / 10) * 10), max(150, round(words * 0.5 / 10) * 10)


class _Builder:
    """One build: pages, their chunks (made once), and the rejections counted along the way."""

    def __init__(self, pages: list[dict], edges: list[dict], count_tokens: CountTokens, config: ReportTaskConfig):
        self.config = config
        self.count_tokens = count_tokens
        self.rejections: Counter = Counter()
        self.sources, rejected = select_sources(pages, config.criteria, config.seed)
        self.rejections.update(rejected)
        self.split = {p["url"]: split_of(p["url"], config.eval_fraction) for p in self.sources}
        by_id = {p.get("page_id"): p for p in self.sources if p.get("page_id") is not None}
        self.out_links: dict[str, list[tuple]] = defaultdict(list)
        self.related: dict[str, set[str]] = defaultdict(set)
        for e in edges:
            src, dst = by_id.get(e["src_id"]), by_id.get(e["dst_id"])
            if src is None or dst is None:
                continue
            self.out_links[src["url"]].append((-(e.get("clicks") or 0), -(e.get("n_links") or 0),
                                               _order_key(config.seed, dst["url"]), dst["url"]))
            self.related[src["url"]].add(dst["url"])
            self.related[dst["url"]].add(src["url"])
        titles = display_titles(pages)
        self.by_url = {p["url"]: {**p, "title": titles[p["url"]]} for p in self.sources}
        self._chunks: dict[str, list[Chunk]] = {}

    def chunks(self, url: str) -> list[Chunk]:
        if url not in self._chunks:
            self._chunks[url] = chunk_page(self.by_url[url], self.count_tokens, self.config.chunk_max_tokens,
                                           self.config.chunk_min_tokens)
        return self._chunks[url]

    def companions(self, anchor: str) -> list[str]:
        out = []
        for *_, url in sorted(self.out_links.get(anchor, [])):
            if len(out) >= self.config.max_sources_per_task - 1:
                break
            if self.split[url] == self.split[anchor] and len(self.chunks(url)) >= 2:
                out.append(url)
        return out

    def distractors(self, group: list[str], rng: random.Random) -> list[Chunk]:
        n = self.config.distractors
        if n <= 0:
            return []
        banned = set(group) | {u for g in group for u in self.related.get(g, ())}
        titles = {normalize(self.by_url[g].get("title") or "") for g in group}
        pool = [u for u in self.by_url if u not in banned and self.split[u] == self.split[group[0]]
                and normalize(self.by_url[u]["title"]) not in titles]
        picked: list[Chunk] = []
        for url in rng.sample(pool, min(len(pool), n * 3)):
            usable = [c for c in self.chunks(url) if c.n_tokens >= self.config.chunk_min_tokens]
            if usable:
                picked.append(rng.choice(usable))
            if len(picked) == n:
                break
        if len(picked) < n:
            self.rejections["distractor_unavailable"] += n - len(picked)
        return picked

    def task(self, kind: str, anchor: str) -> dict | None:
        cfg = self.config
        rng = _rng(cfg.seed, kind, anchor)
        if len(self.chunks(anchor)) < cfg.min_chunks_per_task:
            self.rejections["too_few_chunks"] += 1
            return None
        if kind == "reorder":
            group = [anchor]
            shown = _present([(c, False) for c in _window(self.chunks(anchor), cfg.chunks_per_task, rng)], rng,
                             _shuffle_not_identity)
        else:
            group = [anchor] + self.companions(anchor)
            quota = {u: cfg.chunks_per_task // len(group) for u in group}
            quota[anchor] += cfg.chunks_per_task - sum(quota.values())
            picked = []
            for url in group[1:]:
                window = _window(self.chunks(url), quota[url], rng)
                quota[anchor] += quota[url] - len(window)
                picked += window
            picked = _window(self.chunks(anchor), quota[anchor], rng) + picked
            source = [(c, False) for c in picked] + [(c, True) for c in self.distractors(group, rng)]
            shown = _present(source, rng, lambda items, r: r.sample(items, len(items)))
        sources = [self.by_url[u] for u in group]
        order = sorted((c for c in shown if not c["is_distractor"]),
                       key=lambda c: (group.index(c["url"]), c["position"]))
        min_words, max_words = _word_bounds(shown)
        titles = [p.get("title") or "" for p in sources]
        if kind == "reorder":
            prompt = reorder_prompt(titles[0], shown)
        elif kind == "synthesise":
            prompt = synthesise_prompt(titles, shown, min_words, max_words)
        else:
            prompt = analyse_merge_prompt(titles, shown, min_words, max_words)
        ident = "|".join([kind, str(cfg.seed)] + [c["source_chunk_id"] + ("*" if c["is_distractor"] else "")
                                                   for c in shown])
        return {
            "task_id": hashlib.sha256(ident.encode()).hexdigest()[:16],
            "task_kind": kind,
            "prompt": prompt,
            "chunk_ids": [c["chunk_id"] for c in shown],
            "chunks": shown,
            "gold_order": [c["chunk_id"] for c in order],
            "distractor_ids": [c["chunk_id"] for c in shown if c["is_distractor"]],
            "source_urls": group,
            "source_titles": titles,
            "outline": _outline(shown, sources) if kind != "reorder" else [],
            "key_points": [],
            "notes": [],
            "min_words": min_words if kind != "reorder" else 0,
            "max_words": max_words if kind != "reorder" else 0,
            "split": self.split[anchor],
            "split_key": anchor,
        }


def _llm_call(llm, chats: list[list[dict]], max_tokens: int, schema: dict, seed: int) -> list:
    from pipeline.llm.base import SamplingParams

    if not chats:
        return []
    return llm.generate(chats, SamplingParams(max_tokens=max_tokens, temperature=0.0, seed=seed), schema=schema)


def _failure_reason(prefix: str, completion) -> str:
    return f"{prefix}_{(completion.error or 'error').split(':')[0].strip().replace(' ', '_')}"


def _add_key_points(rows: list[dict], llm, config: ReportTaskConfig, rejections: Counter, counts: Counter,
                    model_tag: str) -> None:
    """Teacher key points for every source chunk of the synthesis tasks (one batch), verified; notes from them."""
    todo: dict[str, str] = {}
    for row in rows:
        for c in row["chunks"]:
            if row["task_kind"] != "reorder" and not c["is_distractor"]:
                todo.setdefault(c["source_chunk_id"], c["text"])
    found: dict[str, list[dict]] = {}
    if llm is not None and todo:
        keys = sorted(todo)
        completions = _llm_call(llm, [key_points_chat(todo[k], config.key_points_per_chunk) for k in keys],
                                config.key_points_max_tokens, key_points_schema(config.key_points_per_chunk),
                                config.seed)
        for key, completion in zip(keys, completions):
            counts["requests"] += 1
            if not completion.ok:
                rejections[_failure_reason("kp", completion)] += 1
                continue
            kept, rejected = verify_key_points(completion.parsed.get("key_points"), todo[key],
                                               config.key_points_per_chunk)
            rejections.update(rejected)
            counts["verified"] += len(kept)
            found[key] = [{**kp, "source": model_tag} for kp in kept]
    for key, text in todo.items():
        if not found.get(key):
            lead = lead_key_point(text)
            found[key] = [{**lead, "source": "extractive"}] if lead else []
            counts["extractive_fallback"] += 1
    for row in rows:
        if row["task_kind"] == "reorder":
            continue
        for c in row["chunks"]:
            if c["is_distractor"]:
                continue
            row["key_points"] += [{"chunk_id": c["chunk_id"], **kp} for kp in found[c["source_chunk_id"]]]
        if row["task_kind"] == "analyse_merge":
            points = defaultdict(list)
            for kp in row["key_points"]:
                points[kp["chunk_id"]].append(kp["point"])
            row["notes"] = [{"chunk_id": c["chunk_id"],
                             "note": OFF_TOPIC_NOTE if c["is_distractor"] else " ".join(points[c["chunk_id"]])}
                            for c in row["chunks"]]


def _add_references(rows: list[dict], llm, config: ReportTaskConfig, rejections: Counter, model_tag: str) -> None:
    """Reference answers: reorder's is its gold; the others are the teacher's, scored by the verifiers."""
    from training.rewards_report import score_completion

    for row in rows:
        row["reference"], row["reference_source"] = None, None
        if row["task_kind"] == "reorder":
            row["reference"], row["reference_source"] = ", ".join(row["gold_order"]), "gold"
    if llm is not None and config.with_references:
        synth = [r for r in rows if r["task_kind"] == "synthesise"]
        merge = [r for r in rows if r["task_kind"] == "analyse_merge"]
        done = _llm_call(llm, [reference_report_chat(r["prompt"]) for r in synth],
                         config.reference_max_tokens, REPORT_SCHEMA, config.seed)
        for row, completion in zip(synth, done):
            if not completion.ok:
                rejections[_failure_reason("ref", completion)] += 1
                continue
            text = render_report(completion.parsed.get("title", ""), completion.parsed.get("sections") or [],
                                 set(row["chunk_ids"]))
            if "## " not in text:
                rejections["ref_empty"] += 1
                continue
            row["reference"], row["reference_source"] = text, model_tag
        chats = [reference_summary_chat(r["source_titles"], r["notes"], r["min_words"], r["max_words"]) for r in merge]
        done = _llm_call(llm, chats, config.reference_max_tokens, SUMMARY_SCHEMA, config.seed)
        for row, completion in zip(merge, done):
            if not completion.ok:
                rejections[_failure_reason("ref", completion)] += 1
                continue
            sentences = completion.parsed.get("sentences") or []
            if not any(_clean_sentence(s.get("text", "")) for s in sentences):
                rejections["ref_empty"] += 1
                continue
            row["reference"] = render_notes_summary(row["notes"], sentences, set(row["chunk_ids"]))
            row["reference_source"] = model_tag
    for row in rows:
        scores = score_completion(row["reference"], row) if row["reference"] is not None else None
        row["reference_scores"] = scores
        if scores is not None and row["reference_source"] != "gold":
            values = [v for v in scores.values() if v is not None]
            if values and sum(values) / len(values) < config.min_reference_score:
                rejections["ref_low_score"] += 1
                row["reference"], row["reference_source"], row["reference_scores"] = None, None, None


def build_report_tasks(pages: Iterable[dict], edges: Iterable[dict] = (), *, count_tokens: CountTokens,
                       config: ReportTaskConfig = ReportTaskConfig(), llm=None, snapshot_id: str = "",
                       tokenizer_name: str = "", log: Callable[[str], None] | None = None) -> BuildResult:
    """Task rows of every kind from page dicts (`page_id`, `url`, `host`, `title`, `text`) and link-graph edges
    (`src_id`, `dst_id`, `n_links`, `clicks`).

    `llm` is a generation backend (`generate(chats, params, schema)` -> completions with `ok`/`parsed`/`error`,
    and a `model_id`); without one, key points are extractive and there are no teacher references.
    """
    log = log or (lambda msg: None)
    started = time.perf_counter()
    builder = _Builder(list(pages), list(edges), count_tokens, config)
    log(f"{len(builder.sources)} source pages qualify")
    rows: list[dict] = []
    anchors = [p["url"] for p in builder.sources]
    cursor = 0
    for kind in TASK_KINDS:
        made = 0
        for attempt in range(len(anchors)):
            if made >= config.count(kind):
                break
            row = builder.task(kind, anchors[(cursor + attempt) % len(anchors)])
            if row is not None:
                rows.append(row)
                made += 1
        cursor += made
        if made < config.count(kind):
            builder.rejections[f"short_of_{kind}"] += config.count(kind) - made
    model_id = getattr(llm, "model_id", None) if llm is not None else None
    model_tag = f"model:{model_id}" if model_id else "extractive"
    usage_before = _usage(llm)
    log(f"{len(rows)} task skeletons {dict(Counter(r['task_kind'] for r in rows))}; asking {model_tag} for key points")
    kp_counts: Counter = Counter()
    _add_key_points(rows, llm, config, builder.rejections, kp_counts, model_tag)
    log(f"key points: {dict(kp_counts)}; asking for references")
    _add_references(rows, llm, config, builder.rejections, model_tag)
    usage_after = _usage(llm)
    for row in rows:
        versions = [PROMPT_VERSIONS[row["task_kind"]]]
        if row["task_kind"] != "reorder":
            versions.append(PROMPT_VERSIONS["key_points"])
            if row["reference_source"] and row["reference_source"].startswith("model:"):
                versions.append(PROMPT_VERSIONS["reference_report" if row["task_kind"] == "synthesise"
                                                else "reference_summary"])
        row.update({
            "gold_answer": gold_answer(row),
            "snapshot_id": snapshot_id,
            "model": model_id or "",
            "prompt_version": "+".join(versions),
            "seed": config.seed,
            "tokenizer": tokenizer_name,
            "chunk_max_tokens": config.chunk_max_tokens,
        })
    chunk_tokens = [c.n_tokens for cs in builder._chunks.values() for c in cs]
    stats = {
        "pages_in": len(builder.sources) + sum(v for k, v in builder.rejections.items() if k.startswith("page_")),
        "sources": len(builder.sources),
        "pages_chunked": len(builder._chunks),
        "chunks": len(chunk_tokens),
        "chunk_tokens": chunk_tokens,
        "tasks_by_kind": dict(Counter(r["task_kind"] for r in rows)),
        "tasks_by_split": dict(Counter(r["split"] for r in rows)),
        "key_points": sum(len(r["key_points"]) for r in rows),
        # per distinct source chunk: teacher requests, verified key points, chunks given the extractive fallback
        "key_point_chunks": {"requests": kp_counts["requests"], "verified_points": kp_counts["verified"],
                             "extractive_fallback": kp_counts["extractive_fallback"]},
        "references": dict(Counter(r["reference_source"] or "none" for r in rows)),
        "llm_usage": {k: usage_after.get(k, 0) - usage_before.get(k, 0)
                      for k in ("requests", "prompt_tokens", "completion_tokens", "seconds", "cache_hits", "retries")}
        if llm is not None else {},
        "seconds": round(time.perf_counter() - started, 2),
    }
    return BuildResult(rows=rows, rejections=builder.rejections, stats=stats)


def _usage(llm) -> dict:
    usage = getattr(llm, "usage", None)
    return usage.as_dict() if usage is not None and hasattr(usage, "as_dict") else {}


def sft_examples(rows: Iterable[dict], min_score: float = 0.5) -> list[dict]:
    """Prompt-completion pairs (TRL conversational format) from the rows whose reference is gold or scored, on
    the mean of its verifier scores, at least `min_score`."""
    out = []
    for row in rows:
        if not row.get("reference"):
            continue
        scores = [v for v in (row.get("reference_scores") or {}).values() if v is not None]
        if row.get("reference_source") != "gold" and (not scores or sum(scores) / len(scores) < min_score):
            continue
        out.append({"task_id": row["task_id"], "task_kind": row["task_kind"], "prompt": row["prompt"],
                    "completion": [{"role": "assistant", "content": row["reference"]}]})
    return out


# ---- contracts --------------------------------------------------------------------------------------------------

CHECKS = {
    "chunks_trace_to_source": "every chunk is its source page's text[char_start:char_end], as the source stores it",
    "gold_consistent": "reorder gold is a permutation of the chunk ids in source order; synthesis gold cites only "
                       "source chunks; every key point's quote occurs in its chunk; distractors come from other pages",
    "split_deterministic": "split == split_of(split_key), and every page of a task (distractors too) is in that split",
}


def check_tasks(rows: Sequence[dict], source_texts: dict[str, str], eval_fraction: float = 0.1
                ) -> dict[str, tuple[int, list[str]]]:
    """For each contract in CHECKS: (rows violating it, a few examples of why)."""
    bad: dict[str, list[str]] = {name: [] for name in CHECKS}
    for row in rows:
        tid = row["task_id"]
        # chunks trace to source
        for c in row["chunks"]:
            text = source_texts.get(c["url"])
            if text is None or text[c["char_start"]:c["char_end"]] != c["text"]:
                bad["chunks_trace_to_source"].append(f"{tid}/{c['chunk_id']}: not at {c['url']}"
                                                     f"[{c['char_start']}:{c['char_end']}]")
                break
        # gold consistency
        ids = row["chunk_ids"]
        by_id = {c["chunk_id"]: c for c in row["chunks"]}
        problems = []
        if len(set(ids)) != len(ids) or set(ids) != set(by_id):
            problems.append("chunk ids not unique / not the chunks'")
        sources = [c for c in row["chunks"] if not c["is_distractor"]]
        if sorted(row["gold_order"]) != sorted(c["chunk_id"] for c in sources) or len(set(row["gold_order"])) != len(row["gold_order"]):
            problems.append("gold_order is not a permutation of the source chunk ids")
        else:
            seq = [(row["source_urls"].index(by_id[i]["url"]), by_id[i]["position"]) for i in row["gold_order"]]
            if seq != sorted(seq):
                problems.append("gold_order is not the source order")
        if row["task_kind"] == "reorder" and (row["distractor_ids"] or row["gold_order"] == ids and len(ids) > 1):
            problems.append("reorder task has distractors or is not shuffled")
        for d in row["distractor_ids"]:
            if d not in by_id or not by_id[d]["is_distractor"] or by_id[d]["url"] in row["source_urls"]:
                problems.append(f"distractor {d} is not from another page")
        for kp in row["key_points"]:
            chunk = by_id.get(kp["chunk_id"])
            if chunk is None or chunk["is_distractor"] or not quote_in(kp["quote"], chunk["text"]):
                problems.append(f"key point quote not in chunk {kp['chunk_id']}")
        if problems:
            bad["gold_consistent"].append(f"{tid}: {'; '.join(sorted(set(problems)))}")
        # split
        urls = set(row["source_urls"]) | {c["url"] for c in row["chunks"]}
        if row["split"] != split_of(row["split_key"], eval_fraction) or any(
                split_of(u, eval_fraction) != row["split"] for u in urls):
            bad["split_deterministic"].append(f"{tid}: split {row['split']} is not that of all its pages")
    return {name: (len(v), v[:5]) for name, v in bad.items()}


# ---- arrow ------------------------------------------------------------------------------------------------------

_S, _I32, _I64, _F64, _B = pa.string(), pa.int32(), pa.int64(), pa.float64(), pa.bool_()
CHUNK_TYPE = pa.struct([("chunk_id", _S), ("source_chunk_id", _S), ("url", _S), ("title", _S), ("position", _I32),
                        ("char_start", _I64), ("char_end", _I64), ("section", _S), ("text", _S),
                        ("n_tokens", _I32), ("is_distractor", _B)])
SCORE_NAMES = ("order", "coverage", "citations", "distractors", "notes", "format")
TASK_SCHEMA = pa.schema([
    ("task_id", _S), ("task_kind", _S), ("split", _S),
    ("prompt", pa.list_(pa.struct([("role", _S), ("content", _S)]))),
    ("chunk_ids", pa.list_(_S)), ("chunks", pa.list_(CHUNK_TYPE)),
    ("gold_order", pa.list_(_S)), ("distractor_ids", pa.list_(_S)),
    ("source_urls", pa.list_(_S)), ("source_titles", pa.list_(_S)),
    ("outline", pa.list_(pa.struct([("url", _S), ("title", _S), ("sections", pa.list_(
        pa.struct([("heading", _S), ("chunk_ids", pa.list_(_S))])))]))),
    ("key_points", pa.list_(pa.struct([("chunk_id", _S), ("point", _S), ("quote", _S), ("source", _S)]))),
    ("notes", pa.list_(pa.struct([("chunk_id", _S), ("note", _S)]))),
    ("min_words", _I32), ("max_words", _I32),
    ("gold_answer", _S), ("reference", _S), ("reference_source", _S),
    ("reference_scores", pa.struct([(n, _F64) for n in SCORE_NAMES])),
    ("split_key", _S), ("snapshot_id", _S), ("model", _S), ("prompt_version", _S), ("seed", _I64),
    ("tokenizer", _S), ("chunk_max_tokens", _I32),
])


def task_table(rows: Sequence[dict]) -> pa.Table:
    """The rows as an Arrow table with `TASK_SCHEMA` (columns in schema order, extra keys ignored)."""
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in TASK_SCHEMA} for r in rows], schema=TASK_SCHEMA)


def describe_config(config: ReportTaskConfig) -> dict:
    return asdict(config)


# ---- dataset card -------------------------------------------------------------------------------------------------

FIELD_DOCS = {
    "task_id": "stable id: hash of kind, seed and the source chunks shown",
    "task_kind": "reorder | synthesise | analyse_merge",
    "split": "train | eval (see split_key)",
    "prompt": "chat messages (system, user) to give the model; TRL conversational format",
    "chunk_ids": "ids of the chunks in the order the prompt shows them (C1..Cn)",
    "chunks": "the chunks shown: id, source chunk id (<page_id>#<position>), url, title, position in the page, "
              "char_start/char_end in the page text, section heading, text, tokens, is_distractor",
    "gold_order": "source chunk ids in source order (reorder: the answer)",
    "distractor_ids": "chunks from unrelated pages (synthesise, analyse_merge)",
    "source_urls": "the pages the task draws from; the first is the anchor",
    "source_titles": "their titles",
    "outline": "per source: title and the sections (heading, chunk ids) the shown chunks cover",
    "key_points": "gold key points per source chunk: point, a quote verified to occur in the chunk, and who wrote "
                  "it (model:<id> or extractive)",
    "notes": "analyse_merge: the intermediate target, one note per chunk ('off-topic' for distractors)",
    "min_words": "length bounds the prompt asks for", "max_words": "length bounds the prompt asks for",
    "gold_answer": "an answer rendered from the gold (order / outline + key points / notes + key points)",
    "reference": "a reference answer for SFT: reorder's gold, or the teacher model's (null if it failed)",
    "reference_source": "gold | model:<model id>",
    "reference_scores": "the verifiers' scores of the reference (training/rewards_report.py)",
    "split_key": "what the split is a hash of: the anchor page URL",
    "snapshot_id": "the snapshot the pages were read from", "model": "the teacher model",
    "prompt_version": "versions of the prompts that made the row", "seed": "the build seed",
    "tokenizer": "the tokenizer that measured chunk budgets", "chunk_max_tokens": "the chunk budget",
}
SOURCE_LICENCES = [  # host suffix -> (hub licence id, what it means)
    ("wikipedia.org", "cc-by-sa-3.0", "Wikipedia article text (the Wikispeedia 2007 selection): CC BY-SA"),
    ("data.gov.uk", "other", "data.gov.uk pages: Open Government Licence, Crown copyright"),
]


def licence_of(url: str) -> tuple[str, str]:
    host = (re.match(r"^https?://([^/:]+)", url or "") or [None, ""])[1]
    for suffix, hub_id, text in SOURCE_LICENCES:
        if host == suffix or host.endswith("." + suffix):
            return hub_id, text
    return "other", f"{host}: licence of the source site unknown; check it before redistributing"


def report_card(rows: Sequence[dict], result: BuildResult, provenance: dict) -> str:
    """The README.md of the dataset: what, how it was made, fields, counts, licences, provenance."""
    from pipeline.datasets.export import yaml_header

    splits = sorted({r["split"] for r in rows}) or ["train"]
    by_kind = Counter((r["task_kind"], r["split"]) for r in rows)
    licences = Counter()
    for r in rows:
        for url in dict.fromkeys(r["source_urls"] + [c["url"] for c in r["chunks"]]):
            licences[licence_of(url)] += 1
    header = yaml_header(licenses=sorted({h for h, _ in licences}), splits=splits, pretty_name="websim report tasks",
                         tags=["synthetic", "websim", "report-writing", "research-agents"],
                         task_categories=["text-generation"], size=len(rows))
    kinds_table = "\n".join(f"| {k} | " + " | ".join(str(by_kind[(k, s)]) for s in splits) + " |" for k in TASK_KINDS)
    esc = lambda v: str(v).replace("|", "\\|")  # noqa: E731 - a cell must not open a new column
    fields = "\n".join(f"| `{f.name}` | {esc(f.type)} | {esc(FIELD_DOCS.get(f.name, ''))} |" for f in TASK_SCHEMA)
    kp = result.stats.get("key_point_chunks", {})
    rejections = "\n".join(f"| {k} | {v} |" for k, v in sorted(result.rejections.items())) or "| (none) | 0 |"
    lic = "\n".join(f"| {text} | `{hub}` | {n} |" for (hub, text), n in sorted(licences.items()))
    cfg = provenance.get("config", {})
    return f"""{header}

# websim report tasks

Training tasks for the last step of a research agent: reading many fragments and reorganising them into a
coherent, cited report. Made by websim (`pipeline/synthesis/report_tasks.py`) from the pages of a simulated-web snapshot.

| kind | {' | '.join(splits)} |
|---|{'---|' * len(splits)}
{kinds_table}

- **reorder**: consecutive chunks of one page, shuffled; answer: their original order (`gold_order`).
- **synthesise**: chunks of a page and of pages it links to, shuffled, plus distractor chunks from unrelated pages;
  answer: a Markdown report with sections whose sentences cite chunk ids (`[C2]`). Gold: the source `outline` and
  verified `key_points`.
- **analyse_merge**: the same material; answer: one note per chunk under `## Notes` (targets in `notes`), then a
  merged `## Summary` citing chunk ids.

Rewards (TRL signature, `training/rewards_report.py`): order (Kendall tau), key-point coverage, citation validity,
distractor use, notes, format. `gold_answer` scores ~1 on every one of them.

## How it was made

1. Sources: pages of snapshot `{provenance.get('snapshot_id', '')}` with at least {cfg.get('criteria', {}).get('min_chars')}
   characters, {cfg.get('criteria', {}).get('min_prose_paragraphs')} prose paragraphs and
   {cfg.get('criteria', {}).get('min_headings')} section heading(s), mostly English prose; a seeded sample per host.
   Companion pages are the anchor page's most-clicked outlinks from its main text (the link graph).
2. Chunks: the page text cut on section, paragraph and (for long paragraphs) sentence boundaries, at most
   {cfg.get('chunk_max_tokens')} tokens of `{provenance.get('tokenizer', '')}` each; every chunk is an exact slice
   `text[char_start:char_end]` of its page.
3. Tasks: {cfg.get('chunks_per_task')} source chunks per task, {cfg.get('distractors')} distractor(s), shuffled with
   an RNG seeded by (seed={cfg.get('seed')}, kind, anchor URL).
4. Gold key points: written by the teacher model `{provenance.get('model') or 'none'}` with a JSON schema; a key
   point is kept only if its quote occurs literally (whitespace/case normalised) in its chunk. Chunks left without
   one get the chunk's lead sentence (`source: extractive`).
5. References: reorder's is its gold; synthesise / analyse_merge references are the teacher's (model-written,
   `reference_source = model:<id>`), scored by the verifiers in `reference_scores`. Filter on those scores before
   SFT: a small teacher writes weak reports.
6. Split: `split_of(anchor URL)` (sha256, {round(cfg.get('eval_fraction', 0.1) * 100)}% eval), and every page of a task
   (companions, distractors) is drawn from its anchor's split: no page's text is in both splits.

Key points: {kp.get('requests', 0)} chunks sent to the teacher, {kp.get('verified_points', 0)} key points verified,
{kp.get('extractive_fallback', 0)} chunks given the extractive fallback. Rejections counted during the build:

| reason | count |
|---|---|
{rejections}

## Fields

| field | type | meaning |
|---|---|---|
{fields}

## Licence of the source text

The tasks quote the source pages verbatim; their licences carry over.

| source | licence id | task rows citing it |
|---|---|---|
{lic}

Wikispeedia (West & Leskovec) re-distributes the 2007 Wikipedia for Schools selection under CC BY-SA; reuse
requires attribution and share-alike. data.gov.uk text is Crown copyright, published under the Open Government
Licence. Model-written fields (key points, references) are derived from that text.

## Provenance

```json
{json.dumps({k: v for k, v in provenance.items() if k != 'config'}, indent=2, default=str)}
```
"""


# ---- one run: snapshot in, dataset folder out ---------------------------------------------------------------------

def chunk_histogram_png(chunk_tokens: Sequence[int], budget: int) -> bytes:
    """A PNG histogram of chunk lengths in tokens, with the budget marked."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3), dpi=100)
    try:
        ax.hist(list(chunk_tokens) or [0], bins=min(40, max(5, budget // 8)), range=(0, budget), color="#4c72b0")
        ax.axvline(budget, color="#c44e52", linestyle="--", label=f"budget {budget}")
        ax.set_xlabel("tokens per chunk")
        ax.set_ylabel("chunks")
        ax.set_title(f"{len(chunk_tokens)} chunks of the pages used")
        ax.legend()
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)


@dataclass
class ReportDatasetRun:
    result: BuildResult
    export: dict[str, Any]
    checks: dict[str, tuple[int, list[str]]]
    provenance: dict[str, Any]
    histogram_png: bytes


def make_report_dataset(db_path: str | Path, out_dir: str | Path, *, snapshot_id: str, config: ReportTaskConfig,
                        count_tokens: CountTokens, tokenizer_name: str, llm=None, per_host: int = 200,
                        log: Callable[[str], None] | None = None) -> ReportDatasetRun:
    """Read sources from `db_path`, build the tasks, check them against the source text as stored, and export the
    dataset (Parquet, HF, JSONL, card, provenance, chunk-length plot) to `out_dir` (replaced whole)."""
    from datetime import datetime, timezone

    from pipeline.datasets.export import export_dataset

    started = time.perf_counter()
    src = read_sources(db_path, seed=config.seed, min_chars=config.criteria.min_chars, per_host=per_host,
                       neighbours_per_page=max(0, config.max_sources_per_task + 1))
    read_s = time.perf_counter() - started
    result = build_report_tasks(src.pages, src.edges, count_tokens=count_tokens, config=config, llm=llm,
                                snapshot_id=snapshot_id, tokenizer_name=tokenizer_name, log=log)
    urls = {c["url"] for r in result.rows for c in r["chunks"]}
    checks = check_tasks(result.rows, read_texts(db_path, urls), config.eval_fraction)
    result.stats["seconds_read"] = round(read_s, 2)
    provenance = {
        "dataset": "websim report tasks",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "snapshot_id": snapshot_id,
        "source_db": str(db_path),
        "model": getattr(llm, "model_id", None),
        "tokenizer": tokenizer_name,
        "prompt_versions": PROMPT_VERSIONS,
        "seed": config.seed,
        "config": describe_config(config),
        "counts": {k: v for k, v in result.stats.items() if k != "chunk_tokens"},
        "rejections": dict(sorted(result.rejections.items())),
        "checks": {name: bad for name, (bad, _) in checks.items()},
        "code": "pipeline/synthesis/report_tasks.py, training/rewards_report.py",
    }
    png = chunk_histogram_png(result.stats["chunk_tokens"], config.chunk_max_tokens)
    export = export_dataset(task_table(result.rows), out_dir, card=report_card(result.rows, result, provenance),
                            provenance=provenance, extra_files={"chunk_tokens.png": png})
    result.stats["seconds_total"] = round(time.perf_counter() - started, 2)
    return ReportDatasetRun(result=result, export=export, checks=checks, provenance=provenance, histogram_png=png)
