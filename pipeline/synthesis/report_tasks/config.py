"""Report tasks: the task kinds, prompt versions and the build's settings (`ReportTaskConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field

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
    """Pages one synthesise / analyse_merge task draws from: the anchor page and related pages (`min_relation`)."""
    min_relation: int = 2
    """How related a companion page must be to the anchor: a link from the anchor's text (1), plus a link back
    (+2), the same subject category (+2), readers clicking it (+1). 2 or more: never two pages a link alone joins
    ("Nicaragua" and "Japan")."""
    seed: int = 0
    eval_fraction: float = 0.1
    key_points_per_chunk: int = 3
    key_points_max_tokens: int = 192
    reference_max_tokens: int = 384
    with_references: bool = True
    """Ask the teacher for reference answers (synthesise, analyse_merge); reorder's reference is its gold."""
    min_reference_score: float = 0.5
    """Drop teacher references whose mean verifier score is below this (counted as ref_low_score): a reference
    that fails its own task's verifiers teaches the failure."""
    criteria: SourceCriteria = field(default_factory=SourceCriteria)

    def count(self, kind: str) -> int:
        return {"reorder": self.n_reorder, "synthesise": self.n_synthesise, "analyse_merge": self.n_analyse_merge}[kind]
