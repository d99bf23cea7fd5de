"""The multi-turn agent loop through vLLM CPU (what `evaluation` and `sft_model`'s check run): wall time per turn
for each KV-cache size, on the same model, questions and simulated web, the response cache off.

    python benchmarks/bench_agent_loop.py [--model DIR] [--questions DIR] [--limit 100] [--max-turns 4]
                                          [--max-tokens 64] [--kv-gib 2 8]

Each size runs in its own process (vLLM reads `VLLM_CPU_KVCACHE_SPACE` when it starts). Every turn re-sends the
whole conversation; vLLM's prefix cache keeps the earlier turns' blocks only while they fit in the KV cache, so
when 100 conversations of ~1,500 tokens do not fit, later turns are prefilled again from the first token. The
rows say, per size: seconds per turn, the total, the ratio to the first size, and whether every trajectory's
text is identical to the first size's (greedy decoding: it must be).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def latest_model(data_dir: Path) -> Path:
    found = sorted((data_dir / "models" / "sft").glob("*/model"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit(f"no SFT model under {data_dir / 'models' / 'sft'}: run the training job, or pass --model")
    return found[-1]


def child(args: argparse.Namespace) -> None:
    """One size: the agent loop over the questions; prints one JSON line."""
    from pipeline.llm import make_backend
    from pipeline.simulator.snapshot import resolve_snapshot
    from training.agent_loop import AgentConfig, run_agent
    from training.env import SearchEnv
    from training.evaluate import sft_run_of
    from training.traces import read_questions

    questions = read_questions(args.questions, "eval")[: args.limit]
    _, provenance = sft_run_of(args.model)
    snap = resolve_snapshot(provenance.get("snapshot_id") or questions[0].get("snapshot_id") or "latest")
    make_env = SearchEnv.factory(str(snap.path), session="bench", **provenance.get("env", {}))
    llm = make_backend("vllm", str(args.model), cache=False)
    llm.generate(["warm up"], _params(4))  # the engine's start-up is not the loop's time
    turns: list[float] = []
    last = [time.perf_counter()]

    def log(message: str) -> None:
        if message.startswith("turn "):
            now = time.perf_counter()
            turns.append(round(now - last[0], 1))
            last[0] = now

    t0 = last[0] = time.perf_counter()
    trajs = run_agent(llm, questions, make_env, AgentConfig(max_turns=args.max_turns, max_tokens=args.max_tokens),
                      trajectory_prefix="bench-", log=log)
    seconds = time.perf_counter() - t0
    llm.close()
    texts = [json.dumps(t.messages, sort_keys=True, default=str) for t in trajs]
    print("RESULT " + json.dumps({"kv_gib": os.environ.get("VLLM_CPU_KVCACHE_SPACE"), "seconds": round(seconds, 1),
                                  "turns": turns, "questions": len(questions),
                                  "digest": hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16],
                                  "load": round(os.getloadavg()[0], 1)}), flush=True)


def _params(max_tokens: int):
    from pipeline.llm import SamplingParams

    return SamplingParams(max_tokens=max_tokens, temperature=0.0, seed=0)


def main(argv: list[str] | None = None) -> int:
    from pipeline.llm.model_setup import default_data_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model folder (default: the latest SFT run's model)")
    parser.add_argument("--questions", default=None, help="hard_queries folder (default: <data dir>/datasets/...)")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--max-turns", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--kv-gib", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    data_dir = Path(default_data_dir())
    args.model = Path(args.model) if args.model else latest_model(data_dir)
    args.questions = args.questions or str(data_dir / "datasets" / "hard_queries")
    if args.child:
        child(args)
        return 0
    rows = []
    for kv in args.kv_gib:
        cmd = [sys.executable, __file__, "--child", "--model", str(args.model), "--questions", args.questions,
               "--limit", str(args.limit), "--max-turns", str(args.max_turns), "--max-tokens", str(args.max_tokens)]
        out = subprocess.run(cmd, env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": str(kv)}, capture_output=True,
                             text=True)
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
        if out.returncode or not lines:
            print(out.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"the {kv} GiB run failed (exit {out.returncode})")
        rows.append(json.loads(lines[-1][len("RESULT "):]))
        r = rows[-1]
        print(f"KV cache {kv:>3} GiB: {r['seconds']:>7.1f} s for {r['questions']} questions x {args.max_turns} turns "
              f"(turns {r['turns']}); x{r['seconds'] / rows[0]['seconds']:.2f} of {args.kv_gib[0]} GiB; "
              f"trajectories {'identical' if r['digest'] == rows[0]['digest'] else 'DIFFERENT'}; load {r['load']}",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
