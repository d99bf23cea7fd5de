"""Report tasks: the data contracts (chunks trace to their source text, gold is consistent, the split is a
function of the sources), checked row by row."""

from __future__ import annotations

from typing import Sequence

from pipeline.datasets.splits import split_of
from pipeline.text.lexical import quote_in

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
