"""Which rules `RenderedReads` may answer itself: only where werkzeug could not have picked
another rule for the same path."""

from __future__ import annotations

import pytest

from fleet_shared.http.resources import _segments_pattern


def test_a_string_parameter_matches_one_non_empty_segment() -> None:
    pattern = _segments_pattern("/v1/products/<string:sku>", ["/v1/products"])
    assert pattern is not None
    assert pattern.match("/v1/products/A-1")["sku"] == "A-1"  # type: ignore[index]
    assert pattern.match("/v1/products/é\n€")["sku"] == "é\n€"  # type: ignore[index]
    for path in ("/v1/products/", "/v1/products/A/", "/v1/products/A/b", "/v1//products/A",
                 "/v1/products", "/x/v1/products/A"):
        assert pattern.match(path) is None, path


@pytest.mark.parametrize("rule", ["/v1/products/<int:sku>", "/v1/products/<path:sku>",
                                  "/v1/products/<string(length=3):sku>", "/v1/p-<sku>"])
def test_other_converters_stay_on_flask(rule: str) -> None:
    assert _segments_pattern(rule, []) is None


@pytest.mark.parametrize("other", ["/v1/products/search", "/v1/<kind>/<sku>",
                                   "/v1/products/<uuid:id>", "/<path:anything>",
                                   "/v1/<path:rest>"])
def test_a_rule_another_could_match_stays_on_flask(other: str) -> None:
    assert _segments_pattern("/v1/products/<sku>", [other]) is None


@pytest.mark.parametrize("other", ["/v1/products", "/v1/products/<sku>/adjustments",
                                   "/v1/reservations/<uuid:id>", "/static/<path:filename>",
                                   "/v1/products/<sku>/<path:rest>", "/metrics"])
def test_rules_that_cannot_match_the_same_path_do_not_matter(other: str) -> None:
    assert _segments_pattern("/v1/products/<sku>", [other]) is not None
