"""The three sentiment classes and their fixed integer order."""

from __future__ import annotations

LABELS: tuple[str, ...] = ("positive", "neutral", "negative")
_INDEX = {name: i for i, name in enumerate(LABELS)}


def label_to_index(label: str) -> int:
    """Maps a label name to its class index; KeyError if it is not one of :data:`LABELS`."""
    return _INDEX[label]


def index_to_label(index: int) -> str:
    """Maps a class index back to its label name."""
    return LABELS[index]
