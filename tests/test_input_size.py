"""Large inputs: parsing time grows linearly, and messages quote a bounded part."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import pytest

from federation import resolvers
from federation.errors import InvalidKey

DN = resolvers.DN


def _best_of_three(function: Callable[[], object]) -> float:
    times = []
    gc.disable()  # a collection inside one run would skew the ratio
    try:
        for _ in range(3):
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
    finally:
        gc.enable()
    return min(times)


@pytest.mark.parametrize(
    "shape",
    [
        lambda n: "a=b," * (n // 4) + "c=d",  # many RDNs: one separator per 4 characters
        lambda n: "cn=" + "x\\2c" * (n // 4),  # one long value full of escapes
        lambda n: "+".join(f"cn=v{i}" for i in range(n // 9)),  # one RDN of many values
    ],
    ids=["rdns", "escapes", "values"],
)
def test_dn_parsing_time_is_linear(shape: Callable[[int], str]) -> None:
    """Parsing 4x the text takes about 4x the time (quadratic would be 16x)."""
    n = 150_000
    small, large = shape(n), shape(4 * n)
    ratio = _best_of_three(lambda: DN(large)) / _best_of_three(lambda: DN(small))
    assert ratio < 8, f"parsing 4x the text took {ratio:.1f}x the time"


@pytest.mark.parametrize("kind", ["dn", "integer", "uuid", "uid"])
def test_an_error_about_a_megabyte_quotes_a_little(kind: str) -> None:
    """The message about a 1 MB bad input is one short line."""
    bad = "=" + "9" * 1_000_000
    with pytest.raises(InvalidKey) as caught:
        resolvers.get(kind).parse(bad)
    message = str(caught.value)
    assert len(message) < 500 and "\n" not in message
    assert "1000003 characters" in message
