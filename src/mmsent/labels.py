"""The label set of a task: its class names in their integer order, saved the Hugging Face way (``id2label``).

The label set is data, not code: a run reads it from its training labels (sorted, unless the config or the dataset's
reader fixes an order) and saves it with every model, so every consumer -- metrics, report, prediction files, the
server's schema -- takes the class names from the run. :data:`LABELS` is the three-class sentiment order of the lab
format and the MVSA readers, kept as the default so the reference data's numbers never move.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

LABELS: tuple[str, ...] = ("positive", "neutral", "negative")
_INDEX = {name: i for i, name in enumerate(LABELS)}
MAX_LABELS = 1000  # a sanity bound: more "classes" than this is a column of ids or free text, not labels
_FORBIDDEN = set(",\n\r\t\"")  # the characters a label cannot hold: they would break the guid,tag files it goes into


def label_to_index(label: str) -> int:
    """Maps a label name to its index in :data:`LABELS`; KeyError if it is not one of them."""
    return _INDEX[label]


def index_to_label(index: int) -> str:
    """Maps an index of :data:`LABELS` back to its label name."""
    return LABELS[index]


class LabelError(ValueError):
    """A label set that cannot be used, or a label outside a task's label set."""


def sentiment_order(seen: Iterable[str]) -> tuple[str, ...] | None:
    """The sentiment order (positive, neutral, negative) of the classes seen, if they are sentiment classes only."""
    seen = set(seen)
    return tuple(name for name in LABELS if name in seen) if seen and seen <= set(LABELS) else None


def check_label_name(name: Any, where: str) -> str:
    """``name`` as a label, or :class:`LabelError` saying why it cannot be one (``where`` names its source)."""
    if not isinstance(name, str) or not name.strip():
        raise LabelError(f"{where}: a label must be a non-empty string, got {name!r}")
    if name != name.strip() or _FORBIDDEN & set(name):
        raise LabelError(f"{where}: label {name!r} has surrounding spaces, a comma, a quote, a tab or a line break; "
                         "rename it (prediction files are comma-separated)")
    if name.lower() in ("null", "none", ""):
        raise LabelError(f"{where}: {name!r} marks an unlabelled row and cannot be a class name")
    return name


@dataclass(frozen=True)
class LabelSet:
    """The class names of a task, in the order of the models' outputs.

    Behaves like a tuple of names (``len``, iteration, ``in``, indexing by position) and maps names to indices.
    """

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        names = tuple(self.names)
        object.__setattr__(self, "names", names)
        for i, name in enumerate(names):
            check_label_name(name, f"label {i}")
        if len(set(names)) != len(names):
            repeated = sorted({n for n in names if names.count(n) > 1})
            raise LabelError(f"the label set repeats {repeated}; each class must be named once")
        if not 2 <= len(names) <= MAX_LABELS:
            raise LabelError(f"a task needs 2 to {MAX_LABELS} classes, got {len(names)}: {list(names)[:10]}")

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __getitem__(self, index: int) -> str:
        return self.names[index]

    def index(self, name: str) -> int:
        """The class index of ``name``; :class:`LabelError` naming the set if it is not one of them."""
        try:
            return self.names.index(name)
        except ValueError:
            raise LabelError(f"label {name!r} is not one of this task's labels {list(self.names)}") from None

    @property
    def id2label(self) -> dict[int, str]:
        """``{0: name, ...}``, as in a Hugging Face model config."""
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        """``{name: 0, ...}``, as in a Hugging Face model config."""
        return {name: i for i, name in enumerate(self.names)}

    def to_json(self) -> dict[str, dict[str, Any]]:
        """``{"id2label": {"0": name, ...}, "label2id": {name: 0, ...}}``: JSON keys are strings, as HF writes them."""
        return {"id2label": {str(i): n for i, n in enumerate(self.names)}, "label2id": self.label2id}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str) -> LabelSet:
        """The label set of a saved ``id2label`` (and ``label2id``, checked against it when present)."""
        id2label = data.get("id2label")
        if not isinstance(id2label, Mapping) or not id2label:
            raise LabelError(f"{where}: 'id2label' is missing or not a mapping of class indices to names")
        try:
            keys = sorted(int(k) for k in id2label)
        except (TypeError, ValueError):
            raise LabelError(f"{where}: 'id2label' keys must be class indices 0..n-1, got {list(id2label)}") from None
        if keys != list(range(len(keys))):
            raise LabelError(f"{where}: 'id2label' keys must be 0..{len(keys) - 1}, got {keys}")
        labels = cls(tuple(id2label[k] if k in id2label else id2label[str(k)] for k in keys))
        label2id = data.get("label2id")
        if label2id is not None and dict(label2id) != labels.label2id:
            raise LabelError(f"{where}: 'label2id' {dict(label2id)} disagrees with 'id2label' {labels.id2label}")
        return labels

    @classmethod
    def of_labels(cls, labels: Iterable[str]) -> LabelSet:
        """The classes of ``labels``: in the sentiment order where they are sentiment classes, else sorted."""
        seen = set(labels)
        return cls(sentiment_order(seen) or tuple(sorted(seen)))

    @classmethod
    def from_training(cls, labels: Iterable[str], order: Sequence[str] | None = None) -> LabelSet:
        """The label set of the training labels: ``order`` where given (it must cover them), sorted otherwise.

        Raises:
            LabelError: a training label outside ``order``, or a class of ``order`` with no training row.
        """
        seen = set(labels)
        if order is None:
            return cls(tuple(sorted(seen)))
        fixed = cls(tuple(order))
        extra = sorted(seen - set(fixed))
        if extra:
            raise LabelError(f"the training rows hold labels {extra} outside the label set {list(fixed)}; add them "
                             "to data.labels or fix the rows")
        empty = [n for n in fixed if n not in seen]
        if empty:
            raise LabelError(f"class(es) {empty} of the label set {list(fixed)} have no training row; a model cannot "
                             "learn a class it never sees: add rows or drop the class from data.labels")
        return fixed

    def require_same(self, other: LabelSet, mine: str, theirs: str) -> None:
        """:class:`LabelError` naming both sides when ``other`` differs from this set (names or order)."""
        if self.names != other.names:
            raise LabelError(f"{theirs} has labels {list(other.names)} but {mine} has {list(self.names)}; its "
                             "outputs would be mislabelled: use a model trained on these labels")


LabelsLike = Union[LabelSet, Sequence[str]]
DEFAULT_LABELS = LabelSet(LABELS)


def as_label_set(labels: LabelsLike | None) -> LabelSet:
    """``labels`` as a :class:`LabelSet`; None is the three-class sentiment default."""
    if labels is None:
        return DEFAULT_LABELS
    return labels if isinstance(labels, LabelSet) else LabelSet(tuple(labels))
