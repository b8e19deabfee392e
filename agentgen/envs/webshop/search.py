"""BM25 product search, standing in for the original's Lucene index (pyserini, Java).

Indexed text per product, as the original's ``convert_product_file_format.py``: title, description,
first bullet point and "name: v1, v2" of each option, lower-cased. Scoring is BM25 with pyserini's
defaults (k1 = 0.9, b = 0.4) over English-stopword-filtered, Porter-stemmed tokens (bm25s +
PyStemmer). A search returns at most 50 products with a positive score, best first, ties broken
by catalog order (Lucene breaks ties by document id).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import bm25s
import numpy as np
from bm25s.stopwords import STOPWORDS_EN

logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets DEBUG: "Building index ..." in every job's console

try:
    import Stemmer  # PyPI: PyStemmer
except ImportError as exc:  # pragma: no cover - a dependency of the project
    raise ImportError(
        "WebShop search needs PyStemmer for Porter stemming (as the original's Lucene analyzer): "
        "pip install PyStemmer"
    ) from exc

SEARCH_RETURN_N = 50
PRODUCT_WINDOW = 10
_TOKEN = re.compile(r"(?u)\b\w\w+\b")


def index_text(product: dict[str, Any]) -> str:
    options = ", and ".join(f"{name}: {', '.join(values)}" for name, values in product["options"].items())
    first_bullet = product["BulletPoints"][0] if product["BulletPoints"] else ""
    return " ".join([product["Title"], product["Description"], first_bullet, options]).lower()


class ProductSearch:
    """search(keywords) -> asins of the top products."""

    def __init__(self, products: list[dict[str, Any]], k1: float = 0.9, b: float = 0.4):
        self._asins = [p["asin"] for p in products]
        self._stemmer = Stemmer.Stemmer("porter")
        self._stop = frozenset(STOPWORDS_EN)
        corpus = [self._tokens(index_text(p)) for p in products]
        self._bm25 = bm25s.BM25(k1=k1, b=b, method="lucene")
        self._bm25.index(corpus, show_progress=False)
        self._cache: dict[str, list[str]] = {}

    def _tokens(self, text: str) -> list[str]:
        words = [w for w in _TOKEN.findall(text.lower()) if w not in self._stop]
        return self._stemmer.stemWords(words)

    def search(self, query: str, k: int = SEARCH_RETURN_N) -> list[str]:
        key = " ".join(query.lower().split())
        if key in self._cache:
            return self._cache[key][:k]
        tokens = [t for t in self._tokens(key) if t in self._bm25.vocab_dict]
        if not tokens:
            hits: list[str] = []
        else:
            scores = np.asarray(self._bm25.get_scores(tokens))
            top = np.flatnonzero(scores > 0)
            order = top[np.lexsort((top, -scores[top]))][:SEARCH_RETURN_N]
            hits = [self._asins[i] for i in order]
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key] = hits
        return hits[:k]
