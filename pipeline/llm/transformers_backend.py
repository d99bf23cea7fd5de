"""The transformers backend: `model.generate` on batches, the fallback where vLLM is not installed.

Decoder-only batching needs LEFT padding (every prompt must end where generation starts); requests are grouped
by sampling params (one `generate` call per group) and sorted by length within a group so that padding is
small. Stop strings are honoured (`stop_strings=` stops the row, the text is cut before the stop string, as
vLLM does). Structured output is NOT grammar-constrained here: the output is parsed and validated, and bad
items are re-asked (see `structured.py`). Prompts longer than the model's context come back as
`error="prompt_too_long"` without being sent.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

from .base import Backend, Completion, LLMUnavailableError, Request, SamplingParams
from .cpu import resolve_dtype

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run with `n` intra-op threads, then restore the process's setting (None: leave it alone)."""
    if not n:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class TransformersBackend(Backend):
    """`model` is a local folder, a hub name, or None for the embedded model; it is loaded on first use.

    `num_threads` sets torch's intra-op threads while generating (None: torch's default, one per core). On a
    machine whose cores are busy with other work, fewer threads than cores is much faster: OpenMP threads
    spin-wait for each other (measured on 2 shared cores: 1 thread 200 tokens/s, 2 threads 5 tokens/s).
    """

    name = "transformers"

    def __init__(
        self,
        model: str | None = None,
        *,
        data_dir: str | Path | None = None,
        dtype: str = "auto",
        device: str = "cpu",
        batch_size: int = 32,
        max_model_len: int | None = None,
        num_threads: int | None = None,
        model_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        from .model_setup import model_fingerprint, resolve_model

        self.model_path = resolve_model(model, data_dir)
        super().__init__(model_id=model_id or model_fingerprint(self.model_path), batch_size=batch_size, **kwargs)
        self.dtype = resolve_dtype(dtype, device)  # "auto": float32 on CPUs without native bf16
        self.device = device
        self.max_model_len = max_model_len
        self.num_threads = num_threads
        self._model = None
        self._tokenizer = None

    def start(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(self.model_path)
            model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=getattr(torch, self.dtype))
        except OSError as exc:
            raise LLMUnavailableError(f"cannot load model {self.model_path!r}: {exc}") from exc
        tokenizer.padding_side = "left"  # decoder-only: every row must end where generation starts
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.to(self.device).eval()
        self._tokenizer, self._model = tokenizer, model
        if self.max_model_len is None:
            self.max_model_len = int(getattr(model.config, "max_position_embeddings", 0) or 1 << 30)

    def close(self) -> None:
        self._model = self._tokenizer = None

    @property
    def tokenizer(self):
        self.start()
        return self._tokenizer

    @property
    def model(self):
        self.start()
        return self._model

    def render(self, request: Request) -> str:
        """The exact text the model sees: the chat template applied, or the raw prompt."""
        if not request.is_chat:
            return request.prompt
        return self.tokenizer.apply_chat_template(
            request.prompt,
            tools=list(request.tools) if request.tools else None,
            add_generation_prompt=True,
            tokenize=False,
        )

    def _run(self, requests: list[Request]) -> list[list[Completion]]:
        self.start()
        with _torch_threads(self.num_threads):
            return self._run_groups(requests)

    def _run_groups(self, requests: list[Request]) -> list[list[Completion]]:
        results: list[list[Completion] | None] = [None] * len(requests)
        groups: dict[tuple[SamplingParams, bool], list[int]] = defaultdict(list)
        for i, request in enumerate(requests):
            groups[(request.params, request.is_chat)].append(i)
        for (params, is_chat), indices in groups.items():
            texts = [self.render(requests[i]) for i in indices]
            # The chat template writes its special tokens itself; a raw prompt is tokenized as vLLM does.
            ids = self.tokenizer(texts, add_special_tokens=not is_chat)["input_ids"]
            fits = []
            for i, row in zip(indices, ids):
                if len(row) + 1 > self.max_model_len:
                    self.usage.rejections["prompt_too_long"] += 1
                    results[i] = [
                        Completion(text="", prompt_tokens=len(row), finish_reason="error", error="prompt_too_long")
                    ] * params.n
                else:
                    fits.append((i, row))
            fits.sort(key=lambda item: len(item[1]), reverse=True)  # similar lengths together: less padding
            if fits:
                for i, completions in zip((i for i, _ in fits), self._generate_group([r for _, r in fits], params)):
                    results[i] = completions
        return results  # type: ignore[return-value]

    def _generate_group(self, rows: list[list[int]], params: SamplingParams) -> list[list[Completion]]:
        import torch

        tokenizer, model = self.tokenizer, self.model
        batch = tokenizer.pad({"input_ids": rows}, padding=True, return_tensors="pt").to(self.device)
        eos_ids = model.generation_config.eos_token_id
        eos_ids = set(eos_ids if isinstance(eos_ids, list) else [eos_ids if eos_ids is not None else tokenizer.eos_token_id])
        max_new = min(params.max_tokens, self.max_model_len - batch["input_ids"].shape[1])
        kwargs: dict[str, Any] = dict(
            max_new_tokens=max(1, max_new),
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=sorted(eos_ids),
        )
        samples = params.n
        if params.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0)
            kwargs["num_return_sequences"] = samples
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=tokenizer)
        if params.seed is not None:
            torch.manual_seed(params.seed)
        with torch.inference_mode():
            out = model.generate(**batch, **kwargs)
        width = batch["input_ids"].shape[1]
        prompt_lens = batch["attention_mask"].sum(dim=1).tolist()
        per_row = samples if not params.greedy else 1
        results = []
        for r, prompt_len in enumerate(prompt_lens):
            completions = []
            for s in range(per_row):
                generated = out[r * per_row + s, width:].tolist()
                completions.append(self._finish(generated, prompt_len, eos_ids, params))
            if params.greedy and samples > 1:  # greedy samples are all the same answer
                completions = [completions[0]] + [Completion(**completions[0].to_dict()) for _ in range(samples - 1)]
            results.append(completions)
        return results

    def _finish(self, generated: list[int], prompt_len: int, eos_ids: set[int], params: SamplingParams) -> Completion:
        """Cut at the end-of-turn token or the first stop string; count what the model actually produced."""
        end = next((k for k, token in enumerate(generated) if token in eos_ids), None)
        tokens = generated[: end + 1] if end is not None else generated
        finish = "stop" if end is not None else "length"
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        if params.stop:
            hits = [text.find(s) for s in params.stop if s in text]
            if hits:
                text, finish = text[: min(hits)], "stop"
                tokens = tokens[: self._stop_length(tokens, params.stop)]
        return Completion(text=text, prompt_tokens=prompt_len, completion_tokens=len(tokens), finish_reason=finish)

    def _stop_length(self, tokens: list[int], stops: tuple[str, ...]) -> int:
        """Fewest leading tokens whose text contains a stop string (what the model generated before stopping;
        the rest of the row is padding, which shares the end-of-turn id here)."""
        lo, hi = 1, len(tokens)
        while lo < hi:
            mid = (lo + hi) // 2
            text = self.tokenizer.decode(tokens[:mid], skip_special_tokens=True)
            if any(s in text for s in stops):
                hi = mid
            else:
                lo = mid + 1
        return hi
