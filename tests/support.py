"""What the tests share that is not a fixture: the sample data beside the checkout, the small corpus (its pages,
links and clickstream, written into a store), questions over it, and backend doubles. The fixtures built from
these live in tests/conftest.py; no test module imports another test module.
"""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from pipeline.ingest.run import content_hash
from pipeline.ingest.store import Store
from pipeline.ingest.urls import normalize_url
from pipeline.llm.base import Backend, Completion, Usage

SHARED_DATA = Path(os.environ.get("WEBSIM_SAMPLE_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")


def sample(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"sample data not found: {path}")
    return path


# ---- the small corpus (tests/conftest.py: `small_store`, `small_snapshot`) ------------------------------------


# Topic -> what it is. Every description uses words no other topic uses, so a title finds its page.
TOPICS = {
    "Aardvark": "burrowing nocturnal mammal of Africa that feeds on ants and termites with a long sticky tongue",
    "Basalt": "fine grained volcanic rock formed from rapidly cooling lava rich in magnesium and iron",
    "Cormorant": "dark seabird that dives for fish and dries its outstretched wings on coastal rocks",
    "Dulcimer": "stringed instrument struck with small hammers in the folk music of Appalachia",
    "Equinox": "moment twice a year when day and night last about equally long across the globe",
    "Fjord": "long narrow inlet with steep cliffs carved by glaciers along the coast of Norway",
    "Gazpacho": "cold Andalusian soup made of raw blended tomatoes cucumbers peppers and olive oil",
    "Heliotrope": "flowering plant whose purple blossoms turn toward the sun and smell of vanilla",
    "Isotope": "variant of a chemical element whose nuclei carry a different number of neutrons",
    "Jacquard": "loom attachment that weaves intricate patterns controlled by punched cards",
    "Kelvin": "base unit of thermodynamic temperature starting at absolute zero",
    "Lighthouse": "tower with a powerful lamp that warns ships away from dangerous reefs at night",
    "Marzipan": "sweet confection of ground almonds sugar and honey shaped into small fruits",
    "Nebula": "interstellar cloud of dust hydrogen and helium where new stars are born",
    "Origami": "Japanese art of folding paper into cranes and other figures without scissors",
    "Penguin": "flightless bird of the southern hemisphere that swims with flipper wings in icy water",
    "Quartz": "hard crystalline mineral of silicon and oxygen used in watches for its piezoelectric effect",
    "Rhubarb": "perennial vegetable whose tart red stalks are baked into pies and crumbles",
    "Sextant": "navigation instrument measuring the angle between a celestial body and the horizon",
    "Café": "small restaurant serving coffee pastries and light meals to customers at tables",
}
WIKI = "https://en.wikipedia.org/wiki/"
WHEN = datetime(2007, 6, 1, tzinfo=timezone.utc)
# (source title, target title, anchor, clickstream count)
EDGES = [("Aardvark", "Penguin", "another odd animal", 120), ("Aardvark", "Basalt", "rocks", 7),
         ("Penguin", "Aardvark", "aardvark", 15), ("Basalt", "Quartz", "quartz", 40), ("Fjord", "Lighthouse",
         "lighthouses", 0), ("Nebula", "Kelvin", "temperature", 3), ("Origami", "Jacquard", "patterns", 0)]
EXAMPLE_PAGES = {
    "https://example.org/": ("Example home", "Welcome to the example organisation homepage with news and docs."),
    "https://example.org/docs/intro": ("Introduction", "The introduction explains how the widget framework works."),
    "https://example.org/docs/install": ("Installing", "Install the widget framework with the package manager."),
    "https://example.org/docs/api": ("API reference", "Every widget function and its parameters are listed here."),
    "https://example.org/blog/2020/hello": ("Hello blog", "Our first blog post says hello to the readers."),
    "https://example.org/blog/2021/news": ("Yearly news", "A year of releases, conferences and contributors."),
}
# Same text as /docs/intro: deduplicated into an alias of it (the shorter URL wins).
DUPLICATE_URL = "https://example.org/docs/intro/index.html"
REDIRECTS = {"http://example.org/old-docs": ("https://example.org/docs/intro", 301),
             "https://example.org/tmp": ("https://example.org/blog/2020/hello", 302)}
PAGED_HOST = "docs.example.com"
PAGED_COUNT = 25


def topic_text(title: str) -> str:
    desc = TOPICS[title]
    others = [t for t in TOPICS if t != title][:3]
    return (f"{title}\n{title} is a {desc}. The {title.lower()} has been studied for centuries. "
            f"Articles about {', '.join(others)} are elsewhere in this encyclopedia.")


def page_row(i: int, url: str, title: str, text: str, when: datetime = WHEN) -> dict:
    return dict(record_id=f"rec-{i}", record_offset=i * 100, url=normalize_url(url), warc_date=when,
                http_status=200, content_type="text/html", charset="utf-8", charset_source="header", title=title,
                text=text, published=None, language="en", payload_bytes=len(text.encode()),
                content_hash=content_hash(text), from_revisit=False)


def write_corpus(store: Store, partition: str = "corpus.warc.gz", extra_pages: dict | None = None) -> None:
    """Pages on three hosts, links with anchors, a duplicate, two redirects, clickstream counts."""
    with store.partition_writer("warc", partition) as w:
        n = 0
        for title in TOPICS:
            n += 1
            w.add("warc_pages", page_row(n, WIKI + title, title, topic_text(title)))
            for src, dst, anchor, _ in EDGES:
                if src == title:
                    w.add("warc_links", dict(src_record_id=f"rec-{n}", src_url=normalize_url(WIKI + src),
                                             dst_url=normalize_url(WIKI + dst), anchor=anchor,
                                             context=f"See {anchor}.", ordinal=len(w._buffers["warc_links"])))
        for url, (title, text) in {**EXAMPLE_PAGES, **(extra_pages or {})}.items():
            n += 1
            w.add("warc_pages", page_row(n, url, title, text))
            if url == "https://example.org/":
                for i, target in enumerate(["https://example.org/docs/intro", "https://example.org/old-docs",
                                            "http://example.org/old-docs"]):
                    w.add("warc_links", dict(src_record_id=f"rec-{n}", src_url=url, dst_url=normalize_url(target),
                                             anchor=f"link {i}", context="", ordinal=i))
        n += 1
        w.add("warc_pages", page_row(n, DUPLICATE_URL, "Introduction", EXAMPLE_PAGES[
            "https://example.org/docs/intro"][1]))
        for i in range(1, PAGED_COUNT + 1):
            n += 1
            w.add("warc_pages", page_row(n, f"https://{PAGED_HOST}/page-{i:02d}", f"Manual page {i}",
                                          f"Chapter {i} of the manual covers subject number {i} in depth."))
        for i, (url, (location, status)) in enumerate(REDIRECTS.items()):
            w.add("warc_redirects", dict(record_id=f"redir-{i}", url=normalize_url(url),
                                         location=normalize_url(location), http_status=status, warc_date=WHEN))
    with store.partition_writer("clickstream", "clicks.tsv") as w:
        for src, dst, _, n_clicks in EDGES:
            if n_clicks:
                w.add("clickstream", dict(lang="en", prev=src, curr=dst, type="link", n=n_clicks))
        w.add("clickstream", dict(lang="en", prev="other-search", curr="Penguin", type="external", n=500))
    store.build_pages()
    store.build_link_graph()


# ---- questions over the small corpus ---------------------------------------------------------------------

def topic_sentence(title: str) -> str:
    return f"{title} is a {TOPICS[title]}."


def step(title: str, quote: str = "") -> dict:
    return {"url": WIKI + title, "title": title, "quote": quote or topic_sentence(title)}


def question(qid: str, titles: list[str], answer: str, split: str = "train", **extra) -> dict:
    chain = [step(t) for t in titles]
    return {"id": qid, "question": f"Question {qid}: follow {len(titles) - 1} links and find the answer.",
            "answer": answer, "aliases": [], "hops": len(titles) - 1, "chain": chain, "start_url": chain[0]["url"],
            "answer_url": chain[-1]["url"], "difficulty": 0.5, "split": split, "snapshot_id": "small",
            "model": "test", "prompt_version": "test-v1", "seed": 0, **extra}


def small_questions() -> list[dict]:
    """Train and eval questions whose chains are link paths of the small corpus (answers on the last page)."""
    return [
        question("basalt", ["Aardvark", "Basalt", "Quartz"], "watches"),
        question("penguin", ["Penguin", "Aardvark"], "termites"),
        question("detour", ["Aardvark", "Quartz"], "piezoelectric effect"),  # no direct link: via Basalt
        question("nebula", ["Nebula", "Kelvin"], "absolute zero"),
        question("fjord", ["Fjord", "Lighthouse"], "reefs", split="eval"),
        question("origami", ["Origami", "Jacquard"], "punched cards", split="eval"),
    ]


def train_questions() -> list[dict]:
    return [q for q in small_questions() if q["split"] == "train"]


# ---- backend doubles --------------------------------------------------------------------------------------

class SeededTeacher:
    """Scripted teacher: answers each question per (seed, turn); records the sampling params of every call."""

    def __init__(self, plans):
        self.plans = plans
        self.params = []

    def generate(self, chats, params=None, schema=None, *, tools=None):
        self.params.append(params)
        out = []
        for chat in chats:
            qid = chat[1]["content"].split(":")[0].removeprefix("Question ")
            turn = sum(1 for m in chat if m["role"] == "assistant")
            plan = self.plans[qid].get(params.seed, self.plans[qid].get("any"))
            out.append(Completion(text=plan[min(turn, len(plan) - 1)]))
        return out


class FakeTeacher:
    """A backend double: answers key-point requests with the passage's first sentence (every third one is
    malformed), report requests with one section per fragment."""

    model_id = "fake-teacher"

    def __init__(self):
        self.usage = Usage()
        self.calls = 0

    def generate(self, chats, params=None, schema=None):
        from pipeline.synthesis.report_tasks import lead_key_point

        out = []
        for chat in chats:
            self.calls += 1
            self.usage.requests += 1
            user = chat[-1]["content"]
            if self.calls % 3 == 0:
                out.append(Completion(text="{not json", error="invalid_json"))
                continue
            if "key_points" in schema["properties"]:
                passage = user.split("Passage:\n", 1)[1].split("\n\nList up to", 1)[0]
                lead = lead_key_point(passage)  # None where no sentence of the passage is one a person would write
                found = [{"point": lead["point"], "quote": lead["quote"]}] if lead else []
                parsed = {"key_points": found + [{"point": "Something invented.",
                                                  "quote": "words that are not in it at all"}]}
            elif "sections" in schema["properties"]:
                frags = [f.split("\n", 1) for f in user.split("Fragments:\n\n", 1)[1].split("\n\n[")]
                parsed = {"title": "Report", "sections": [
                    {"heading": f"Part {i}", "sentences": [{"text": body.split(". ")[0], "cites": [head.strip("[]")]}]}
                    for i, (head, body) in enumerate(frags)]}
            else:
                parsed = {"sentences": [{"text": "A merged summary sentence about the notes.", "cites": ["C1"]}]}
            out.append(Completion(text=json.dumps(parsed), parsed=parsed))
        return out


def reword(question: str) -> str:
    """A fluent rewrite that keeps every clue: what a scripted polisher answers."""
    if question.startswith("Which "):
        return "What " + question[len("Which "):]
    return question.replace("In what year ", "In which year ", 1)


class ScriptedBackend(Backend):
    """A backend that answers like a careful editor: the question it is asked to polish with one phrase reworded
    (`reword`), every clue kept; the judge answers the gold answer it is told, the closed-book pass does not know.
    Counts engine calls."""

    name = "scripted"

    def __init__(self, judge_answers=None, **kwargs):
        super().__init__(model_id="scripted", **kwargs)
        self.judge_answers = judge_answers or {}
        self.calls = 0

    def _run(self, requests):
        from pipeline.synthesis import questions as q

        self.calls += 1
        out = []
        for r in requests:
            system, user = r.prompt[0]["content"], r.prompt[-1]["content"]
            if system == q.POLISH_SYSTEM:
                text = reword(user)
            elif system == q.JUDGE_SYSTEM:
                question = re.search(r"Question: (.*)$", user, re.M).group(1)
                text = json.dumps({"answer": self.judge_answers.get(question, "no idea")})
            else:
                text = json.dumps({"answer": "I do not know"})
            out.append([Completion(text=text, prompt_tokens=100, completion_tokens=20)] * r.params.n)
        return out


# ---- the simulator server in a subprocess ---------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`pipeline.simulator.server.serve` in a subprocess on a free loopback port."""

    def __init__(self, snapshot_path: Path, **serve_kwargs):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        kwargs = {"port": self.port, **serve_kwargs}
        code = f"from pipeline.simulator.server import serve; serve({str(snapshot_path)!r}, **{kwargs!r})"
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                out = self.proc.stdout.read().decode(errors="replace") if self.proc.poll() is not None else ""
                self.stop()
                raise RuntimeError(f"server did not start: {out[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.stdout.read().decode(errors="replace")


# ---- report tasks (the second training round) ---------------------------------------------------------------------

def report_task_rows() -> list[dict]:
    """Three report tasks in the `report_tasks` row shape: a synthesise task with a teacher reference that passes
    its verifiers, a reorder task whose reference is the gold, and an eval-split reorder task."""
    nile, dam = "https://en.wikipedia.org/wiki/Nile", "https://en.wikipedia.org/wiki/Aswan_Dam"

    def chunk(cid, url, position, text):
        return {"chunk_id": cid, "source_chunk_id": f"{url}#{position}", "url": url, "title": url.rsplit("/", 1)[1],
                "position": position, "char_start": 0, "char_end": len(text), "section": "", "text": text,
                "n_tokens": len(text.split()), "is_distractor": False}

    chunks = [chunk("C1", nile, 1, "The Nile flows north for about 6,650 kilometres and drains into the "
                                   "Mediterranean Sea."),
              chunk("C2", dam, 0, "The Aswan High Dam was completed in 1970 across the Nile in southern Egypt.")]
    key_points = [{"chunk_id": "C1", "point": "The Nile flows north about 6,650 km into the Mediterranean.",
                   "quote": "flows north for about 6,650 kilometres", "source": "model:x"},
                  {"chunk_id": "C2", "point": "The Aswan High Dam on the Nile was completed in 1970.",
                   "quote": "The Aswan High Dam was completed in 1970", "source": "model:x"}]
    outline = [{"url": nile, "title": "Nile", "sections": [{"heading": "Course", "chunk_ids": ["C1"]}]},
               {"url": dam, "title": "Aswan Dam", "sections": [{"heading": "Dam", "chunk_ids": ["C2"]}]}]
    reference = ("# The Nile and its dam\n\n## Course\nThe Nile flows north for about 6,650 kilometres into the "
                 "Mediterranean Sea [C1].\n\n## Dam\nThe Aswan High Dam across the Nile was completed in 1970 [C2].")
    synth = {"task_id": "synth-1", "task_kind": "synthesise", "split": "train",
             "prompt": [{"role": "system", "content": "Write a report."},
                        {"role": "user", "content": "Chunks: [C1] ... [C2] ..."}],
             "chunk_ids": ["C1", "C2"], "chunks": chunks, "gold_order": ["C1", "C2"], "distractor_ids": [],
             "key_points": key_points, "outline": outline, "notes": [], "min_words": 10, "max_words": 200,
             "reference": reference, "reference_source": "model:teacher",
             "reference_scores": {"order": None, "coverage": 1.0, "citations": 1.0, "distractors": 1.0,
                                  "notes": None, "format": 1.0}}
    reorder = {"task_id": "reorder-1", "task_kind": "reorder", "split": "train",
               "prompt": [{"role": "system", "content": "Order the chunks."},
                          {"role": "user", "content": "[C1] ... [C2] ... [C3] ..."}],
               "chunk_ids": ["C1", "C2", "C3"], "chunks": [], "gold_order": ["C2", "C3", "C1"], "distractor_ids": [],
               "key_points": [], "outline": [], "notes": [], "min_words": 0, "max_words": 0,
               "reference": "C2, C3, C1", "reference_source": "gold",
               "reference_scores": {"order": 1.0, "coverage": None, "citations": None, "distractors": None,
                                    "notes": None, "format": 1.0}}
    return [synth, reorder, {**reorder, "task_id": "reorder-eval", "split": "eval"}]


# ---- executors ----------------------------------------------------------------------------------------------------

def with_executor(base, executor):
    """The project's definitions (a `dg.Definitions`), everything kept, with `executor` as every job's default."""
    import dagster as dg

    return dg.Definitions(assets=base.assets, asset_checks=base.asset_checks, jobs=base.jobs,
                          schedules=base.schedules, sensors=base.sensors, resources=base.resources, executor=executor)
