"""Hard questions with unique, verified answers: structure first, the model as polish.

Stages (each a module; the assets call them in this order):

1. `graph.load_clue_graph`: the snapshot as clue sets (what each page is, what it mentions, its words), with
   definitions read by a dependency parse (`parse`).
2. `families.build_seeds`: structured questions per family (`shared_link`, `linked_fact`) whose answer the graph
   computes, kept only when the clues admit exactly one answer; each clue's candidate count stored.
3. `polish.polish_questions`: best-of-n rewrites by the configured model, kept only when every rule still passes.
4. `verify.verify_candidates`: the form gate and every rule in `REJECTION_REASONS`, difficulty on independent BM25 and the
   clickstream, the judge's measured authority.
5. `dataset`: tables, contracts, card, files.
"""

from pipeline.synthesis.questions.dataset import (
    CHECKS,
    FIELD_DOCS,
    HARD_QUERY_SCHEMA,
    REJECTED_SCHEMA,
    check_hard_queries,
    datasets_dir,
    export_hard_queries,
    hard_queries_card,
    hard_query_table,
    plot_summary,
    read_dataset_rows,
    read_jsonl,
    rejected_table,
    work_dir,
    write_jsonl,
)
from pipeline.synthesis.questions.families import FAMILIES, SEED_REJECTIONS, FamilyConfig, build_seeds, config_dict
from pipeline.synthesis.questions.form import FORM_REASONS, check_form, form_problems
from pipeline.synthesis.questions.graph import ClueGraph, hand_made_graph, load_clue_graph
from pipeline.synthesis.questions.polish import POLISH_HASH, POLISH_SYSTEM, POLISH_VERSION, PolishConfig, polish_questions
from pipeline.synthesis.questions.verify import (
    CLOSED_BOOK_SYSTEM,
    JUDGE_SYSTEM,
    PROMPT_HASH,
    PROMPT_VERSION,
    REJECTION_REASONS,
    VerifyConfig,
    describe_config,
    golds_of,
    near_duplicates,
    question_id,
    verify_candidates,
)

__all__ = [
    "CHECKS", "CLOSED_BOOK_SYSTEM", "FAMILIES", "FIELD_DOCS", "FORM_REASONS", "HARD_QUERY_SCHEMA", "JUDGE_SYSTEM",
    "POLISH_HASH", "POLISH_SYSTEM", "POLISH_VERSION", "PROMPT_HASH", "PROMPT_VERSION", "REJECTED_SCHEMA",
    "REJECTION_REASONS", "SEED_REJECTIONS", "ClueGraph", "FamilyConfig", "PolishConfig", "VerifyConfig",
    "build_seeds", "check_form", "check_hard_queries", "config_dict", "datasets_dir", "describe_config",
    "export_hard_queries", "form_problems", "golds_of", "hand_made_graph", "hard_queries_card", "hard_query_table",
    "load_clue_graph", "near_duplicates", "plot_summary", "polish_questions", "question_id", "read_dataset_rows", "read_jsonl",
    "rejected_table", "verify_candidates", "work_dir", "write_jsonl",
]
