"""Report tasks: the dataset card (README.md): what, how it was made, fields, counts, licences, provenance."""

from __future__ import annotations

import json
from collections import Counter
from typing import Sequence

from pipeline.datasets.cards import field_rows, licence_counts, licence_rows
from pipeline.datasets.export import yaml_header
from pipeline.synthesis.report_tasks.build import BuildResult
from pipeline.synthesis.report_tasks.config import TASK_KINDS
from pipeline.synthesis.report_tasks.schema import TASK_SCHEMA

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
    "reference_scores": "the verifiers' scores of the reference (pipeline/synthesis/report_tasks/scoring.py)",
    "split_key": "what the split is a hash of: the anchor page URL",
    "snapshot_id": "the snapshot the pages were read from", "model": "the teacher model",
    "prompt_version": "versions of the prompts that made the row", "seed": "the build seed",
    "tokenizer": "the tokenizer that measured chunk budgets", "chunk_max_tokens": "the chunk budget",
}


def report_card(rows: Sequence[dict], result: BuildResult, provenance: dict) -> str:
    """The README.md of the dataset: what, how it was made, fields, counts, licences, provenance."""
    splits = sorted({r["split"] for r in rows}) or ["train"]
    by_kind = Counter((r["task_kind"], r["split"]) for r in rows)
    licences = licence_counts(url for r in rows
                              for url in dict.fromkeys(r["source_urls"] + [c["url"] for c in r["chunks"]]))
    header = yaml_header(licenses=sorted({h for h, _ in licences}), splits=splits, pretty_name="websim report tasks",
                         tags=["synthetic", "websim", "report-writing", "research-agents"],
                         task_categories=["text-generation"], size=len(rows))
    kinds_table = "\n".join(f"| {k} | " + " | ".join(str(by_kind[(k, s)]) for s in splits) + " |" for k in TASK_KINDS)
    fields = field_rows(TASK_SCHEMA, FIELD_DOCS)
    kp = result.stats.get("key_point_chunks", {})
    rejections = "\n".join(f"| {k} | {v} |" for k, v in sorted(result.rejections.items())) or "| (none) | 0 |"
    lic = licence_rows(licences)
    cfg = provenance.get("config", {})
    return f"""{header}

# websim report tasks

Training tasks for the last step of a research agent: reading many fragments and reorganising them into a
coherent, cited report. Made by websim (`pipeline/synthesis/report_tasks/`) from the pages of a simulated-web snapshot.

| kind | {' | '.join(splits)} |
|---|{'---|' * len(splits)}
{kinds_table}

- **reorder**: consecutive chunks of one page, shuffled; answer: their original order (`gold_order`).
- **synthesise**: chunks of a page and of pages it links to, shuffled, plus distractor chunks from unrelated pages;
  answer: a Markdown report with sections whose sentences cite chunk ids (`[C2]`). Gold: the source `outline` and
  verified `key_points`.
- **analyse_merge**: the same material; answer: one note per chunk under `## Notes` (targets in `notes`), then a
  merged `## Summary` citing chunk ids.

Rewards (`pipeline/synthesis/report_tasks/scoring.py`; TRL signature in `training/rewards_report.py`): order
(Kendall tau), key-point coverage, citation validity, distractor use, notes, format. `gold_answer` scores ~1 on every one of them.

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
   point is kept only if its quote occurs literally (whitespace/case normalised) in its chunk and holds at least half
   of the point's content words. Chunks left without one get the chunk's lead sentence (`source: extractive`).
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
