"""The navigation dataset: task rows as Arrow, the card (provenance, difficulty histograms, the human baseline
table), the checks, and `make_navigation_dataset`, the whole stage from a snapshot and game files to an export."""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pyarrow as pa

from pipeline.synthesis.navigation.graph import LinkGraph
from pipeline.synthesis.navigation.human import pair_stats, read_games
from pipeline.synthesis.navigation.tasks import (LEVELS, PROMPT_VERSION, NavigationConfig, gold_path_problems,
                                                 make_tasks, split_problems)

_S, _I, _F = pa.string(), pa.int64(), pa.float64()
SCHEMA = pa.schema([
    ("id", _S), ("task_kind", _S), ("source", _S), ("variant", _S), ("question", _S), ("answer", _S),
    ("aliases", pa.list_(_S)), ("start_url", _S), ("start_title", _S), ("target_url", _S), ("target_title", _S),
    ("target_description", _S), ("shortest_path_length", _I), ("gold_path", pa.list_(_S)),
    ("gold_path_titles", pa.list_(_S)), ("closer_pages", pa.list_(_S)), ("hop_click_probabilities", pa.list_(_F)),
    ("gold_path_surprisal_bits", _F), ("hops", _I), ("human_attempts", _I), ("human_successes", _I),
    ("human_give_up_rate", _F), ("human_median_length", _F), ("human_median_clicks", _F), ("human_back_clicks", _I),
    ("human_paths", pa.list_(pa.list_(_S))), ("difficulty_score", _F), ("difficulty", _S), ("split", _S),
    ("snapshot_id", _S), ("seed", _I), ("prompt_version", _S),
])
FIELD_DOCS = {
    "question": "the prompt the agent gets (start page named with its URL; target named or described)",
    "answer": "the target page's title (the agent calls `answer` with it on arrival; success is judged by the "
              "page it stands on, not the text)",
    "source": "`game`: the pair a Wikispeedia player was set; `walk`: the first and last page of a player's "
              "resolved path (a pair people did navigate)",
    "variant": "`named` (target by title) or `described` (target by its defining sentence, title masked)",
    "shortest_path_length": "links to follow on the shortest path (BFS over the snapshot's link_graph)",
    "gold_path": "the shortest path people click most (least clickstream surprisal), start to target URLs",
    "closer_pages": "the start page's outlinks one step closer to the target",
    "hop_click_probabilities": "per gold hop: clicks(u->v) / clicks out of u in the clickstream (null: no clicks "
                               "out of u)",
    "gold_path_surprisal_bits": "sum over gold hops of -log2 of the add-one-smoothed click probability",
    "human_attempts": "games set on this pair (`game`) or resolved paths that walked it (`walk`)",
    "human_give_up_rate": "share of games on this pair that the player abandoned (null for walks)",
    "human_median_length": "median links followed by people who reached the target (back-clicks resolved)",
    "human_median_clicks": "median links followed over all attempts, given up or not",
    "human_paths": "up to 5 resolved human paths that reached the target (URLs), the human demonstrations",
    "difficulty_score": "shortest length + surprisal/10 + give-up rate + 0.5 x (human median - shortest)",
    "difficulty": "easy (< 3), medium (< 4.5), hard",
    "split": "by the target page's URL hash: a target page is in one split only",
}
CHECKS = {
    "gold_paths_exist": "every gold path is a path of links of the snapshot, from start to target, as long as the "
                        "shortest path",
    "targets_in_one_split": "no target page is in both the train and the eval split",
    "spans_difficulty": "every difficulty level has tasks",
}


def table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in SCHEMA} for r in rows], schema=SCHEMA)


def histogram(values: Sequence[Any]) -> dict[str, int]:
    return {str(k): v for k, v in sorted(Counter(values).items())}


def human_baseline(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per source and difficulty: tasks, games, human success rate, median human length vs shortest."""
    out = []
    for source in sorted({r["source"] for r in rows}):
        for level in LEVELS:
            part = [r for r in rows if r["source"] == source and r["difficulty"] == level]
            if not part:
                continue
            attempts = sum(r["human_attempts"] for r in part)
            lengths = [r["human_median_length"] for r in part if r["human_median_length"] is not None]
            out.append({"source": source, "difficulty": level, "tasks": len(part), "human_attempts": attempts,
                        "human_success_rate": round(sum(r["human_successes"] for r in part) / attempts, 4)
                        if attempts else None,
                        "human_median_length": statistics.median(lengths) if lengths else None,
                        "shortest_median": statistics.median(r["shortest_path_length"] for r in part)})
    return out


def card(rows: Sequence[Mapping[str, Any]], stats: Mapping[str, Any], provenance: Mapping[str, Any]) -> str:
    from pipeline.datasets.cards import field_rows, licence_counts, licence_rows
    from pipeline.datasets.export import yaml_header

    splits = sorted({r["split"] for r in rows}) or ["train"]
    lines = [yaml_header(licenses=["cc-by-sa-3.0"], splits=splits, pretty_name="websim navigation tasks",
                         tags=["navigation", "web-agent", "wikispeedia", "clickstream", "synthetic"],
                         task_categories=["text-generation"], size=len(rows)), "",
             "# websim navigation tasks", "",
             "Start on one article of the simulated web and reach another by following links, for search agents "
             "(`open_url`, then `follow_link` only). Pairs come from real human navigation (the Wikispeedia game, "
             "West & Leskovec); gold is computed on the snapshot's link graph; difficulty combines the shortest "
             "path, what people did, and the clickstream surprisal of the best path.", "",
             "## Provenance", "",
             f"- snapshot: `{provenance.get('snapshot_id')}`; game files: "
             f"{', '.join(f'`{Path(p).name}`' for p in provenance.get('game_files', []))}; seed "
             f"{provenance.get('seed')}; prompt version `{PROMPT_VERSION}`",
             f"- human pairs: {stats['pairs_game']} set by the game, {stats['pairs_walk']} walked; "
             f"{stats['candidates']} candidates given gold; rejections `{json.dumps(stats['rejections'])}`",
             f"- tasks: {len(rows)}; by split `{json.dumps(histogram([r['split'] for r in rows]))}`; by source "
             f"`{json.dumps(histogram([r['source'] for r in rows]))}`; by variant "
             f"`{json.dumps(histogram([r['variant'] for r in rows]))}`",
             "- the sample's game file holds only unfinished games: every `game` pair was given up on (give-up "
             "rate 1.0); human successes come from `walk` pairs (where players actually went).", "",
             "## Difficulty", "",
             f"- level: `{json.dumps(histogram([r['difficulty'] for r in rows]))}`",
             f"- shortest path length: `{json.dumps(histogram([r['shortest_path_length'] for r in rows]))}`",
             f"- gold path surprisal (bits, rounded down to 5): "
             f"`{json.dumps(histogram([int(r['gold_path_surprisal_bits'] // 5 * 5) for r in rows]))}`", "",
             "## Human baseline", "",
             "| source | difficulty | tasks | human attempts | human success rate | human median length | "
             "shortest (median) |", "|---|---|---|---|---|---|---|"]
    for b in human_baseline(rows):
        lines.append(f"| {b['source']} | {b['difficulty']} | {b['tasks']} | {b['human_attempts']} | "
                     f"{b['human_success_rate']} | {b['human_median_length']} | {b['shortest_median']} |")
    lines += ["", "## Licences", "", "| source | licence | tasks |", "|---|---|---|",
              licence_rows(licence_counts(r["target_url"] for r in rows)), "", "## Fields", "",
              "| field | type | meaning |", "|---|---|---|", field_rows(SCHEMA, FIELD_DOCS)]
    return "\n".join(lines) + "\n"


def check_tasks(graph: LinkGraph, rows: Sequence[Mapping[str, Any]]) -> dict[str, tuple[int, list]]:
    gold = gold_path_problems(graph, rows)
    shared = split_problems(rows)
    empty = [lv for lv in LEVELS if not any(r["difficulty"] == lv for r in rows)]
    return {"gold_paths_exist": (len(gold), gold[:5]), "targets_in_one_split": (len(shared), shared[:5]),
            "spans_difficulty": (len(empty), empty)}


@dataclass
class NavigationRun:
    rows: list[dict]
    stats: dict[str, Any]
    provenance: dict[str, Any]
    export: dict[str, Any]
    checks: dict[str, tuple[int, list]]


def make_navigation_dataset(db_path: str | Path, game_files: Sequence[str | Path], out_dir: str | Path, *,
                            snapshot_id: str = "", config: NavigationConfig = NavigationConfig(),
                            log: Callable[[str], None] | None = None) -> NavigationRun:
    """Navigation tasks from the human games in `game_files` on the snapshot at `db_path`, exported to `out_dir`."""
    from pipeline.datasets.export import export_dataset

    log = log or (lambda msg: None)
    started = time.perf_counter()
    graph = LinkGraph.from_snapshot(db_path)
    records = [rec for path in game_files for rec in read_games(path)]
    games, walks = pair_stats(records, config.max_human_paths)
    log(f"{len(graph.url)} pages, {sum(map(len, graph.out.values()))} links; {len(records)} games: "
        f"{len(games)} game pairs, {len(walks)} walked pairs")
    rows, rejections, stats = make_tasks(graph, games, walks, config, snapshot_id=snapshot_id)
    stats = {**stats, "games": len(records), "rejections": dict(sorted(rejections.items())),
             "tasks": len(rows), "by_split": histogram([r["split"] for r in rows]),
             "by_difficulty": histogram([r["difficulty"] for r in rows]),
             "by_shortest": histogram([r["shortest_path_length"] for r in rows]),
             "by_source": histogram([r["source"] for r in rows]),
             "by_variant": histogram([r["variant"] for r in rows]),
             "human_baseline": human_baseline(rows), "seconds": round(time.perf_counter() - started, 2)}
    provenance = {"snapshot_id": snapshot_id, "game_files": [str(p) for p in game_files], "seed": config.seed,
                  "config": asdict(config), "prompt_version": PROMPT_VERSION,
                  "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    export = export_dataset(table(rows), out_dir, card=card(rows, stats, provenance),
                            provenance={**provenance, "stats": stats})
    return NavigationRun(rows, stats, provenance, export, check_tasks(graph, rows))
