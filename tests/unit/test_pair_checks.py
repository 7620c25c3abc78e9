"""faq_match checks that need no neural fit: the overlap challenger on real ATEC pairs and the
pair behaviour checks (the siamese bundle trains in tests/integration/test_matching.py)."""

from __future__ import annotations

from tests.support import read_dataset
from training.match_model import clean
from training.text.overlap import OverlapMatcher, best_threshold


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
