"""The scenario's moving parts (the full run is `scrm eval loop`, ~1 min: not a unit test)."""

from __future__ import annotations

from pipelines.loop_eval import Phase, arm_of


def test_arms_are_sticky_per_customer_and_near_the_share() -> None:
    arms = [arm_of(f"c{i}", 0.5) for i in range(4000)]
    assert arms == [arm_of(f"c{i}", 0.5) for i in range(4000)]
    assert 0.45 < arms.count("challenger") / 4000 < 0.55


def test_phase_rates_separate_new_and_known_intents() -> None:
    phase = Phase()
    for new, answered, right in [(False, True, True), (False, True, False), (True, True, True),
                                 (True, False, False)]:  # fmt: skip
        phase.add(new, answered, right)
    summary = phase.summary()
    assert summary["correct_auto_answer_rate"] == 0.5
    assert summary["new_intent_correct_auto_answer_rate"] == 0.5
    assert summary["known_intent_correct_auto_answer_rate"] == 0.5
    assert summary["auto_answer_rate"] == 0.75
