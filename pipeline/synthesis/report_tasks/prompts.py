"""Report tasks: the task prompts, the teacher prompts (key points, references) and their JSON schemas."""

from __future__ import annotations

from typing import Sequence

from pipeline.synthesis.report_tasks.config import OFF_TOPIC_NOTE

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


# The strings are unbounded on purpose. With `maxLength` (420 characters, what the verifiers accept) vLLM's xgrammar
# had to close every string, and on the demo's 222 key-point requests re-asks fell from 100 to 21 and completion
# tokens from 49.7k to 34.7k, but the length-counting grammar made each token dearer: 286 s of generation against
# 207 s (llguidance instead: 284 s, 123 re-asks). Measured 2026-12-07, 2 cores, bf16.
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
