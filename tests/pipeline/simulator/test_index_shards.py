"""The search index in shards: built in one process per shard, searched as one index (same pages, same scores),
recorded in the index's meta file, served through a snapshot; old one-piece indexes still open."""

import json
import random
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest

from pipeline.simulator.index_shards import ShardedTantivyIndex, shard_of
from pipeline.simulator.search_index import (
    META_FILE,
    STOPWORDS,
    IndexConfig,
    TantivyIndex,
    build_index,
    open_index,
)
from pipeline.simulator.snapshot import build_snapshot
from tests.support import TOPICS

# Words of very unequal frequency, some English stop words, inflected forms (for stemming) and words beyond ASCII (the
# terms come back from tantivy's explanations as Rust strings in JSON), and page lengths from 1 to 400 words: the
# shards' average lengths and document frequencies differ from the whole corpus's.
WORDS = ("the of and river rivers city cities run running runs stone stones walk walked walking glacier basalt "
         "harbour lighthouse café zürich αθήνα москва 東京".split() + [f"w{i}" for i in range(150)])
SHARDS = 3


def corpus(n: int = 600, seed: int = 0) -> list[tuple[int, str, str]]:
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        body = " ".join(WORDS[min(int(rng.paretovariate(0.9)) - 1, len(WORDS) - 1)] for _ in range(rng.randint(1, 400)))
        docs.append((rng.randrange(-2**62, 2**62), " ".join(rng.sample(WORDS, rng.randint(0, 3))), body))
    return docs


def queries(n: int = 120, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.sample(WORDS[:60], rng.randint(1, 5))) for _ in range(n)] + ["the of", "", "w149 walking"]


def same_ranking(a: list[tuple[int, float]], b: list[tuple[int, float]], rel: float = 1e-5) -> bool:
    """Equal scores rank by rank, and the same pages above the last score (pages of equal score in any order)."""
    if len(a) != len(b) or any(abs(x[1] - y[1]) > rel * max(1.0, abs(x[1])) for x, y in zip(a, b)):
        return False
    cut = a[-1][1] * (1 + rel) if a else 0.0
    return {p for p, s in a if s > cut} == {p for p, s in b if s > cut}


@pytest.fixture(scope="module", params=[{}, {"stemming": True, "title_boost": 2.0}], ids=["default", "stem-boost"])
def indexes(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("index_shards")
    docs = corpus()
    build_index(root / "one", docs, IndexConfig(**request.param))
    stats = build_index(root / "shards", docs, IndexConfig(shards=SHARDS, **request.param))
    return docs, root, open_index(root / "one"), open_index(root / "shards"), stats


def test_shards_rank_and_score_like_one_index(indexes):
    _, _, one, sharded, _ = indexes
    assert isinstance(one, TantivyIndex) and isinstance(sharded, ShardedTantivyIndex)
    compared = 0
    for q in queries():
        for k in (1, 10, 40):
            a, b = one.search(q, k), sharded.search(q, k)
            assert same_ranking(a, b), (q, k, a, b)
            compared += bool(a)
    assert compared > 300
    # The simulator searches from many threads at once.
    qs = queries()
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda q: sharded.search(q, 10), qs)) == [sharded.search(q, 10) for q in qs]


def test_merging_shards_by_their_own_scores_would_rank_differently(indexes):
    """What the global statistics are for: each shard alone scores with its own idf and average length."""
    _, root, one, _, stats = indexes
    config = IndexConfig(**{k: v for k, v in stats.config.items() if k != "shards"})
    shards = [TantivyIndex(root / "shards" / s["dir"], config, STOPWORDS) for s in stats.shards]

    def naive(q: str) -> list[tuple[int, float]]:
        return sorted((hit for s in shards for hit in s.search(q, 10)), key=lambda h: -h[1])[:10]

    assert sum(not same_ranking(one.search(q, 10), naive(q)) for q in queries()) > 10


def test_meta_file_records_the_shards_and_their_pages(indexes):
    import tantivy

    docs, root, _, _, stats = indexes
    meta = json.loads((root / "shards" / META_FILE).read_text())
    assert meta["config"]["shards"] == SHARDS and meta["docs"] == len(docs) == stats.docs
    assert [s["dir"] for s in meta["shards"]] == ["shard-000", "shard-001", "shard-002"]
    assert sum(s["docs"] for s in meta["shards"]) == len(docs) and all(s["docs"] > 100 for s in meta["shards"])
    assert meta["cpu_s"] > 0 and all(s["cpu_s"] > 0 for s in meta["shards"])
    for i, s in enumerate(meta["shards"]):
        searcher = tantivy.Index.open(str(root / "shards" / s["dir"])).searcher()
        hits = searcher.search(tantivy.Query.all_query(), len(docs), count=False).hits
        page_ids = searcher.fast_field_values("page_id", [a for _, a in hits])
        assert len(page_ids) == s["docs"] and {shard_of(p, SHARDS) for p in page_ids} == {i}
    one_meta = json.loads((root / "one" / META_FILE).read_text())
    assert one_meta["config"]["shards"] == 1 and one_meta["shards"] == []


def test_an_index_from_before_shards_opens_as_one_index(tmp_path):
    docs = corpus(80)
    build_index(tmp_path / "index", docs)
    expected = open_index(tmp_path / "index").search("river glacier", 5)
    meta_path = tmp_path / "index" / META_FILE
    meta = json.loads(meta_path.read_text())
    for key in ("shards", "cpu_s"):
        meta.pop(key)
    meta["config"].pop("shards")
    meta_path.write_text(json.dumps(meta))
    old = open_index(tmp_path / "index")
    assert isinstance(old, TantivyIndex) and old.search("river glacier", 5) == expected and expected


@pytest.mark.parametrize("shards", [0, -2, 1.5, True, "2", 1025])
def test_bad_shard_counts_are_refused(shards):
    with pytest.raises(ValueError, match="shards must be an integer from 1 to 1024"):
        IndexConfig(shards=shards)


def test_shards_of_a_bm25s_index_are_refused():
    with pytest.raises(ValueError, match="tantivy"):
        IndexConfig(kind="bm25s", shards=2)


def test_a_meta_file_that_lists_fewer_shards_is_refused(indexes, tmp_path):
    _, root, _, _, _ = indexes
    shutil.copytree(root / "shards", tmp_path / "index")
    meta = json.loads((tmp_path / "index" / META_FILE).read_text())
    meta["shards"] = meta["shards"][:2]
    (tmp_path / "index" / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="promises 3 shards and lists 2"):
        open_index(tmp_path / "index")


def test_a_failed_shard_says_which_and_why(tmp_path):
    docs = corpus(40) + [(7, "a lone surrogate \ud800", "tantivy takes no text that is not UTF-8")]
    with pytest.raises(RuntimeError, match=r"(?s)building index shard-00\d failed.*Value unsupported"):
        build_index(tmp_path / "index", docs, IndexConfig(shards=2))


def test_pages_spread_over_the_shards():
    counts = [0] * 4
    for page_id in range(10_000):  # consecutive ids, as a store numbers pages
        counts[shard_of(page_id, 4)] += 1
    assert all(2300 < c < 2700 for c in counts)
    assert shard_of(123456789, 4) == shard_of(123456789, 4) and shard_of(5, 1) == 0


def test_a_snapshot_with_shards_serves_search(small_store, small_snapshot, tmp_path):
    from pipeline.simulator.web import Simulator

    snap = build_snapshot(small_store.path, tmp_path / "snaps", index=IndexConfig(shards=2))
    assert snap.manifest["index"]["shards"] == 2 and snap.manifest["index"]["config"]["shards"] == 2
    assert sorted(p.name for p in (snap.path / "index").iterdir() if p.is_dir()) == ["shard-000", "shard-001"]
    assert snap.manifest["fingerprint"] == small_snapshot.manifest["fingerprint"]
    sharded, one = Simulator(snap, cache_size=0), Simulator(small_snapshot, cache_size=0)
    assert isinstance(sharded.index, ShardedTantivyIndex)
    for title in TOPICS:
        assert sharded.search(title, 3).results[0].title == title
    qs = [*TOPICS, "widget framework", "manual chapter subject", "studied for centuries", "the of"]
    for q in qs:
        a = [(r.page_id, r.score) for r in one.search(q, 10).results]
        b = [(r.page_id, r.score) for r in sharded.search(q, 10).results]
        assert same_ranking(a, b, rel=1e-3), (q, a, b)  # the responses round scores to 4 decimals
    assert [r.to_dict() for r in sharded.search_many(qs, 5)] == [sharded.search(q, 5).to_dict() for q in qs]
