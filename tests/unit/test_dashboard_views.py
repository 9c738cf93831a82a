"""The dashboard's page filters, without a server."""

from __future__ import annotations

import pytest

pytest.importorskip("jinja2", reason="needs the dashboard extra")

from fleet.dashboard.views import TEMPLATES  # noqa: E402


@pytest.mark.parametrize("size_bytes,shown", [(0, "0 B"), (999, "999 B"), (3418, "3.4 kB"),
                                              (2_500_000, "2.5 MB"), (64 * 2**30, "68.7 GB"),
                                              (None, "-")])
def test_a_size_is_shown_in_the_unit_that_shows_it(size_bytes, shown):
    """A log of a few kB reads as kB, not as 0.0 MB."""
    assert TEMPLATES.filters["size"](size_bytes) == shown
