"""Query-centred snippets at index speed: a per-page term map built with the snapshot, a compiled window finder.

A snippet is the passage of a result page (at most `max_chars`) that holds the most distinct query terms. Finding it
by scanning the page's text for every term of every result was two thirds of a search's time. Instead the snapshot
stores, per page, a sorted map from each term of its text (the CRC-32 of the lower-cased token, the same tokens as
`search_index.query_terms`) to the byte offsets of its first `MAX_POSITIONS` occurrences (`serve/snippet_*.npy`).
A query's snippets are then one compiled call (numba, GIL released) over all its results: a binary search per
term in each page's map, the best window over the hits, the text cut at a sentence or word boundary and its
whitespace collapsed, straight from the memory-mapped `pages.arrow`. `SnippetMap.records` goes one step further:
the urls, titles and snippets of all results in one call and one UTF-8 decode, no Python step per result.

Terms match whole tokens and their common inflections (`SUFFIXES`: "volcano" finds "volcanoes", "bird"
"birds"; the map files an inflected token under its stem too, so a term is one lookup per result); a page that holds none of the terms gives its first `max_chars`. Stop words and one-letter tokens are
not in the map when the index drops them (they place nothing). Only the first `SCAN_BYTES` of a page are mapped.
"""

from __future__ import annotations

import codecs
import functools
import zlib
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence

MAX_POSITIONS = 16
"""Occurrences kept per term and page: enough to place a window, and the map stays about the text's size."""
SCAN_BYTES = 200_000
"""A snippet never comes from further into a page than this."""
MAX_TOKEN_BYTES = 40  # as the index's `remove_long(40)`
SUFFIXES = ("s", "es", "ed", "ing")
"""A query term also matches itself with one of these appended (plurals, past tenses, -ing forms): the map files
such tokens under their stem as well (`page_terms`)."""
FILES = ("snippet_keys", "snippet_key_start", "snippet_post_start", "snippet_positions")
_ELLIPSIS = "…"


# ---- compiled kernels ------------------------------------------------------------------------------------------

class _Kernels(NamedTuple):
    page_terms: Any
    snippets: Any
    records: Any


@functools.lru_cache(maxsize=None)
def _kernels() -> _Kernels:
    """Compile (or load from numba's cache) the two kernels; imported lazily, numba is heavy."""
    import numba
    import numpy as np

    njit = functools.partial(numba.njit, cache=True, nogil=True)

    @njit
    def decode(b, i, n):
        """(codepoint, byte length) of the UTF-8 character at b[i]; a stray byte is itself."""
        c = np.int64(b[i])
        if c < 0x80:
            return c, 1
        if c >= 0xF0 and i + 3 < n:
            return ((c & 0x07) << 18) | ((np.int64(b[i + 1]) & 0x3F) << 12) | ((np.int64(b[i + 2]) & 0x3F) << 6) \
                | (np.int64(b[i + 3]) & 0x3F), 4
        if c >= 0xE0 and i + 2 < n:
            return ((c & 0x0F) << 12) | ((np.int64(b[i + 1]) & 0x3F) << 6) | (np.int64(b[i + 2]) & 0x3F), 3
        if c >= 0xC0 and i + 1 < n:
            return ((c & 0x1F) << 6) | (np.int64(b[i + 1]) & 0x3F), 2
        return c, 1

    @njit
    def is_space(cp):
        # Python's `\s` (what the old snippet collapsed): ASCII whitespace, NEL, NBSP and the Unicode spaces.
        if cp <= 32:
            return cp == 32 or 9 <= cp <= 13 or 28 <= cp <= 31
        if cp < 0x85:  # letters, digits, punctuation: one comparison
            return False
        return (cp == 0x85 or cp == 0xA0 or cp == 0x1680 or 0x2000 <= cp <= 0x200A or cp == 0x2028 or cp == 0x2029
                or cp == 0x202F or cp == 0x205F or cp == 0x3000)

    @njit
    def lower_bound(keys, k0, k1, h):
        """The first i in [k0, k1) with keys[i] >= h (k1 if none): the keys are CRC-32s, spread evenly, so the search
        starts where h would fall and gallops from there (a few cache lines, not a binary search's dozen)."""
        lo = k0
        hi = k1
        if k1 - k0 > 32:
            g = k0 + ((np.int64(h) * (k1 - k0)) >> 32)
            step = 8
            if keys[g] < h:
                lo = g + 1
                while lo + step < k1:
                    if keys[lo + step] >= h:
                        hi = lo + step
                        break
                    lo = lo + step + 1
                    step *= 2
            else:
                hi = g
                while hi - step >= k0:
                    if keys[hi - step] < h:
                        lo = hi - step + 1
                        break
                    hi = hi - step
                    step *= 2
        while lo < hi:
            mid = (lo + hi) // 2
            if keys[mid] < h:
                lo = mid + 1
            else:
                hi = mid
        return lo

    @njit
    def page_terms(b, word, stop, crc_table, max_bytes, max_token, max_pos):
        """(sorted unique term hashes, their positions' counts, positions) of one lower-cased page. A token is
        filed under its own hash and, when it ends with "s", "es", "ed" or "ing" after at least 3 bytes, under its
        stem's too: a query term is then one lookup, whichever form the page uses."""
        n = min(len(b), max_bytes)
        hashes = np.empty(n * 2 + 4, np.uint32)
        pos = np.empty(n * 2 + 4, np.uint32)
        states = np.empty(max_token + 2, np.uint32)  # CRC after each byte of the token: its prefixes' hashes
        ones = np.uint32(0xFFFFFFFF)
        c = 0
        i = 0
        while i < n:
            cp, ln = decode(b, i, n)
            if cp >= len(word) or not word[cp]:
                i += ln
                continue
            start = i
            crc = ones
            states[0] = crc
            while i < n:
                cp, ln = decode(b, i, n)
                if cp >= len(word) or not word[cp]:
                    break
                for j in range(i, i + ln):
                    crc = crc_table[(crc ^ b[j]) & 0xFF] ^ (crc >> np.uint32(8))
                    if j - start + 1 <= max_token:
                        states[j - start + 1] = crc
                i += ln
            size = i - start
            if size < 2 or size > max_token:
                continue
            h = crc ^ ones
            k = np.searchsorted(stop, h)
            if k < len(stop) and stop[k] == h:
                continue
            hashes[c] = h
            pos[c] = start
            c += 1
            last = b[i - 1]
            if size >= 4 and last == 115:  # -s
                hashes[c] = states[size - 1] ^ ones
                pos[c] = start
                c += 1
            if size >= 5 and b[i - 2] == 101 and (last == 115 or last == 100):  # -es, -ed
                hashes[c] = states[size - 2] ^ ones
                pos[c] = start
                c += 1
            if size >= 6 and b[i - 3] == 105 and b[i - 2] == 110 and last == 103:  # -ing
                hashes[c] = states[size - 3] ^ ones
                pos[c] = start
                c += 1
        order = np.argsort(hashes[:c], kind="mergesort")  # stable: positions stay in text order per term
        keys = np.empty(c, np.uint32)
        counts = np.empty(c, np.int64)
        out = np.empty(c, np.uint32)
        nk = 0
        no = 0
        for r in range(c):
            h = hashes[order[r]]
            if nk == 0 or keys[nk - 1] != h:
                keys[nk] = h
                counts[nk] = 0
                nk += 1
            if counts[nk - 1] < max_pos:
                counts[nk - 1] += 1
                out[no] = pos[order[r]]
                no += 1
        return keys[:nk], counts[:nk], out[:no]

    @njit
    def window_start(data, t0, keys, k0, k1, post_start, positions, qhash, qterm, n_terms, max_chars, hit_pos,
                     hit_term, counts):
        """Where the snippet of one page starts, in bytes into its text (which begins at data[t0]; its map is
        keys[k0:k1]): the window of max_chars with the most distinct query terms, from a sentence or word before it;
        0 when the page has none of them. hit_pos, hit_term, counts: scratch arrays."""
        nh = 0
        for j in range(len(qhash)):
            h = qhash[j]
            lo = lower_bound(keys, k0, k1, h)
            if lo < k1 and keys[lo] == h:
                for p in range(post_start[lo], post_start[lo + 1]):
                    if nh < len(hit_pos):
                        hit_pos[nh] = positions[p]
                        hit_term[nh] = qterm[j]
                        nh += 1
        if nh == 0:
            return 0
        if nh <= 32:  # insertion sort by position: a few dozen hits, no allocation
            for a in range(1, nh):
                p = hit_pos[a]
                t = hit_term[a]
                b = a - 1
                while b >= 0 and hit_pos[b] > p:
                    hit_pos[b + 1] = hit_pos[b]
                    hit_term[b + 1] = hit_term[b]
                    b -= 1
                hit_pos[b + 1] = p
                hit_term[b + 1] = t
        else:
            order = np.argsort(hit_pos[:nh], kind="mergesort")
            hit_pos[:nh] = hit_pos[:nh][order]
            hit_term[:nh] = hit_term[:nh][order]
        for t in range(n_terms):
            counts[t] = 0
        span = max(max_chars * 3 // 4, 1)
        distinct = 0
        best = 0
        best_first = hit_pos[0]
        jj = 0
        for ii in range(nh):
            p = hit_pos[ii]
            t = hit_term[ii]
            if counts[t] == 0:
                distinct += 1
            counts[t] += 1
            while p - hit_pos[jj] > span:
                tj = hit_term[jj]
                counts[tj] -= 1
                if counts[tj] == 0:
                    distinct -= 1
                jj += 1
            if distinct > best:
                best = distinct
                best_first = hit_pos[jj]
        # Some context before the first hit, from a sentence start (". " or a new line), else a word; hits this
        # close to the top: from the top, the window still fits.
        start = 0
        if best_first > max_chars // 4:
            start = best_first - max_chars // 5
            sentence = -1
            for q in range(best_first - 1, start - 1, -1):
                c = data[t0 + q]
                if c == 10 or (c == 46 and q + 1 < best_first and data[t0 + q + 1] == 32):
                    sentence = q
                    break
            if sentence >= 0:
                start = sentence + 1
            else:
                for q in range(start, best_first):
                    if data[t0 + q] == 32:
                        start = q + 1
                        break
        while start < best_first and (data[t0 + start] & 0xC0) == 0x80:  # not inside a character
            start += 1
        return start

    @njit
    def copy_collapsed(data, i, t1, max_chars, out, base):
        """Copy data[i:t1] to out[base:], whitespace runs collapsed to one space, at most max_chars characters, cut at
        a word when that keeps over half; (bytes written, whether the text was cut)."""
        o = 0
        chars = 0
        pending = False
        last_space_o = -1
        last_space_chars = -1
        cut = False
        while i < t1:
            c0 = data[i]
            if c0 < 0x80:
                cp, ln = np.int64(c0), 1
            else:
                cp, ln = decode(data, i, t1)
            if is_space(cp):
                pending = chars > 0
                i += ln
                continue
            if chars >= max_chars or (pending and chars + 1 >= max_chars):
                cut = True
                break
            if pending:
                last_space_o = o
                last_space_chars = chars
                out[base + o] = 32
                o += 1
                chars += 1
                pending = False
            for q in range(ln):
                out[base + o + q] = data[i + q]
            o += ln
            chars += 1
            i += ln
        if cut and last_space_chars > max_chars // 2:
            o = last_space_o
        while o > 0 and (out[base + o - 1] == 32 or out[base + o - 1] == 44 or out[base + o - 1] == 59
                         or out[base + o - 1] == 58):
            o -= 1
        return o, cut

    @njit
    def snippets(data, text_start, text_end, keys, key_start, post_start, positions, rows, qhash, qterm, n_terms,
                 max_chars, out, out_len, flags):
        """The snippet of each page row in `rows` (UTF-8 into `out`, `width` bytes each); flags: 1 cut before,
        2 cut after."""
        width = len(out) // max(len(rows), 1)
        hit_pos = np.empty(len(qhash) * 16 + 1, np.int64)
        hit_term = np.empty(len(qhash) * 16 + 1, np.int64)
        counts = np.zeros(max(n_terms, 1), np.int64)
        for r in range(len(rows)):
            row = rows[r]
            start = window_start(data, text_start[row], keys, key_start[row], key_start[row + 1], post_start,
                                 positions, qhash, qterm, n_terms, max_chars, hit_pos, hit_term, counts)
            o, cut = copy_collapsed(data, text_start[row] + start, text_end[row], max_chars, out, r * width)
            out_len[r] = o
            flags[r] = (1 if start > 0 else 0) | (2 if cut else 0)

    @njit
    def records(data, spans, keys, key_start, post_start, positions, rows, qhash, qterm, n_terms, max_chars):
        """For each page row in `rows`: its url, NUL, title, NUL, snippet ("…" where cut; empty when max_chars is
        0), NUL, as UTF-8 in one array. spans: (url start, url end, title start, title end, text start, text end)
        byte offsets into data per row."""
        n = len(rows)
        size = n * (max_chars * 4 + 9)
        for r in range(n):
            row = rows[r]
            size += spans[row, 1] - spans[row, 0] + spans[row, 3] - spans[row, 2]
        out = np.empty(size, np.uint8)
        hit_pos = np.empty(len(qhash) * 16 + 1, np.int64)
        hit_term = np.empty(len(qhash) * 16 + 1, np.int64)
        counts = np.zeros(max(n_terms, 1), np.int64)
        o = 0
        for r in range(n):
            row = rows[r]
            for f in range(2):
                for i in range(spans[row, 2 * f], spans[row, 2 * f + 1]):
                    out[o] = data[i]
                    o += 1
                out[o] = 0
                o += 1
            if max_chars > 0:
                t0 = spans[row, 4]
                start = window_start(data, t0, keys, key_start[row], key_start[row + 1], post_start, positions,
                                     qhash, qterm, n_terms, max_chars, hit_pos, hit_term, counts)
                if start > 0:
                    out[o] = 0xE2
                    out[o + 1] = 0x80
                    out[o + 2] = 0xA6
                    o += 3
                w, cut = copy_collapsed(data, t0 + start, spans[row, 5], max_chars, out, o)
                o += w
                if cut:
                    out[o] = 0xE2
                    out[o + 1] = 0x80
                    out[o + 2] = 0xA6
                    o += 3
            out[o] = 0
            o += 1
        return out[:o]

    return _Kernels(page_terms, snippets, records)


@functools.lru_cache(maxsize=1)
def _crc_table():
    import numpy as np

    table = np.empty(256, np.uint32)
    for n in range(256):
        c = n
        for _ in range(8):
            c = (0xEDB88320 ^ (c >> 1)) if c & 1 else c >> 1
        table[n] = c
    return table


@functools.lru_cache(maxsize=1)
def _word_table():
    """1 for the code points `str.isalnum` accepts: `[^\\W_]`, the tokens of `search_index.query_terms`."""
    import numpy as np

    return np.fromiter((chr(i).isalnum() for i in range(0x110000)), dtype=np.uint8, count=0x110000)


def term_hash(term: str) -> int:
    return zlib.crc32(term.encode("utf-8", "surrogatepass"))


def _lower_same_bytes(text: str) -> bytes:
    """`text` lower-cased and UTF-8 encoded, each character keeping its byte length (offsets stay offsets)."""
    if text.isascii():
        return text.lower().encode()
    raw, low = text.encode("utf-8", "surrogatepass"), text.lower().encode("utf-8", "surrogatepass")
    if len(low) == len(raw) and len(text.lower()) == len(text):
        return low
    # "İ" and a few rarer letters change length when lower-cased: those keep their case.
    return "".join(c.lower() if len(c.lower().encode("utf-8", "surrogatepass")) == len(c.encode("utf-8", "surrogatepass"))
                   else c for c in text).encode("utf-8", "surrogatepass")


# ---- building --------------------------------------------------------------------------------------------------

def build_snippet_map(texts: Iterable[str], out_dir: str | Path, stopwords: Iterable[str] = ()) -> dict:
    """Write the term map of `texts` (in page row order) as `out_dir/snippet_*.npy`; returns counts."""
    import numpy as np

    page_terms = _kernels().page_terms
    word, crc = _word_table(), _crc_table()
    stop = np.unique(np.asarray([term_hash(w) for w in stopwords], dtype=np.uint32))
    keys, counts, positions, per_page = [], [], [], [0]
    for text in texts:
        k, c, p = page_terms(np.frombuffer(_lower_same_bytes(text[:SCAN_BYTES] if text else ""), dtype=np.uint8),
                             word, stop, crc, SCAN_BYTES, MAX_TOKEN_BYTES, MAX_POSITIONS)
        keys.append(k)
        counts.append(c)
        positions.append(p)
        per_page.append(per_page[-1] + len(k))
    out_dir = Path(out_dir)
    cat = (lambda parts, dtype: np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype))
    all_counts = cat(counts, np.int64)
    np.save(out_dir / "snippet_keys.npy", cat(keys, np.uint32))
    np.save(out_dir / "snippet_key_start.npy", np.asarray(per_page, dtype=np.int64))
    post_start = np.concatenate([[0], np.cumsum(all_counts)])
    np.save(out_dir / "snippet_post_start.npy", post_start.astype(np.uint32 if post_start[-1] < 2**32 else np.int64))
    np.save(out_dir / "snippet_positions.npy", cat(positions, np.uint32))
    return {"pages": len(per_page) - 1, "terms": int(per_page[-1]), "positions": int(all_counts.sum())}


# ---- serving ---------------------------------------------------------------------------------------------------

class SnippetMap:
    """The term map of a snapshot's pages beside the memory-mapped page texts: `snippets(rows, terms, max_chars)`."""

    def __init__(self, serve_dir: str | Path, data, text_start, text_end, spans=None):
        import numpy as np

        serve_dir = Path(serve_dir)
        self._np = np
        # Plain ndarray views of the maps: numba dispatches an np.memmap argument several times slower.
        self._arrays = [np.asarray(np.load(serve_dir / f"{name}.npy", mmap_mode="r")) for name in FILES]
        self._data, self._start, self._end = data, text_start, text_end
        self._spans = spans
        kernels = _kernels()
        self._kernel, self._records = kernels.snippets, kernels.records
        if len(text_start):  # compile (or load from numba's cache) now, not in the first request
            if spans is not None:
                self.records(np.zeros(1, np.int64), ["warm"], 10)
            else:
                self.snippets(np.zeros(1, np.int64), ["warm"], 10)

    @staticmethod
    def exists(serve_dir: str | Path) -> bool:
        return all((Path(serve_dir) / f"{name}.npy").is_file() for name in FILES)

    def snippets(self, rows, terms: Sequence[str], max_chars: int) -> list[str]:
        """The snippet of each page row in `rows` (an int64 array) for the query `terms` (as `query_terms` gives)."""
        np = self._np
        n = len(rows)
        if max_chars <= 0 or not n:
            return [""] * n
        qhash, qterm, n_terms = _query_arrays(tuple(terms))
        width = max_chars * 4 + 8
        out = np.empty(n * width, np.uint8)
        out_len = np.empty(n, np.int64)
        flags = np.empty(n, np.int8)
        self._kernel(self._data, self._start, self._end, *self._arrays, rows, qhash, qterm, n_terms, max_chars,
                     out, out_len, flags)
        buf = out.data
        result = []
        for r, (size, f) in enumerate(zip(out_len.tolist(), flags.tolist())):
            text = str(buf[r * width:r * width + size], "utf-8", "replace")
            result.append(text if not f else (_ELLIPSIS if f & 1 else "") + text + (_ELLIPSIS if f & 2 else ""))
        return result


    def records(self, rows, terms: Sequence[str], max_chars: int) -> tuple[list[str], list[str], list[str]] | None:
        """(urls, titles, snippets) of page rows `rows` in one compiled call and one decode: the search's results
        without a Python step per result. Needs the page `spans`; None when a url, title or snippet holds a NUL
        character (the separator), for the caller to take them one by one."""
        n = len(rows)
        qhash, qterm, n_terms = _query_arrays(tuple(terms))
        out = self._records(self._data, self._spans, *self._arrays, rows, qhash, qterm, n_terms, max(max_chars, 0))
        parts = codecs.utf_8_decode(out, "replace", True)[0].split("\x00")
        if len(parts) != 3 * n + 1:
            return None
        return parts[0:-1:3], parts[1:-1:3], parts[2:-1:3]


@functools.lru_cache(maxsize=65536)
def _query_arrays(terms: tuple[str, ...]):
    """The kernel's view of a query: the hash of each term, its term number, the term count."""
    import numpy as np

    terms = tuple(dict.fromkeys(t for t in terms if len(t) > 1))
    return (np.asarray([term_hash(t) for t in terms], dtype=np.uint32), np.arange(len(terms), dtype=np.int64),
            len(terms))
