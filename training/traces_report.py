"""Report-writing SFT traces: the second round's SFT data, one chat per (report task, verified answer).

The answers come from two places, both checked by the report verifiers (`pipeline.synthesis.report_tasks.scoring`)
before they are kept:

- `gold`: the deterministic gold each task already has (`gold_answer`: the reorder order; the report or the notes +
  summary written from the extractive key points, each sentence citing its chunk);
- `reference`: the teacher's answer stored with the task (`reference`, `reference_scores`), kept only when the mean
  of its verifier scores is >= `min_score` and it is not the gold itself.

Either is refused when one of its sentences is not one a person would write (`fragmentary_sentences`: a sentence
cut in the middle, an infobox or table dump, a URL): the verifiers score such a gold 1.0 (its words are all in its
chunk), so it is read here. In the previous demo's data 6 of 18 report golds had one.

A trace is the task's prompt (system + user, the chunks inside) and one assistant turn; the loss falls on that turn
only (`training.sft`'s assistant-only loss). Train split only: an eval task here would be a leak, so it is refused.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa

from pipeline.synthesis.report_tasks.answers import gold_answer
from pipeline.synthesis.report_tasks.key_points import fragment_reason
from pipeline.synthesis.report_tasks.scoring import graded_body, report_sentences, score_completion

TRACE_SCHEMA = pa.schema([
    ("id", pa.string()), ("task_id", pa.string()), ("task_kind", pa.string()), ("source", pa.string()),
    ("split", pa.string()), ("score", pa.float64()),
    ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
])
SOURCES = ("gold", "reference")


def fragmentary_sentences(text: str, kind: str) -> list[str]:
    """The sentences of a report or summary that no one would write (see `fragment_reason`). Reorder answers have
    none."""
    if kind == "reorder":
        return []
    return [sentence for sentence, _ in report_sentences(graded_body(text, kind)) if fragment_reason(sentence)]


def mean_score(scores: dict[str, float | None] | None) -> float | None:
    values = [v for v in (scores or {}).values() if v is not None]
    return round(sum(values) / len(values), 4) if values else None


def report_traces(rows: Sequence[dict[str, Any]], *, min_score: float = 0.8, sources: Sequence[str] = SOURCES,
                  max_kind_share: float = 1.0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(traces, counts) from train-split report task rows (see the module docstring); `max_kind_share`: see
    `balance_kinds`."""
    bad = [r["task_id"] for r in rows if r.get("split") != "train"]
    if bad:
        raise ValueError(f"{len(bad)} report task(s) not of the train split would enter SFT: {bad[:5]}")
    traces, rejected = [], {"gold_below_min_score": 0, "gold_fragmentary": 0, "reference_missing": 0,
                            "reference_below_min_score": 0, "reference_fragmentary": 0, "reference_is_gold": 0}
    for row in rows:
        prompt = [{"role": m["role"], "content": m["content"]} for m in row["prompt"]]
        candidates = []
        if "gold" in sources:
            gold = gold_answer(row)
            score = mean_score(score_completion(gold, row))
            if score is None or score < min_score:
                rejected["gold_below_min_score"] += 1
            elif fragmentary_sentences(gold, row["task_kind"]):
                rejected["gold_fragmentary"] += 1
            else:
                candidates.append(("gold", gold, score))
        if "reference" in sources:
            reference = row.get("reference")
            score = mean_score(row.get("reference_scores"))
            if not reference:
                rejected["reference_missing"] += 1
            elif row.get("reference_source") == "gold" or reference.strip() == gold_answer(row).strip():
                rejected["reference_is_gold"] += 1
            elif score is None or score < min_score:
                rejected["reference_below_min_score"] += 1
            elif fragmentary_sentences(reference, row["task_kind"]):
                rejected["reference_fragmentary"] += 1
            else:
                candidates.append(("reference", reference, score))
        for source, text, score in candidates:
            traces.append({"id": f"{row['task_id']}-{source}", "task_id": row["task_id"], "task_kind": row["task_kind"],
                           "source": source, "split": "train", "score": score,
                           "messages": prompt + [{"role": "assistant", "content": text}]})
    traces, rejected["kind_over_share"] = balance_kinds(traces, max_kind_share)
    by_source = {s: sum(t["source"] == s for t in traces) for s in sources}
    by_kind = {k: sum(t["task_kind"] == k for t in traces) for k in sorted({t["task_kind"] for t in traces})}
    return traces, {"tasks": len(rows), "traces": len(traces), "by_source": by_source, "by_kind": by_kind,
                    "rejected": rejected, "min_score": min_score, "max_kind_share": max_kind_share}


def balance_kinds(traces: list[dict[str, Any]], max_share: float) -> tuple[list[dict[str, Any]], int]:
    """(traces, how many were left out) so that no task kind is more than `max_share` of them, where other kinds
    exist: the kind over its share keeps the traces first in a hash order of their ids (stable across runs).
    Reorder golds need no teacher, so they outnumber the others (the demo: 70 of 82), and SFT on them alone taught
    the demo's model to answer every report task with a list of fragment ids."""
    if max_share >= 1 or not traces:
        return traces, 0
    kinds: dict[str, list[dict[str, Any]]] = {}
    for t in traces:
        kinds.setdefault(t["task_kind"], []).append(t)
    keep: set[str] = set()
    for kind, group in kinds.items():
        others = len(traces) - len(group)
        cap = len(group) if not others else max(1, int(max_share / (1 - max_share) * others))
        ranked = sorted(group, key=lambda t: hashlib.sha1(t["id"].encode()).hexdigest())
        keep |= {t["id"] for t in ranked[:cap]}
    kept = [t for t in traces if t["id"] in keep]
    return kept, len(traces) - len(kept)


def write_report_traces(traces: Sequence[dict[str, Any]], out_dir: str | Path, provenance: dict[str, Any]
                        ) -> dict[str, Any]:
    """The traces as a dataset folder (`pipeline.datasets.export` layout: what `training.sft.load_traces` reads)."""
    from pipeline.datasets.export import export_dataset, yaml_header

    table = pa.Table.from_pylist(list(traces), schema=TRACE_SCHEMA)
    card = "\n".join([
        yaml_header(licenses=["cc-by-sa-4.0"], splits=["train"], pretty_name="websim report-writing SFT traces",
                    tags=["websim", "report-writing", "sft"], task_categories=["text-generation"], size=len(traces)),
        "", "# websim report-writing SFT traces", "",
        "One chat per report task and verified answer: the task prompt (its chunks inside) and the answer. "
        f"`source`: `gold` (the task's deterministic gold) or `reference` (the teacher's answer, kept when the mean of "
        f"its verifier scores is >= {provenance.get('min_score', '?')}); `score`: that mean. Train split only.", "",
        f"Rows: {len(traces)}. Made from `{provenance.get('report_tasks', '?')}`.", ""])
    return export_dataset(table, out_dir, card=card, provenance=dict(provenance))


def report_sft_data(report_tasks: str | Path, start_model: str | Path, *, min_score: float = 0.8,
                    sources: Sequence[str] = SOURCES, max_kind_share: float = 1.0
                    ) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """(traces, counts, provenance) of the report SFT round: the train split of a `report_tasks` folder made into
    traces, and where they came from, with the snapshot and env of the run that trained `start_model` (a run
    folder's model, e.g. the search-GRPO run: what the agent was trained in)."""
    from pipeline.datasets.io import read_split
    from training.run import read_run_config

    traces, counts = report_traces(read_split(report_tasks, "train"), min_score=min_score, sources=sources,
                                   max_kind_share=max_kind_share)
    start_run = read_run_config(Path(start_model).parent)
    provenance = {"report_tasks": str(report_tasks), "min_score": min_score, "max_kind_share": max_kind_share,
                  "counts": counts,
                  "start_model": str(start_model), "snapshot_id": Path(start_run.get("snapshot", "")).name,
                  "env": start_run.get("env", {})}
    return traces, counts, provenance
