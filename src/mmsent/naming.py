"""How mmsent keys the names users type, in one torch-free place: config checks and the registries agree."""

from __future__ import annotations


def fusion_key(name: str) -> str:
    """A fusion design's name as the registry keys it: case, surrounding spaces and ``-`` for ``_`` are forgiven."""
    return name.strip().lower().replace("-", "_")
