"""`GET /twins` refuses a filter that can match nothing, rather than answering an empty list."""

from __future__ import annotations

import pytest

from streams.worker.views import MAX_LIMIT, ListQuery, list_query
from twin.fleet import Fleet


@pytest.mark.parametrize(("query", "says"), [
    ({"sector": "nope"}, "unknown sector 'nope'; known: "),
    ({"site": "mars-01"}, "unknown site 'mars-01'"),
    ({"sector": "retail", "site": "mining-pilbara-01"}, "site 'mining-pilbara-01' is in sector 'mining', not 'retail'"),
    ({"limit": "-5"}, "limit must be a positive whole number"),
    ({"limit": "0"}, "limit must be a positive whole number"),
    ({"limit": "2.5"}, "not '2.5'"),
    ({"limit": "ten"}, "not 'ten'"),
    ({"sectr": "mining"}, "unknown query parameter(s) sectr; known: sector, site, limit"),
])
def test_a_filter_that_can_match_nothing_is_refused_with_the_reason(
        fleet: Fleet, query: dict[str, str], says: str) -> None:
    answer = list_query(query, fleet)
    assert isinstance(answer, str) and says in answer


def test_a_good_query_is_parsed_and_a_large_limit_is_capped(fleet: Fleet) -> None:
    assert list_query({}, fleet) == ListQuery(None, None, 100)
    assert list_query({"sector": "", "site": "", "limit": ""}, fleet) == ListQuery(None, None, 100)  # template gaps
    assert list_query({"sector": "mining", "site": "mining-pilbara-01", "limit": "5"}, fleet) == \
        ListQuery("mining", "mining-pilbara-01", 5)
    assert list_query({"limit": str(MAX_LIMIT * 10)}, fleet) == ListQuery(None, None, MAX_LIMIT)
