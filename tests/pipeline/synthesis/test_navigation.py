"""Navigation tasks: BFS gold on a hand-made graph, back-click resolution, the split rule, and the stage on the real
Wikispeedia sample (one shard, the real game paths)."""

import pytest

from pipeline.synthesis.navigation import LinkGraph, NavigationConfig, make_navigation_dataset, make_tasks, pair_stats
from pipeline.synthesis.navigation.human import GameRecord, resolve_back_clicks
from pipeline.synthesis.navigation.tasks import defining_sentence, gold_path_problems, split_problems
from tests.support import sample

W = "https://en.wikipedia.org/wiki/"


def hand_graph() -> LinkGraph:
    # A -> B -> D, A -> C -> D (C clicked more), D -> E; F is cut off; A -> E is 3 links away via D
    edges = [("A", "B", 1), ("A", "C", 9), ("B", "D", 5), ("C", "D", 5), ("D", "E", 2), ("E", "A", 0)]
    return LinkGraph.from_edges([(W + s, W + d, c) for s, d, c in edges], titles={W + "F": "F"})


def test_bfs_gold_on_a_hand_made_graph():
    g = hand_graph()
    ids = g.by_url
    dist = g.distances_to(ids[W + "E"])
    assert dist[ids[W + "A"]] == 3 and dist[ids[W + "D"]] == 1 and ids[W + "F"] not in dist
    assert [g.url[p] for p in g.closer(ids[W + "A"], dist)] == [W + "C", W + "B"]  # both one step closer, by clicks
    best = g.best_path(ids[W + "A"], dist)
    assert [g.title[p] for p in best] == ["A", "C", "D", "E"]  # the most-clicked of the two shortest paths
    assert g.hop_probability(ids[W + "A"], ids[W + "C"]) == 0.9
    assert g.hop_probability(ids[W + "E"], ids[W + "A"]) is None  # no clicks out of E: the clickstream is silent
    assert g.is_path(best) and not g.is_path([ids[W + "A"], ids[W + "D"]])


def test_tasks_from_pairs_and_rejections():
    g = hand_graph()
    games, walks = pair_stats([GameRecord(["A", "B", "<", "C"], "E", False, "timeout"),
                               GameRecord(["B", "D"], "F", False, "restart"), GameRecord(["Q"], "A", False, "timeout")])
    rows, rejections, _ = make_tasks(g, games, walks, NavigationConfig(n_tasks=10, described_fraction=0))
    assert rejections == {"unreachable": 1, "start_missing": 1}  # B -> F: F has no inlinks; Q is not a page
    by_pair = {(r["source"], r["start_title"], r["target_title"]): r for r in rows}
    game = by_pair[("game", "A", "E")]
    assert game["shortest_path_length"] == 3 and game["gold_path_titles"] == ["A", "C", "D", "E"]
    assert game["human_give_up_rate"] == 1.0 and game["human_median_clicks"] == 1.0
    walk = by_pair[("walk", "A", "C")]  # the resolved path A;C (B was left by a back-click)
    assert walk["human_paths"] == [[W + "A", W + "C"]] and walk["human_give_up_rate"] is None
    assert gold_path_problems(g, rows) == []
    broken = dict(game, gold_path=[W + "A", W + "D", W + "E"])
    assert gold_path_problems(g, [broken])


def test_back_clicks_resolved():
    assert resolve_back_clicks(["A", "B", "<", "C", "D", "<", "<", "E"]) == ["A", "E"]
    assert resolve_back_clicks(["A", "<", "B"]) == ["A", "B"]  # never back past the first page


def test_split_rule_keeps_a_target_in_one_split():
    g = LinkGraph.from_edges([(W + f"S{i}", W + f"T{i % 5}", 1) for i in range(60)])
    games = {(f"S{i}", f"T{i % 5}"): s for i, s in enumerate(pair_stats(
        [GameRecord([f"S{i}"], f"T{i % 5}", False) for i in range(60)])[0].values())}
    rows, _, _ = make_tasks(g, games, {}, NavigationConfig(n_tasks=60, eval_fraction=0.5, described_fraction=0))
    assert len(rows) == 60 and split_problems(rows) == []
    assert {r["split"] for r in rows} == {"train", "eval"}  # 5 targets, both splits used
    again, _, _ = make_tasks(g, games, {}, NavigationConfig(n_tasks=60, eval_fraction=0.5, described_fraction=0))
    assert [r["id"] for r in again] == [r["id"] for r in rows]  # deterministic by seed
    assert split_problems([dict(rows[0], split="train"), dict(rows[0], split="eval")]) == [rows[0]["target_url"]]


def test_defining_sentence_masks_the_title():
    lead = ("Working poor\n2007 Schools Wikipedia Selection. Related subjects: Animal & Human Rights\n"
            "Working poor is a term used to describe individuals and families who maintain regular employment but "
            "remain in relative poverty. Often, those defined...")
    s = defining_sentence(lead, "Working poor")
    assert s.startswith("This subject is a term used") and "poor" not in s.lower()
    assert defining_sentence("X\nshort line", "X") is None
    # a pronunciation spells the title out: it goes, an etymology stays (the demo's described England task)
    england = ("England\nEngland (pronounced IPA: /ˈɪŋglənd/) is a nation in northwest Europe and the largest and "
               "most populous constituent country of the United Kingdom.")
    assert defining_sentence(england, "England") == ("This subject is a nation in northwest Europe and the largest "
                                                     "and most populous constituent country of the United Kingdom.")
    alchemy = "Alchemy\nAlchemy (from Arabic al-kimia) is an early philosophical discipline combining chemistry with art."
    assert "(from Arabic al-kimia)" in defining_sentence(alchemy, "Alchemy")
    # read in the demo's described tasks: a masked name left half-said, or a word that spells the title
    for title, line in (("Michelangelo", "Michelangelo di Lodovico Buonarroti Simoni (March 6, 1475 – February 18, "
                                         "1564), commonly known as Michelangelo, was an Italian Renaissance painter."),
                        ("Arithmetic", "Arithmetic or arithmetics (from the Greek word αριθμός = number) is the "
                                       "oldest and most elementary branch of mathematics."),
                        ("Taj Mahal", "The Taj Mahal (sometimes called \"the Taj\") is generally considered the "
                                      "finest example of Mughal architecture."),
                        ("Technology", "Technology is a word with origins in the Greek word technologia, techne "
                                       "craft and logia saying, a broad term for tools and crafts.")):
        assert defining_sentence(f"{title}\n{line}", title) is None, title
    hitler = ("Adolf Hitler\nAdolf Hitler (April 20, 1889 – April 30, 1945) was Chancellor of Germany from 1933 and "
              "leader of Germany from 1934 until his death.")
    assert defining_sentence(hitler, "Adolf Hitler").startswith("This subject (April 20, 1889")


@pytest.fixture(scope="module")
def navigation_run(wikispeedia_snapshot, tmp_path_factory):
    return make_navigation_dataset(
        wikispeedia_snapshot.path / "snapshot.duckdb", [sample("wikispeedia", "paths_unfinished.tsv")],
        tmp_path_factory.mktemp("nav") / "navigation_tasks", snapshot_id=wikispeedia_snapshot.id,
        config=NavigationConfig(n_tasks=60, max_candidates=400))


def test_stage_on_the_wikispeedia_sample(navigation_run):
    run = navigation_run
    assert len(run.rows) == 60
    assert all(bad == 0 for bad, _ in run.checks.values()), run.checks
    assert set(run.stats["by_difficulty"]) == {"easy", "medium", "hard"}
    assert {r["source"] for r in run.rows} == {"game", "walk"}
    card = (run.export["path"] + "/README.md")
    text = open(card).read()
    assert "## Human baseline" in text and "| walk |" in text
    import datasets

    assert datasets.load_from_disk(run.export["hf"])["train"].num_rows == run.export["rows_by_split"]["train"]
