"""`POST /desired` bodies: a good one becomes one checked change per field; a bad one is refused
with one sentence that says which part is wrong and why (and so is never published)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streams.worker.control_views import MAX_FIELDS, BadDesire, change_view, parse_desire
from twin.desired import DesiredChange, Selector, change_key, decode_change, encode_change
from twin.fleet import Fleet

TS, ID = 1_760_000_000.123, "0" * 32


def parse(body: Any, fleet: Fleet, principal: str = "operator") -> tuple[DesiredChange, ...]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_desire(raw, fleet, principal, TS, ID)


def test_one_change_per_field_sharing_the_id_time_principal_and_reason(fleet: Fleet) -> None:
    changes = parse({"selector": {"model": "amr", "sector": "logistics"}, "reason": " canary of 2.5 ",
                     "fields": {"ai_model": "policy-2.5.0", "config.safety_profile": "cautious", "firmware": None}},
                    fleet, principal="alice")
    assert [(c.field, c.value) for c in changes] == [
        ("ai_model", "policy-2.5.0"), ("config.safety_profile", "cautious"), ("firmware", None)]
    for c in changes:
        assert (c.change_id, c.ts, c.principal, c.reason) == (ID, TS, "alice", "canary of 2.5")
        assert c.selector == Selector(model="amr", sector="logistics")
        assert decode_change(encode_change(c)) == c
    assert len({change_key(c) for c in changes}) == 3  # one compaction key per field


def test_the_whole_fleet_and_explicit_robots_and_waves_are_selectors_too(fleet: Fleet) -> None:
    (whole,) = parse({"selector": {}, "fields": {"firmware": "fw-1.9.0"}, "reason": "security fix"}, fleet)
    assert whole.selector == Selector()
    (wave,) = parse({"selector": {"model": "amr", "version": "policy-2.4.0", "share": 0.05,
                                  "robots": ["r-2", "r-1"]}, "fields": {"ai_model": "policy-2.5.0"},
                     "reason": "canary"}, fleet)
    assert wave.selector.share == 0.05 and wave.selector.robots == ("r-2", "r-1")
    shown = change_view(wave)
    assert shown["selector"] == {"robots": ["r-2", "r-1"], "model": "amr", "version": "policy-2.4.0", "share": 0.05}
    assert (shown["change_id"], shown["principal"], shown["value"], shown["plan"]) == (ID, "operator", "policy-2.5.0", "")


GOOD: dict[str, Any] = {"selector": {"model": "amr"}, "fields": {"ai_model": "policy-2.5.0"}, "reason": "canary"}


@pytest.mark.parametrize(("body", "code", "says"), [
    (b"{not json", "bad_request", "not JSON"),
    (b"\xff\xfe", "bad_request", "not JSON"),
    ([GOOD], "bad_request", "must be a JSON object"),
    ({**GOOD, "why": "x"}, "bad_request", "unknown key(s) 'why'"),
    ({"fields": GOOD["fields"], "reason": "x"}, "bad_request", "lacks selector"),
    ({"selector": {}, "fields": {"ai_model": "policy-2.5.0"}}, "bad_request", "lacks reason"),
    ({**GOOD, "selector": {"modle": "amr"}}, "bad_selector", "unknown field `modle`"),
    ({**GOOD, "selector": {"share": "half"}}, "bad_selector", "at `selector.share`"),
    ({**GOOD, "selector": "amr"}, "bad_selector", "Expected `object`"),
    ({**GOOD, "selector": {"model": "amr", "share": 0}}, "bad_selector", "share must be in (0, 1]"),
    ({**GOOD, "selector": {"model": "amr", "share": 1.5}}, "bad_selector", "share must be in (0, 1]"),
    ({**GOOD, "selector": {"sector": "atlantis"}}, "bad_selector", "unknown sector 'atlantis'"),
    ({**GOOD, "selector": {"site": "moon-01"}}, "bad_selector", "unknown site 'moon-01'"),
    ({**GOOD, "selector": {"model": "tank"}}, "bad_selector", "unknown robot model 'tank'"),
    ({**GOOD, "selector": {"sector": "mining", "model": "humanoid"}}, "bad_selector", "not deployed"),
    ({**GOOD, "selector": {"robots": ["no spaces"]}}, "bad_selector", "not a robot id"),
    ({**GOOD, "fields": {"ai_modle": "policy-2.5.0"}}, "unknown_field", "'ai_modle' is not desirable"),
    ({**GOOD, "fields": {"config.return_home_soc_pct": "20"}}, "unknown_field", "declares"),
    ({**GOOD, "selector": {"sector": "agriculture"}, "fields": {"config.return_home_soc_pct": "20"}},
     "unknown_field", "do not declare"),
    ({**GOOD, "fields": {"ai_model": "policy-9.9.9"}}, "bad_value", "allowed: policy-2.3.1"),
    ({**GOOD, "fields": {"config.max_speed_mps": "9"}}, "bad_value", "outside [0.1, 2.0]"),
    ({**GOOD, "fields": {"config.max_speed_mps": "fast"}}, "bad_value", "not a float"),
    ({**GOOD, "fields": {"config.safety_profile": "reckless"}}, "bad_value", "allowed: standard, cautious"),
    ({**GOOD, "fields": {"ai_model": 2.5}}, "bad_value", "a string value, or null"),
    ({**GOOD, "fields": {}}, "bad_request", "fields is empty"),
    ({**GOOD, "fields": {f"config.x{i}": "1" for i in range(MAX_FIELDS + 1)}}, "bad_request", "at most"),
    ({**GOOD, "reason": "  "}, "bad_value", "reason must be a non-empty string"),
    ({**GOOD, "reason": 7}, "bad_value", "reason must be a non-empty string"),
    ({**GOOD, "reason": "x" * 1001}, "bad_value", "over 1000 characters"),
    (b" " * (64 * 1024 + 1), "bad_request", "over 64 KiB"),
])
def test_a_bad_body_says_which_part_and_why(fleet: Fleet, body: Any, code: str, says: str) -> None:
    with pytest.raises(BadDesire) as err:
        parse(body, fleet)
    assert err.value.code == code and says in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


def test_one_bad_field_refuses_the_whole_request(fleet: Fleet) -> None:
    with pytest.raises(BadDesire, match="firmware='fw-0.1'"):
        parse({**GOOD, "fields": {"ai_model": "policy-2.5.0", "firmware": "fw-0.1"}}, fleet)
