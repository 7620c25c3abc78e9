"""The champion gate's decision, the family choice and the confusion figure, on given numbers
(training and the registry round trip: tests/integration/test_training.py)."""

from __future__ import annotations

import pytest

from training.evaluate import confusion_figure
from training.registry import decide

DATASET = "smp2017_ecdt_task1"


@pytest.mark.parametrize(
    ("candidate", "champion", "margin", "blockers", "wins"),
    [
        (0.9, None, 0.0, [], True),
        (0.9, 0.8, 0.0, [], True),
        (0.8, 0.8, 0.0, [], False),  # a tie does not beat the champion
        (0.85, 0.8, 0.1, [], False),
        (0.99, None, 0.0, ["training data did not pass validation"], False),
        (0.99, 0.5, 0.0, ["behaviour: full_width invariance 0.5 < 0.9"], False),
    ],
)
def test_gate_decision(candidate, champion, margin, blockers, wins) -> None:
    wins_now, reason = decide(candidate, champion, margin, blockers)
    assert wins_now is wins
    assert all(blocker in reason for blocker in blockers)


def test_confusion_figure_has_a_row_per_label() -> None:
    figure = confusion_figure(["a", "b", "b"], ["a", "b", "a"], ["a", "b", "c"])
    assert len(figure.axes[0].get_yticklabels()) == 3


def test_a_more_complex_family_needs_a_real_lead_on_dev() -> None:
    from pipelines.text import choose_family

    scores = {"tfidf": 0.9130, "bert_bilstm": 0.2091, "ensemble": 0.9143}
    assert choose_family(scores, min_gain=0.005) == "tfidf"  # one sentence is not a lead
    assert choose_family(scores, min_gain=0.0) == "ensemble"
    assert choose_family({"tfidf": 0.80, "bert_bilstm": 0.86, "ensemble": 0.87}, 0.005) == (
        "ensemble"
    )
