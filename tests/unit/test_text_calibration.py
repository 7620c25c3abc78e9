"""CRF decoding under BIO constraints, temperature scaling, ECE and the abstain threshold,
on hand-made numbers (the training loops run in tests/integration/test_text_models.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchcrf import CRF

from training.text.calibration import (
    expected_calibration_error,
    fit_temperature,
    nll,
    tune_abstain_threshold,
)
from training.text.models import (
    EncoderParams,
    SequenceTagger,
    forbid_invalid_bio,
)

TINY = EncoderParams(hidden=32, layers=1, heads=2, intermediate=64, max_len=64, lstm_hidden=16)


def test_crf_decode_follows_emissions_and_bio_constraints() -> None:
    torch.manual_seed(0)
    tagger = SequenceTagger(feature_size=4, num_tags=3, use_crf=True)
    with torch.no_grad():
        tagger.crf.transitions.zero_()
        tagger.crf.start_transitions.zero_()
        tagger.crf.end_transitions.zero_()
    emissions = torch.randn(2, 5, 3)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    paths = tagger.decode(emissions, mask)
    assert paths[0] == emissions[0].argmax(-1).tolist()  # no transition scores: plain argmax
    assert paths[1] == emissions[1, :3].argmax(-1).tolist()
    # O, B-x, I-x: emissions prefer I-x everywhere, which is only legal after B-x.
    crf = CRF(3, batch_first=True)
    with torch.no_grad():
        for parameter in (crf.transitions, crf.start_transitions, crf.end_transitions):
            parameter.zero_()
    forbid_invalid_bio(crf, ["O", "B-x", "I-x"])
    prefers_inside = torch.tensor([[[0.0, 1.0, 3.0], [0.0, 1.0, 3.0], [0.0, 1.0, 3.0]]])
    assert crf.decode(prefers_inside) == [[1, 2, 2]]


def test_temperature_scaling_fixes_an_overconfident_model() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=2000)
    predicted = np.where(rng.random(2000) < 0.7, labels, (labels + 1) % 4)  # 70% accurate
    logits = 8.0 * np.eye(4)[predicted] + rng.normal(0, 0.5, size=(2000, 4))  # ~100% sure
    temperature = fit_temperature(logits, labels)
    assert temperature > 1.5
    assert nll(logits, labels, temperature) < 0.5 * nll(logits, labels)
    calibrated = np.exp(logits / temperature)
    calibrated /= calibrated.sum(1, keepdims=True)
    raw = np.eye(4)[predicted] * 0.999 + 0.00025
    assert expected_calibration_error(calibrated, labels) < expected_calibration_error(raw, labels)


def test_ece_matches_a_hand_computed_example() -> None:
    # confidences 0.93 (right) and 0.91 (wrong) share bin (13/15, 14/15]; 0.62 wrong; 0.71 right
    probs = np.array([[0.93, 0.07], [0.91, 0.09], [0.38, 0.62], [0.29, 0.71]])
    labels = np.array([0, 1, 0, 1])
    expected = 2 / 4 * abs(0.5 - 0.92) + 1 / 4 * abs(0 - 0.62) + 1 / 4 * abs(1 - 0.71)
    assert expected_calibration_error(probs, labels, bins=15) == pytest.approx(expected)
    assert expected_calibration_error(np.array([[1.0, 0.0]]), np.array([0])) == 0.0


def test_abstain_threshold_keeps_precision_and_maximises_coverage() -> None:
    confidence = np.array([0.99, 0.95, 0.9, 0.9, 0.8, 0.7, 0.6])
    correct = np.array([1, 1, 1, 1, 0, 1, 0], dtype=bool)
    probs = np.stack([confidence, 1 - confidence], axis=1)
    labels = np.where(correct, 0, 1)
    chosen = tune_abstain_threshold(probs, labels, target_precision=0.8)
    assert chosen.threshold == pytest.approx(0.7)  # 5 of 6 right = 0.83; adding 0.6 gives 0.71
    assert chosen.coverage == pytest.approx(6 / 7) and chosen.met
    strict = tune_abstain_threshold(probs, labels, target_precision=1.0)
    assert strict.threshold == pytest.approx(0.9) and strict.coverage == pytest.approx(4 / 7)
    assert not tune_abstain_threshold(probs, 1 - labels, target_precision=0.9).met
