"""Bad options fail fast with a ValueError (or TypeError) naming the option, before any worker."""

from __future__ import annotations

import helpers
import pytest
from conftest import Snapshot

from parmap import ProcessAdapter, pmap


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"chunksize": 0}, "chunksize"),
        ({"chunksize": -3}, "chunksize"),
        ({"chunksize": 2.5}, "chunksize"),
        ({"workers": -2}, "workers"),
        ({"workers": 0}, "workers"),
        ({"workers": True}, "workers"),
        ({"mode": "quantum"}, "mode"),
        ({"mode": 3}, "mode"),
    ],
)
def test_bad_option_is_a_value_error(kwargs: dict[str, object], match: str) -> None:
    before = Snapshot.take()
    with pytest.raises(ValueError, match=match):
        pmap(helpers.square, range(10), **kwargs)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match=match):
        pmap(helpers.square, range(10), lazy=True, **kwargs)  # type: ignore[call-overload]
    assert Snapshot.take().children <= before.children


@pytest.mark.parametrize("kwargs", [{"callback": 3}, {"initializer": "x"}])
def test_non_callables_are_type_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(TypeError, match=next(iter(kwargs))):
        pmap(helpers.square, range(3), **kwargs)  # type: ignore[call-overload]


def test_fn_must_be_callable() -> None:
    with pytest.raises(TypeError, match="fn must be callable"):
        pmap(42, range(3))  # type: ignore[call-overload]


def test_workers_with_an_adapter_instance_is_refused() -> None:
    with pytest.raises(ValueError, match="workers"):
        pmap(helpers.square, range(3), mode=ProcessAdapter(2), workers=4)
