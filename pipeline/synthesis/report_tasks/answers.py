"""Report tasks: answers rendered as Markdown, from the teacher's JSON or from a row's gold."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Iterable, Sequence

_BRACKETS = re.compile(r"\s*\[[^\[\]]{0,40}\]")


def clean_sentence(text: str) -> str:
    """A model sentence without its bracketed citations."""
    return _BRACKETS.sub("", text or "").strip()


def _cited(text: str, cites: Iterable[str], valid: set[str] | None = None) -> str:
    ids = []
    for c in cites:
        c = str(c).strip().strip("[]").upper()
        if c and c not in ids and (valid is None or c in valid):
            ids.append(c)
    text = clean_sentence(text).rstrip()
    end = ""
    if text and text[-1] in ".!?":
        text, end = text[:-1], text[-1]
    return f"{text} {''.join(f'[{i}]' for i in ids)}{end or '.'}" if ids else f"{text}{end or '.'}"


def render_report(title: str, sections: Sequence[dict], valid_ids: set[str] | None = None) -> str:
    """Markdown report from {"heading", "sentences": [{"text", "cites"}]} sections (citations before the stop)."""
    lines = [f"# {clean_sentence(title) or 'Report'}"]
    for sec in sections:
        sentences = [_cited(s["text"], s.get("cites") or [], valid_ids) for s in sec.get("sentences") or []
                     if clean_sentence(s.get("text", ""))]
        if not sentences:
            continue
        lines += ["", f"## {clean_sentence(sec.get('heading', '')) or 'Section'}", " ".join(sentences)]
    return "\n".join(lines)


def render_notes_summary(notes: Sequence[dict], summary_sentences: Sequence[dict],
                         valid_ids: set[str] | None = None) -> str:
    lines = ["## Notes"] + [f"[{n['chunk_id']}] {n['note']}" for n in notes]
    lines += ["", "## Summary", " ".join(_cited(s["text"], s.get("cites") or [], valid_ids)
                                         for s in summary_sentences if clean_sentence(s.get("text", "")))]
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
