"""Report tasks: a page cut into chunks under a token budget, and the tokenizer that measures it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pipeline.synthesis.chunking import CountTokens, chunk_spans

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
