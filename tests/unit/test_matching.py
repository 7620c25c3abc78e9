"""faq_match pieces on real ATEC pairs: the overlap challenger and the siamese pyfunc bundle."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch

from tests.support import read_dataset
from training.match_model import QuestionMatcher, clean
from training.text.models import EncoderParams, SiameseMatcher
from training.text.overlap import OverlapMatcher, best_threshold
from training.text.tokenizer import TokenizerParams, build_tokenizer, save_tokenizer
from training.text.train import TrainParams, fit_matcher, predict_proba


def test_overlap_challenger_beats_chance_on_atec() -> None:
    frame = read_dataset("atec_question_matching")
    train = frame[frame.split == "train"].head(4000)
    dev = frame[frame.split == "dev"].head(1500)
    matcher = OverlapMatcher().fit(train.text_a, train.text_b, train.label.astype(int))
    scores = matcher.predict_proba(dev.text_a, dev.text_b)
    labels = dev.label.astype(int).to_numpy()
    threshold, f1 = best_threshold(scores, labels)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(labels, scores) > 0.6
    positive_share = labels.mean()
    # F1 of answering "same" for every pair is 2p/(1+p): the tuned threshold must beat it.
    assert f1 > 2 * positive_share / (1 + positive_share) + 0.02
    assert 0 < threshold < 1


def test_weighting_shifts_the_siamese_towards_positives_and_its_bundle_reloads(tmp_path) -> None:
    """Weighting the positive class (22% of ATEC) moves scores towards "same question" versus
    the same run unweighted (the earlier probe collapsed to "different"); the pyfunc bundle gives
    the trained model's scores."""
    frame = read_dataset("atec_question_matching")
    for column in ("text_a", "text_b"):
        frame[column] = frame[column].map(clean)
    train = frame[frame.split == "train"].head(600)
    dev = frame[frame.split == "dev"].head(200)
    texts = [*train.text_a, *train.text_b, *dev.text_a, *dev.text_b]
    tokenizer = build_tokenizer(texts, tmp_path / "tok", TokenizerParams(3000, 1))
    encoder = EncoderParams(
        hidden=32, layers=1, heads=2, intermediate=64, max_len=32, lstm_hidden=16
    )
    labels = train.label.astype(int)
    weight = float((labels == 0).sum() / (labels == 1).sum())

    def fitted(class_weights):
        torch.manual_seed(0)
        model = SiameseMatcher(encoder, len(tokenizer))
        fit_matcher(
            model,
            tokenizer,
            (train.text_a.tolist(), train.text_b.tolist()),
            labels.tolist(),
            (dev.text_a.tolist(), dev.text_b.tolist()),
            dev.label.astype(int).tolist(),
            32,
            TrainParams(epochs=2, lr=3e-3, batch_size=32),
            class_weights=class_weights,
        )
        a, b = dev.text_a.tolist(), dev.text_b.tolist()
        return model, predict_proba(model, tokenizer, a, 32, b)[:, 1]

    model, scores = fitted([1.0, weight])
    _, unweighted = fitted(None)
    assert scores.mean() > unweighted.mean() + 0.05
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    torch.save(model.state_dict(), bundle / "weights.pt")
    save_tokenizer(tokenizer, bundle)
    config = {"kind": "siamese", "encoder": encoder.__dict__, "max_len": 32, "threshold": 0.5}
    (bundle / "config.json").write_text(json.dumps(config))
    matcher = QuestionMatcher()
    matcher.load(bundle)
    out = matcher.predict(None, pd.DataFrame({"text_a": dev.text_a, "text_b": dev.text_b}))
    np.testing.assert_allclose(out["score"].to_numpy(), scores, rtol=1e-4, atol=1e-5)
    assert (out["label"].to_numpy() == (scores >= 0.5)).all()


def test_pair_checks_catch_an_asymmetric_scorer_and_a_wrong_known_order() -> None:
    """A scorer that reads which side a question is on fails symmetry; one that ranks a known
    paraphrase below a known different pair fails the known-pair check; a symmetric overlap
    score passes both, and trailing punctuation no longer moves it once inputs are cleaned."""
    from training.behaviour import run_pair_checks

    frame = read_dataset("atec_question_matching")
    probe = frame[frame.split == "test"].head(200)
    pairs = list(zip(probe.text_a, probe.text_b, strict=True))
    known = {
        "same": [("花呗怎么还款", "花呗如何还款")],
        "different": [("花呗怎么还款", "借呗额度怎么提升")],
    }

    def jaccard(a: list[str], b: list[str]) -> list[float]:
        out = []
        for x, y in zip(a, b, strict=True):
            sx, sy = set(clean(x)), set(clean(y))
            out.append(len(sx & sy) / max(len(sx | sy), 1))
        return out

    passed = run_pair_checks(jaccard, pairs, 0.4, known, 0.9)
    assert passed.passed, passed.problems
    assert passed.rates["symmetry"] == 1.0 and passed.rates["known_pairs_margin"] > 0

    def one_sided(a: list[str], b: list[str]) -> list[float]:
        return [min(len(x) / 20, 1.0) for x in a]

    failed = run_pair_checks(one_sided, pairs, 0.5, known, 0.9)
    assert any(p.startswith("symmetry") for p in failed.problems)
    assert any("known paraphrase" in p for p in failed.problems)
    assert clean("花呗怎么还款？？") == clean("花呗怎么还款") == "花呗怎么还款"
