"""CheckList-style behavioural tests a candidate must pass before it may become champion.

Accuracy on a test split says nothing about how a model treats inputs the split happens not to
contain. These are the behaviours customer messages exercise every day: trailing punctuation,
full-width vs half-width characters (IME settings differ per device), very short messages, and
a handful of examples whose answer is not negotiable.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

Predict = Callable[[list[str]], list[str]]
PUNCTUATION = ("。", "！", "?", "？？", "...")


def to_full_width(text: str) -> str:
    """Half-width ASCII letters, digits and punctuation -> their full-width forms."""
    return "".join(
        chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else "\u3000" if c == " " else c for c in text
    )


def to_half_width(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


@dataclass
class BehaviourReport:
    """Pass rates per check and the failures (a few, for the log), plus the verdict."""

    rates: dict[str, float] = field(default_factory=dict)
    failures: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def invariance(predict: Predict, texts: Sequence[str], perturb: Callable[[str], str]) -> tuple:
    texts = list(texts)
    before, after = predict(texts), predict([perturb(t) for t in texts])
    changed = [f"{t!r}: {a} -> {b}" for t, a, b in zip(texts, before, after, strict=True) if a != b]
    return 1 - len(changed) / max(len(texts), 1), changed[:5]


def run_behaviour_checks(
    predict: Predict,
    texts: Sequence[str],
    known: dict[str, str],
    min_invariance: float,
) -> BehaviourReport:
    """`texts`: real test messages to perturb; `known`: text -> required label."""
    report = BehaviourReport()
    checks = {
        "punctuation": lambda t: t.rstrip("。.!！?？") + PUNCTUATION[len(t) % len(PUNCTUATION)],
        "full_width": to_full_width,
        "half_width": to_half_width,
    }
    for name, perturb in checks.items():
        rate, failures = invariance(predict, texts, perturb)
        report.rates[name] = rate
        report.failures[name] = failures
        if rate < min_invariance:
            report.problems.append(f"{name} invariance {rate:.3f} < {min_invariance}")
    short = [t[:2] for t in texts if len(t) >= 2][:50]
    answers = predict(short)
    report.rates["short_texts_answered"] = sum(bool(a) for a in answers) / max(len(short), 1)
    if report.rates["short_texts_answered"] < 1.0:
        report.problems.append("some short texts got no answer")
    if known:
        predicted = predict(list(known))
        wrong = [f"{t!r}: {p} != {known[t]}" for t, p in zip(known, predicted, strict=True)
                 if p != known[t]]  # fmt: skip
        report.rates["known_examples"] = 1 - len(wrong) / len(known)
        report.failures["known_examples"] = wrong
        if wrong:
            report.problems.append(f"known examples wrong: {'; '.join(wrong)}")
    return report


# --- question matching (faq_match) -----------------------------------------------------------

PairScore = Callable[[list[str], list[str]], Sequence[float]]


def _pair_invariance(
    score: PairScore,
    pairs: Sequence[tuple[str, str]],
    threshold: float,
    perturb: Callable[[str, str], tuple[str, str]],
) -> tuple[float, float, list[str]]:
    """(share of pairs whose same/different decision survives, mean |score change|, failures)."""
    a, b = [p[0] for p in pairs], [p[1] for p in pairs]
    changed = [perturb(x, y) for x, y in pairs]
    before = list(score(a, b))
    after = list(score([c[0] for c in changed], [c[1] for c in changed]))
    flips = [
        f"{x!r} / {y!r}: {s:.3f} -> {t:.3f}"
        for (x, y), s, t in zip(pairs, before, after, strict=True)
        if (s >= threshold) != (t >= threshold)
    ]
    drift = sum(abs(s - t) for s, t in zip(before, after, strict=True)) / max(len(pairs), 1)
    return 1 - len(flips) / max(len(pairs), 1), drift, flips[:5]


def run_pair_checks(
    score: PairScore,
    pairs: Sequence[tuple[str, str]],
    threshold: float,
    known: dict[str, Sequence[tuple[str, str]]],
    min_invariance: float,
) -> BehaviourReport:
    """Checks of a pair scorer P(same question | a, b) with decision `threshold`.

    The same question asked twice must get the same decision whichever side it is on
    (symmetry: a siamese head reads [u, v, |u-v|, u*v], which is not symmetric by
    construction), with trailing punctuation, and in full-width forms; and every known
    paraphrase pair (`known["same"]`) must score above every known different pair."""
    report = BehaviourReport()
    punctuation = PUNCTUATION  # one suffix per text, chosen by its length (reproducible)
    checks = {
        "symmetry": lambda x, y: (y, x),
        "punctuation": lambda x, y: (
            x.rstrip("。.!！?？") + punctuation[len(x) % len(punctuation)],
            y.rstrip("。.!！?？") + punctuation[len(y) % len(punctuation)],
        ),
        "full_width": lambda x, y: (to_full_width(x), to_full_width(y)),
    }
    for name, perturb in checks.items():
        rate, drift, failures = _pair_invariance(score, pairs, threshold, perturb)
        report.rates[name] = rate
        report.rates[f"{name}_mean_score_change"] = drift
        report.failures[name] = failures
        if rate < min_invariance:
            report.problems.append(f"{name} invariance {rate:.3f} < {min_invariance}")
    same, different = list(known.get("same", [])), list(known.get("different", []))
    if same and different:
        scored = list(score([p[0] for p in same + different], [p[1] for p in same + different]))
        lowest_same, highest_different = min(scored[: len(same)]), max(scored[len(same) :])
        report.rates["known_pairs_margin"] = lowest_same - highest_different
        if lowest_same <= highest_different:
            report.problems.append(
                f"a known paraphrase scored {lowest_same:.3f}, not above a known different "
                f"pair ({highest_different:.3f})"
            )
    return report
