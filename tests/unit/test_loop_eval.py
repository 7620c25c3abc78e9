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


def test_test_set_rates_count_only_confident_right_answers() -> None:
    import numpy as np
    import pandas as pd

    from pipelines.loop_eval import test_set_rates

    class Fixed:  # answers "a" with the text's length as confidence
        threshold = 5

        def predict(self, texts):
            return np.array(["a"] * len(texts)), np.array([len(t) for t in texts])

    data = {"known_test": pd.DataFrame({"text": ["long enough", "tiny", "long again"],
                                        "label": ["a", "a", "b"]}),
            "new_test": pd.DataFrame({"text": ["abcdef"], "label": ["a"]})}  # fmt: skip
    rates = test_set_rates(Fixed(), data)  # type: ignore[arg-type]
    assert rates == {"known_test_accuracy": 0.6667, "new_test_accuracy": 1.0,
                     "known_test_correct_auto_answer_rate": 0.3333,
                     "new_test_correct_auto_answer_rate": 1.0}  # fmt: skip
