"""Embeddings kept in the database, keyed by image content and backbone.

A feature vector depends only on the image's bytes (its SHA-256), the backbone
and the preprocessing, so it is shared by every project and every training run:
a second training on mostly the same images skips decoding and the network.
"""

from __future__ import annotations

from training.models import Embedding

# SQLite allows a limited number of variables per query.
FETCH_CHUNK = 500


class DatabaseEmbeddingCache:
    def get_many(self, key: str, sha256s: list[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        unique = sorted(set(sha256s))
        for start in range(0, len(unique), FETCH_CHUNK):
            rows = Embedding.objects.filter(
                backbone=key, sha256__in=unique[start : start + FETCH_CHUNK]
            ).values_list("sha256", "vector")
            found.update((sha, bytes(vector)) for sha, vector in rows)
        return found

    def put_many(self, key: str, vectors: dict[str, bytes]) -> None:
        Embedding.objects.bulk_create(
            [
                Embedding(sha256=sha, backbone=key, vector=vector)
                for sha, vector in vectors.items()
            ],
            ignore_conflicts=True,
            batch_size=FETCH_CHUNK,
        )


class MemoryEmbeddingCache:
    """A cache that lives as long as the object, for runs without a database."""

    def __init__(self):
        self.vectors: dict[tuple[str, str], bytes] = {}

    def get_many(self, key: str, sha256s: list[str]) -> dict[str, bytes]:
        return {
            sha: self.vectors[(key, sha)]
            for sha in sha256s
            if (key, sha) in self.vectors
        }

    def put_many(self, key: str, vectors: dict[str, bytes]) -> None:
        for sha, vector in vectors.items():
            self.vectors[(key, sha)] = vector
