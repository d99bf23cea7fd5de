"""A tantivy index in shards: pages split between N independent indexes, built in parallel processes, searched
together with the statistics of all pages, so that a search returns the pages and scores of one index over all pages.

Layout: `index/index_meta.json` (config with `shards`, and per shard its folder, documents, build time) and one
tantivy index per shard in `index/shard-000/`, `index/shard-001/`, ... A page goes to shard
`shard_of(page_id, shards)`, a fixed hash: the same pages always land in the same shard.

Building: this process reads the documents once and sends them in pickled batches through a pipe to one process per
shard (a fresh interpreter running `_shard_main`), each of which runs tantivy's writer with its share of the threads
and memory. Processes rather than threads because building each `tantivy.Document` holds the GIL.

Searching: BM25 in one index uses that index's document count, document frequencies and average field length. Each
shard has its own, so naive merging would rank a page by the statistics of the shard it happened to land in. Two
steps make the scores global (tantivy-py offers no way to hand a searcher outside statistics):

1. idf: every (field, term) clause of a shard's query is boosted by `idf_all / idf_shard`, with the document
   frequencies summed over the shards (`Searcher.doc_freq`). The shard's score is then the global one except for
   the average field length (avgdl).
2. avgdl: each candidate's score is recomputed from tantivy's explanation of it (term frequency and field length per
   clause) with the average field length of all pages. A shard's own avgdl differs from the global one by a known
   ratio, which bounds how far any page's score can move (see `_avgdl_ratios`): a shard is asked for more candidates
   until no page it has not returned can beat the k-th score. The top k is then exact, up to float rounding (tantivy
   scores in float32) and the order of pages with equal scores (by page_id here).
"""

from __future__ import annotations

import functools
import json
import math
import re
import struct
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterable, NamedTuple

from pipeline.simulator.search_index import (
    IndexConfig,
    build_tantivy,
    indexed_query_terms,
    indexing_threads,
    tantivy_analyzer,
)

FIELDS = ("title", "body")
_FIELD_OF_ORDINAL = {"1": "title", "2": "body"}  # tantivy_schema(): page_id, title, body
K1, B = 1.2, 0.75  # tantivy's BM25 constants
_BATCH_DOCS = 512
_BATCH_CHARS = 8_000_000
_MASK = (1 << 64) - 1
_SLACK = 1e-6  # float32 rounding of tantivy's scores, in the bounds
# What `_term_clauses` reads in an explanation: a clause's term, `Term=Term(field=2, type=Str, "basalt")` (Rust's Debug
# format, inside a JSON string), and the freq, (k1, b,) dl and avgdl constants of its BM25 formula, in that order.
_TERMS = re.compile(r'"Term=Term\(field=(\d+), type=Str, \\"((?:[^"\\]|\\\\)*)\\"\)"')
_CONSTANTS = re.compile(r'"freq / \(freq \+ k1 \* \(1 - b \+ b \* dl / avgdl\)\)",\s*"details":\s*\[\s*'
                        r'\{\s*"value":\s*([^,\s]+),\s*"description":\s*"freq, [^"]*"\s*\},\s*'
                        r'\{[^}]*\},\s*\{[^}]*\},\s*'
                        r'\{\s*"value":\s*([^,\s]+),\s*"description":\s*"dl, [^"]*"\s*\},\s*'
                        r'\{\s*"value":\s*([^,\s]+),\s*"description":\s*"avgdl, [^"]*"')
_ESCAPE = re.compile(r"\\(u\{[0-9a-fA-F]+\}|.)", re.S)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "0": "\0"}
_FLOAT32 = struct.Struct("f")


def shard_of(page_id: int, shards: int) -> int:
    """The shard of `page_id`: splitmix64's finaliser (stable across runs and machines) modulo `shards`."""
    z = (int(page_id) + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return (z ^ (z >> 31)) % shards


def shard_dir(i: int) -> str:
    return f"shard-{i:03d}"


# ---- building ------------------------------------------------------------------------------------------------------

def build_shards(path: Path, docs: Iterable[tuple[int, str, str]], config: IndexConfig) -> list[dict]:
    """Build `config.shards` tantivy indexes of `docs` under `path`, in as many processes; their stats, by shard."""
    import pickle
    import subprocess
    import sys
    import tempfile

    n = config.shards
    threads = max(1, indexing_threads(config) // n)
    heap = max(config.writer_heap_mb * 1_000_000 // n, 15_000_000 * threads)
    # A fresh interpreter, not multiprocessing: a spawned child re-runs the caller's main script, which a script without
    # an `if __name__ == "__main__"` guard does not survive, and a forked one inherits DuckDB's threads.
    root = str(Path(__file__).resolve().parents[2])
    main = (f"import sys; sys.path.insert(0, {root!r}); "
            "import pipeline.simulator.index_shards as m; m._shard_main(*sys.argv[1:])")
    procs: list[subprocess.Popen] = []
    errors = [tempfile.TemporaryFile() for _ in range(n)]
    try:
        for i in range(n):
            (path / shard_dir(i)).mkdir()
            procs.append(subprocess.Popen(
                [sys.executable, "-c", main, str(path / shard_dir(i)), str(threads), str(heap),
                 json.dumps(asdict(config))], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors[i]))

        def send(s: int, batch) -> None:
            try:
                pickle.dump(batch, procs[s].stdin, protocol=pickle.HIGHEST_PROTOCOL)
            except (BrokenPipeError, ConnectionResetError):  # the shard's process stopped: say why
                raise _failure(s, procs[s], errors[s]) from None

        batches: list[list[tuple[int, str, str]]] = [[] for _ in range(n)]
        chars = [0] * n
        for page_id, title, text in docs:
            s = shard_of(page_id, n)
            batches[s].append((int(page_id), title or "", text or ""))
            chars[s] += len(title or "") + len(text or "")
            if len(batches[s]) >= _BATCH_DOCS or chars[s] >= _BATCH_CHARS:
                send(s, batches[s])
                batches[s], chars[s] = [], 0
        for s in range(n):
            if batches[s]:
                send(s, batches[s])
            send(s, None)
            procs[s].stdin.close()
        results = []
        for s, proc in enumerate(procs):
            out = proc.stdout.read()
            if proc.wait() != 0:
                raise _failure(s, proc, errors[s])
            results.append(json.loads(out.decode().strip().splitlines()[-1]))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for f in errors:
            f.close()


def _failure(s: int, proc, stderr) -> RuntimeError:
    code = proc.wait()
    stderr.seek(0)
    tail = stderr.read().decode(errors="replace")[-3000:]
    return RuntimeError(f"building index {shard_dir(s)} failed (exit code {code}):\n{tail}")


def _shard_main(path: str, threads: str, heap: str, config_json: str) -> None:
    """One shard's process: documents as pickled batches on stdin (None ends them), its stats as JSON on stdout."""
    import pickle
    import queue
    import sys

    started, cpu_started = time.perf_counter(), time.process_time()

    batches: queue.Queue = queue.Queue(maxsize=4)  # read ahead while tantivy indexes, so the sender rarely waits

    def read() -> None:
        try:
            while (batch := pickle.load(sys.stdin.buffer)) is not None:
                batches.put(batch)
            batches.put(None)
        except BaseException as exc:  # the sender died (EOF) or sent garbage: stop, don't wait forever
            batches.put(exc)

    threading.Thread(target=read, daemon=True).start()

    def docs():
        while (batch := batches.get()) is not None:
            if isinstance(batch, BaseException):
                raise batch
            yield from batch

    n = build_tantivy(Path(path), docs(), IndexConfig(**json.loads(config_json)), int(threads), int(heap))
    print(json.dumps({"dir": Path(path).name, "docs": n, "seconds": round(time.perf_counter() - started, 3),
                      "cpu_s": round(time.process_time() - cpu_started, 3)}), flush=True)


# ---- searching -----------------------------------------------------------------------------------------------------

def _f32(x: float) -> float:
    return _FLOAT32.unpack(_FLOAT32.pack(x))[0]


@functools.lru_cache(maxsize=65536)
def _idf(doc_freq: int, docs: int) -> float:
    """tantivy's idf, rounded to float32 at each step as tantivy computes it: for a term in most pages, ln(1 + x) of
    a small x in float32 is off by up to 1e-4 of itself, and one index's ranking of such pages follows that."""
    x = _f32(_f32(_f32(docs - doc_freq) + 0.5) / _f32(doc_freq + 0.5))
    return _f32(math.log(_f32(1.0 + x)))


class ShardedTantivyIndex:
    """The shards of one index, searched as one (see the module docstring)."""

    kind = "tantivy"

    def __init__(self, path: Path, config: IndexConfig, stopwords: frozenset[str], dirs: list[str]):
        import tantivy

        self._tantivy = tantivy
        self._config = config
        self._stopwords = stopwords if config.stopwords else False
        self._analyzers = threading.local()  # a TextAnalyzer is not to be shared between threads
        self._searchers = []
        for d in dirs:
            index = tantivy.Index.open(str(Path(path) / d))
            index.register_tokenizer("websim", tantivy_analyzer(config, stopwords))
            self._searchers.append(index.searcher())
        self._schema = index.schema
        self._weights = {"title": config.title_boost, "body": 1.0}
        self._docs = [s.num_docs for s in self._searchers]
        self.docs = sum(self._docs)
        avgdl = [{f: self._probe_avgdl(s, f) for f in FIELDS} for s in self._searchers]
        self._avgdl = {f: sum(a[f] * n for a, n in zip(avgdl, self._docs)) / max(self.docs, 1) for f in FIELDS}
        self._ratios = [_avgdl_ratios(a, self._avgdl) for a in avgdl]

    def _probe_avgdl(self, searcher, field: str) -> float:
        """A shard's average length of `field` (tantivy keeps it to itself), read from the explanation of a match."""
        terms = searcher.terms_with_prefix(field, "", limit=1)
        if not terms:
            return 0.0  # no page of this shard has a word in this field
        q = self._tantivy.Query.term_query(self._schema, field, terms[0][0])
        (_, addr), = searcher.search(q, 1, count=False).hits
        clause, = _term_clauses(q.explain(searcher, addr).to_json())
        if (clause.field, clause.term) != (field, terms[0][0]):
            raise RuntimeError(f"tantivy explains {field}:{terms[0][0]} as {clause.field}:{clause.term}")
        return clause.avgdl

    def _tokens(self, query: str) -> list[str]:
        analyzer = getattr(self._analyzers, "analyzer", None)
        if analyzer is None:
            analyzer = self._analyzers.analyzer = tantivy_analyzer(self._config, self._stopwords or ())
        # Term by term, as tantivy's query parser analyses them (duplicates after stemming count twice there too).
        return [tok for term in indexed_query_terms(query, self._stopwords) for tok in analyzer.analyze(term)]

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        tokens = self._tokens(query)
        if not tokens or k < 1:
            return []
        tantivy = self._tantivy
        weights: dict[tuple[str, str], float] = {}  # (field, term) -> its BM25 weight over all pages
        shard_clauses: list[list] = [[] for _ in self._searchers]
        for field, term in ((f, t) for f in FIELDS if self._weights[f] > 0 for t in tokens):
            freqs = [s.doc_freq(field, term) for s in self._searchers]
            idf = _idf(sum(freqs), self.docs)
            weights[(field, term)] = self._weights[field] * idf * (K1 + 1)
            for s, (df, n_docs) in enumerate(zip(freqs, self._docs)):
                if df:  # this shard's score of the clause, with the idf of all pages
                    boost = self._weights[field] * idf / _idf(df, n_docs)
                    shard_clauses[s].append((tantivy.Occur.Should, tantivy.Query.boost_query(
                        tantivy.Query.term_query(self._schema, field, term), boost)))
        queries = [tantivy.Query.boolean_query(c) if c else None for c in shard_clauses]
        return self._top_k(queries, weights, k)

    def _top_k(self, queries: list, weights: dict[tuple[str, str], float], k: int) -> list[tuple[int, float]]:
        limits = [k if q is not None else 0 for q in queries]
        bounds = [-math.inf] * len(queries)  # the most that a page a shard has not returned can score
        candidates: dict[int, tuple[float, float, int, object]] = {}  # page_id -> (low, high, shard, address)
        scores: dict[int, float] = {}
        todo = [s for s, q in enumerate(queries) if q is not None]
        while todo:
            for s in todo:
                searcher = self._searchers[s]
                hits = searcher.search(queries[s], limits[s], count=False).hits
                low, high = self._ratios[s]
                # All of them again: pages of equal score may come in another order than the last time.
                for (score, addr), pid in zip(hits, searcher.fast_field_values("page_id", [a for _, a in hits])):
                    candidates.setdefault(pid, (score * low, score * high, s, addr))
                bounds[s] = hits[-1][0] * high * (1 + _SLACK) if hits and len(hits) == limits[s] else -math.inf
            # Exact scores only for pages that can be in the top k: not those whose best possible score is below
            # the k-th best worst possible one.
            lows = sorted((c[0] for c in candidates.values()), reverse=True)
            floor = lows[k - 1] if len(lows) >= k else -math.inf
            for pid, (low, high, s, addr) in candidates.items():
                if high >= floor * (1 - _SLACK) and pid not in scores:
                    scores[pid] = self._exact_score(queries[s], s, addr, weights)
            kth = sorted(scores.values(), reverse=True)[k - 1] if len(scores) >= k else -math.inf
            todo = [s for s, bound in enumerate(bounds) if bound > kth]  # -inf: the shard has no more pages
            for s in todo:
                limits[s] *= 2
        return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k]

    def _exact_score(self, query, s: int, addr, weights: dict[tuple[str, str], float]) -> float:
        """BM25 of one page with the statistics of all pages, from tantivy's explanation of its shard's score."""
        total = 0.0
        for c in _term_clauses(query.explain(self._searchers[s], addr).to_json()):
            total += weights[(c.field, c.term)] * c.tf / (c.tf + K1 * (1 - B + B * c.dl / self._avgdl[c.field]))
        return total


def _avgdl_ratios(shard: dict[str, float], everything: dict[str, float]) -> tuple[float, float]:
    """Bounds of (score with the global avgdl) / (score with the shard's avgdl) for any page of the shard.

    One clause scores w tf / (tf + k1 (1 - b) + k1 b dl / avgdl); with avgdl A_all instead of A_shard that ratio lies
    between 1 and A_all / A_shard (its limit as dl grows), and a sum of clauses' between their extremes.
    """
    ratios = [everything[f] / shard[f] for f in FIELDS if shard[f] > 0]
    return min([1.0, *ratios]), max([1.0, *ratios])


class _Clause(NamedTuple):
    field: str
    term: str
    tf: float
    dl: float
    """The page's length of the field, as tantivy stores it (one byte: exact for short fields, rounded above)."""
    avgdl: float
    """The shard's average length of the field."""


def _unescape(debug: str) -> str:
    """A string as Rust's `{:?}` wrote it into a JSON string, without the quotes, back to the string."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1)[2:-1], 16)) if m.group(1).startswith("u{")
                       else _ESCAPES.get(m.group(1), m.group(1)), debug.replace("\\\\", "\\"))


def _term_clauses(explanation: str) -> list[_Clause]:
    """The matching term clauses of a tantivy explanation (`Query.explain(...).to_json()`), in order.

    Read with two regular expressions, not parsed: this runs for every page a search returns, and building the JSON
    tree cost more than the explanation. Counts that do not add up are an error.
    """
    constants = _CONSTANTS.findall(explanation)
    terms = _TERMS.findall(explanation)
    n = explanation.count('"TermQuery, product of')
    if not len(terms) == len(constants) == n or any(f not in _FIELD_OF_ORDINAL for f, _ in terms):
        raise RuntimeError(f"unexpected tantivy explanation: {explanation[:500]}")
    return [_Clause(_FIELD_OF_ORDINAL[f], _unescape(t), float(tf), float(dl), float(avgdl))
            for (f, t), (tf, dl, avgdl) in zip(terms, constants)]
