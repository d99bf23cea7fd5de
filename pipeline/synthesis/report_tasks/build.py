"""Report tasks: assembling the rows of every kind (prompt, chunks, gold), then the teacher's key points and
references, scored by the verifiers (`scoring`)."""

from __future__ import annotations

import hashlib
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from pipeline.datasets.splits import split_of
from pipeline.synthesis.chunking import CountTokens
from pipeline.synthesis.report_tasks.answers import clean_sentence, gold_answer, render_notes_summary, render_report
from pipeline.synthesis.report_tasks.chunks import Chunk, chunk_page
from pipeline.synthesis.report_tasks.config import OFF_TOPIC_NOTE, PROMPT_VERSIONS, TASK_KINDS, ReportTaskConfig
from pipeline.synthesis.report_tasks.key_points import lead_key_point, verify_key_points
from pipeline.synthesis.report_tasks.prompts import (
    REPORT_SCHEMA, SUMMARY_SCHEMA, analyse_merge_prompt, key_points_chat, key_points_schema, reference_report_chat,
    reference_summary_chat, reorder_prompt, synthesise_prompt)
from pipeline.synthesis.report_tasks.scoring import score_completion
from pipeline.synthesis.report_tasks.sources import display_titles, order_key, page_category, select_sources
from pipeline.text.lexical import normalize

KEY_POINT_ROUNDS = 3
"""Rounds of replacement tasks for those refused for a source chunk without a key point."""


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
                                               order_key(config.seed, dst["url"]), dst["url"]))
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

    def relation(self, anchor: str, url: str, clicks: int) -> int:
        """How related `url` (linked from the anchor's text) is to the anchor; see `ReportTaskConfig.min_relation`."""
        score = 1
        if anchor in self.related.get(url, ()) and any(u == anchor for *_, u in self.out_links.get(url, [])):
            score += 2
        cat = page_category(self.by_url[anchor].get("text") or "")
        if cat and cat == page_category(self.by_url[url].get("text") or ""):
            score += 2
        return score + (clicks > 0)

    def companions(self, anchor: str) -> list[str]:
        out = []
        for neg_clicks, *_, url in sorted(self.out_links.get(anchor, [])):
            if len(out) >= self.config.max_sources_per_task - 1:
                break
            if self.split[url] != self.split[anchor] or len(self.chunks(url)) < 2:
                continue
            if self.relation(anchor, url, -neg_clicks) < self.config.min_relation:
                self.rejections["companion_unrelated"] += 1
                continue
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
            if not any(clean_sentence(s.get("text", "")) for s in sentences):
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
    anchors = [p["url"] for p in builder.sources]
    model_id = getattr(llm, "model_id", None) if llm is not None else None
    model_tag = f"model:{model_id}" if model_id else "extractive"
    usage_before = _usage(llm)
    kp_counts: Counter = Counter()
    # Each kind walks the anchors from its own start (after the previous kinds' first tasks). A task whose source
    # chunk gets no key point (no sentence a person would write) is refused, since its note would be empty and its
    # part of the gold unsaid; the kind then takes the next anchors, for up to KEY_POINT_ROUNDS rounds.
    rows: list[dict] = []
    tried = {kind: 0 for kind in TASK_KINDS}
    starts, cursor = {}, 0
    for kind in TASK_KINDS:
        starts[kind] = cursor
        cursor += config.count(kind)
    for round_ in range(KEY_POINT_ROUNDS):
        fresh = []
        for kind in TASK_KINDS:
            need = config.count(kind) - sum(r["task_kind"] == kind for r in rows)
            while need > 0 and tried[kind] < len(anchors):
                row = builder.task(kind, anchors[(starts[kind] + tried[kind]) % len(anchors)])
                tried[kind] += 1
                if row is not None:
                    fresh.append(row)
                    need -= 1
        if not fresh:
            break
        log(f"round {round_ + 1}: {len(fresh)} task skeletons {dict(Counter(r['task_kind'] for r in fresh))}; "
            f"asking {model_tag} for key points")
        _add_key_points(fresh, llm, config, builder.rejections, kp_counts, model_tag)
        keep = [r for r in fresh if r["task_kind"] == "reorder" or {
            c["chunk_id"] for c in r["chunks"] if not c["is_distractor"]} <= {kp["chunk_id"] for kp in r["key_points"]}]
        builder.rejections["source_chunk_without_key_point"] += len(fresh) - len(keep)
        rows += keep
    rows.sort(key=lambda r: TASK_KINDS.index(r["task_kind"]))
    for kind in TASK_KINDS:
        made = sum(r["task_kind"] == kind for r in rows)
        if made < config.count(kind):
            builder.rejections[f"short_of_{kind}"] += config.count(kind) - made
    log(f"key points: {dict(kp_counts)}; {len(rows)} tasks with a key point for every source chunk; asking for "
        "references")
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
