"""twin.desired.reachable: the robots a change of the rules can send commands to, by id alone.

Held against `commands_on_change` over every twin: the twins it leaves out never get a command.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_desired_summary import a_change, some_rules, twins
from twin.desired import (DesiredChange, DesiredRules, Selector, add_change, commands_on_change, reachable,
                          robot_share)


@settings(max_examples=300, deadline=None)
@given(some_rules(), st.lists(st.integers(0, 7), min_size=1, max_size=3), st.data())
def test_the_robots_left_out_would_get_no_command(before: DesiredRules, ks: list[int], data: st.DataObject) -> None:
    after = before
    for k in ks:  # the same change ids as `before` may hold: a change replaced, or one added
        after = add_change(after, data.draw(a_change(k)))
    pick = reachable(before, after)
    every = commands_on_change(before, after, twins(), at=100.0)
    kept = [t for t in twins() if pick is None or pick(t.robot_id)]
    assert commands_on_change(before, after, kept, at=100.0) == every


def change(cid: str, selector: Selector) -> DesiredChange:
    return DesiredChange(change_id=cid, ts=1.0, principal="t", reason="t", selector=selector,
                         field="firmware", value="fw-9")


def test_a_wave_reaches_its_share_a_pin_its_robot_a_sector_everyone() -> None:
    ids = [t.robot_id for t in twins()]
    wave = reachable(DesiredRules(), add_change(DesiredRules(), change("w", Selector(model="amr", share=0.5))))
    assert wave is not None and [r for r in ids if wave(r)] == [r for r in ids if robot_share(r) < 0.5]
    assert 0 < sum(map(wave, ids)) < len(ids)
    two = add_change(add_change(DesiredRules(), change("a", Selector(share=0.1))), change("b", Selector(share=0.5)))
    either = reachable(DesiredRules(), two)
    assert either is not None and [r for r in ids if either(r)] == [r for r in ids if robot_share(r) < 0.5]
    pinned = add_change(DesiredRules(), change("p", Selector(robots=(ids[3],), share=0.9)))
    pin = reachable(DesiredRules(), pinned)
    assert pin is not None and [r for r in ids if pin(r)] == [ids[3]]
    same = reachable(pinned, pinned)
    assert same is not None and not any(map(same, ids))  # nothing changed: no robot
    assert reachable(pinned, add_change(pinned, change("s", Selector(sector="mining")))) is None
    # another pin: its robots only (the first pin is not news)
    wider = add_change(pinned, change("q", Selector(robots=(ids[3], ids[5]))))
    both = reachable(pinned, wider)
    assert both is not None and {r for r in ids if both(r)} == {ids[3], ids[5]}
