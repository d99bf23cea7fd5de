"""Report-chunking synthesis tasks: the training data for a research agent's last step, writing the report.

Pages in, task rows out, like every other stage; one module per step:

1. `sources`: `read_sources` reads candidate pages and their link neighbourhood from a snapshot (or the store),
   read-only; `select_sources` keeps long, structured, English prose pages (`SourceCriteria`) and counts why others go.
2. `chunks`: `chunk_page` cuts a page on section/paragraph/sentence boundaries under a token budget
   (`pipeline.synthesis.chunking`).
3. `build`: `build_report_tasks` assembles three task kinds, each a row with its prompt, chunks and gold:
   - `reorder`: the shuffled consecutive chunks of one page; gold: the original order (a permutation of ids);
   - `synthesise`: chunks of a page and the pages it links to, shuffled, with distractor chunks from unrelated
     pages; gold: the source outline and verified key points; the answer is a report citing chunk ids;
   - `analyse_merge`: the same material; first one note per chunk (intermediate targets), then a merged summary.
   Key points and reference answers come from a teacher model through the generation layer (`Backend.generate`
   with a JSON schema). A key point survives only if its quote occurs literally (after whitespace/case
   normalisation) in its chunk and holds half the point's content words; a malformed answer is a counted rejection,
   never an error.
4. `checks`: `check_tasks` states the data contracts (chunks trace to their source text, gold is consistent, the
   split is a function of the sources) and `schema.task_table` gives the rows as Arrow with a fixed schema.

Determinism: every random choice comes from an RNG seeded by (seed, task kind, anchor page URL), so a task does
not change when other pages come and go; teacher calls are greedy and cached by the generation layer.
Split: a page's split is `split_of(page URL)`; a task draws all its pages (companions, distractors) from its
anchor page's split, so no page's text is in both train and eval, and `split_key` (the anchor URL) decides it.

The other modules: `config` (task kinds, `ReportTaskConfig`), `prompts` (task and teacher prompts, JSON schemas),
`answers` (Markdown answers from JSON or gold), `key_points` (verification), `scoring` (the verifiers the rewards
use), `card` (the dataset card) and `run` (`make_report_dataset`: snapshot in, dataset folder out).
"""

from pipeline.datasets.cards import SOURCE_LICENCES, licence_of
from pipeline.synthesis.report_tasks.answers import (
    clean_sentence, gold_answer, gold_notes_summary, gold_report, render_notes_summary, render_report,
)
from pipeline.synthesis.report_tasks.build import BuildResult, build_report_tasks, sft_examples
from pipeline.synthesis.report_tasks.card import FIELD_DOCS, report_card
from pipeline.synthesis.report_tasks.checks import CHECKS, check_tasks
from pipeline.synthesis.report_tasks.chunks import Chunk, chunk_page, load_tokenizer, page_key, tokenizer_counter
from pipeline.synthesis.report_tasks.config import (
    OFF_TOPIC_NOTE, PROMPT_VERSIONS, TASK_KINDS, ReportTaskConfig, SourceCriteria,
)
from pipeline.synthesis.report_tasks.key_points import (
    MAX_QUOTE_WORDS, MIN_QUOTE_WORDS, fragment_reason, lead_key_point, strip_quote_keep_case, verify_key_points,
)
from pipeline.synthesis.report_tasks.prompts import (
    KEY_POINTS_SCHEMA, REPORT_SCHEMA, SUMMARY_SCHEMA, analyse_merge_prompt, key_points_chat, key_points_schema,
    reference_report_chat, reference_summary_chat, reorder_prompt, synthesise_prompt,
)
from pipeline.synthesis.report_tasks.run import ReportDatasetRun, chunk_histogram_png, make_report_dataset
from pipeline.synthesis.report_tasks.schema import CHUNK_TYPE, SCORE_NAMES, TASK_SCHEMA, describe_config, task_table
from pipeline.synthesis.report_tasks.scoring import score_completion
from pipeline.synthesis.report_tasks.sources import (
    SourceRows, display_titles, order_key, read_sources, read_texts, select_sources, source_rejection,
)

__all__ = [
    "analyse_merge_prompt", "build_report_tasks", "BuildResult", "check_tasks", "CHECKS", "Chunk",
    "chunk_histogram_png", "chunk_page", "CHUNK_TYPE", "clean_sentence", "describe_config", "display_titles",
    "FIELD_DOCS", "fragment_reason", "gold_answer", "gold_notes_summary", "gold_report", "key_points_chat",
    "KEY_POINTS_SCHEMA", "key_points_schema", "lead_key_point", "licence_of", "load_tokenizer", "make_report_dataset",
    "MAX_QUOTE_WORDS",
    "MIN_QUOTE_WORDS", "OFF_TOPIC_NOTE", "order_key", "page_key", "PROMPT_VERSIONS", "read_sources", "read_texts",
    "reference_report_chat", "reference_summary_chat", "render_notes_summary", "render_report", "reorder_prompt",
    "report_card", "REPORT_SCHEMA", "ReportDatasetRun", "ReportTaskConfig", "score_completion", "SCORE_NAMES",
    "select_sources", "sft_examples", "SOURCE_LICENCES", "source_rejection", "SourceCriteria", "SourceRows",
    "strip_quote_keep_case", "SUMMARY_SCHEMA", "synthesise_prompt", "TASK_KINDS", "TASK_SCHEMA", "task_table",
    "tokenizer_counter", "verify_key_points",
]
