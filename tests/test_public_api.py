"""The names promised at the top of the package resolve to the real objects."""

from __future__ import annotations

import pytest

import mmsent


@pytest.mark.parametrize("name", [n for n in mmsent.__all__ if n != "__version__"])
def test_every_exported_name_resolves(name):
    assert getattr(mmsent, name) is not None


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError):
        mmsent.no_such_thing  # noqa: B018
