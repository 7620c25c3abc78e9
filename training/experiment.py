"""The online experiment's decision: champion vs challenger on a business outcome.

Pure functions over counts, so every rule is unit-tested without a server:

- **Outcome per arm**: auto-resolution (the model's turn was answered, not handed off, not
  rephrased, not reopened, not marked wrong or thumbed down), agent-confirmed accuracy (turns
  an agent judged), CSAT (customers' 1-5).
- **Sample-ratio mismatch** (chi-square of the arms' turn counts against the configured share):
  p below `srm_alpha` (0.001, GrowthBook's default) means the split is broken; nothing is
  concluded from broken data, whatever the metric says.
- **Sequential-safe test**: the mixture sequential probability ratio test (mSPRT, Johari et
  al. 2017/2022) on the difference in auto-resolution rates, normal approximation with a
  N(0, tau^2) mixture. Its always-valid p-value may be looked at after every batch of traffic
  (we keep the running minimum across looks) without inflating the false-positive rate, and
  its confidence sequence is the interval we report. Stopping rule: stop and promote when the
  always-valid p < alpha with the challenger ahead; stop and reject when p < alpha with it
  behind, or when both arms reached `max_samples` without a difference; otherwise continue.
- **Guardrails**: the challenger's p95 latency may exceed the champion's by at most
  `max_latency_increase` (relative), its error rate may not pass `max_error_rate`, and its
  agent-confirmed accuracy may not fall below the champion's by more than
  `max_accuracy_drop` (once both arms have `min_judged` judged turns).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from experiments import sequential

NEGATIVE_KINDS = ("rephrase", "handoff_after_answer", "reopen", "answer_wrong")
ANSWERED = ("answer", "task")


@dataclass(frozen=True)
class ExperimentRules:
    alpha: float = 0.05
    srm_alpha: float = 0.001
    tau: float = 0.1  # mixture scale: the size of lift we expect (difference in rates)
    min_samples: int = 100  # per arm before any decision
    max_samples: int = 20_000  # per arm: stop without a winner after this
    max_latency_increase: float = 0.5
    max_error_rate: float = 0.02
    max_accuracy_drop: float = 0.02
    min_judged: int = 30


@dataclass
class Arm:
    arm: str
    version: str | None = None
    turns: int = 0
    auto_resolved: int = 0
    judged: int = 0
    confirmed: int = 0
    csat_sum: float = 0.0
    csat_n: int = 0
    requests: int = 0
    errors: int = 0
    latency_p95_ms: float | None = None

    @property
    def resolution_rate(self) -> float:
        return self.auto_resolved / self.turns if self.turns else 0.0

    @property
    def accuracy(self) -> float | None:
        return self.confirmed / self.judged if self.judged else None

    @property
    def csat(self) -> float | None:
        return self.csat_sum / self.csat_n if self.csat_n else None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def summary(self) -> dict[str, Any]:
        return {**asdict(self), "resolution_rate": round(self.resolution_rate, 4),
                "accuracy": self.accuracy, "csat": self.csat,
                "error_rate": round(self.error_rate, 4)}  # fmt: skip


@dataclass
class Decision:
    action: str  # promote | reject | continue
    reason: str
    lift: float | None = None
    interval: tuple[float, float] | None = None
    p_value: float | None = None
    srm_p: float | None = None
    arms: dict[str, dict] = field(default_factory=dict)

    @property
    def promote(self) -> bool:
        return self.action == "promote"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def srm_p_value(champion: int, challenger: int, share: float) -> float:
    """Chi-square goodness of fit (1 dof) of the observed split against `share`
    (experiments/sequential.py, shared with the campaigns' experiments)."""
    return sequential.srm_p_value(champion, challenger, share)


def msprt(a: Arm, b: Arm, tau: float, alpha: float) -> tuple[float, float, tuple[float, float]]:
    """(lift b - a, always-valid p-value, (1 - alpha) confidence sequence) on resolution."""
    pa, pb = a.resolution_rate, b.resolution_rate
    # a tiny floor keeps the variance positive when a rate is exactly 0 or 1
    var = max(pa * (1 - pa), 1e-4) / max(a.turns, 1) + max(pb * (1 - pb), 1e-4) / max(b.turns, 1)
    p_value, interval = sequential.msprt(pb - pa, var, tau, alpha)
    return pb - pa, p_value, interval


def guardrail_breach(champion: Arm, challenger: Arm, rules: ExperimentRules) -> str | None:
    if challenger.error_rate > rules.max_error_rate:
        return f"challenger error rate {challenger.error_rate:.3f} > {rules.max_error_rate}"
    if champion.latency_p95_ms and challenger.latency_p95_ms:
        limit = champion.latency_p95_ms * (1 + rules.max_latency_increase)
        if challenger.latency_p95_ms > limit:
            return (f"challenger p95 latency {challenger.latency_p95_ms:.1f} ms > "
                    f"{limit:.1f} ms")  # fmt: skip
    if min(champion.judged, challenger.judged) >= rules.min_judged:
        drop = (champion.accuracy or 0.0) - (challenger.accuracy or 0.0)
        if drop > rules.max_accuracy_drop:
            return f"challenger agent-confirmed accuracy {drop:.3f} below the champion's"
    return None


def decide(
    champion: Arm,
    challenger: Arm,
    share: float,
    rules: ExperimentRules,
    previous_p: float | None = None,
) -> Decision:
    """The experiment's verdict now. `previous_p`: the always-valid p-value of the last look
    (the running minimum is what stays valid across looks)."""
    arms = {"champion": champion.summary(), "challenger": challenger.summary()}
    srm = srm_p_value(champion.turns, challenger.turns, share)
    if min(champion.turns, challenger.turns) < rules.min_samples:
        return Decision("continue", f"fewer than {rules.min_samples} turns in an arm",
                        srm_p=srm, arms=arms)  # fmt: skip
    if srm < rules.srm_alpha:
        return Decision("reject", f"sample ratio mismatch: p={srm:.2e} < {rules.srm_alpha} "
                        f"({champion.turns} vs {challenger.turns} at share {share})",
                        srm_p=srm, arms=arms)  # fmt: skip
    lift, p_now, interval = msprt(champion, challenger, rules.tau, rules.alpha)
    p_value = min(p_now, previous_p) if previous_p is not None else p_now
    common = {"lift": lift, "interval": interval, "p_value": p_value, "srm_p": srm, "arms": arms}
    if breach := guardrail_breach(champion, challenger, rules):
        return Decision("reject", f"guardrail: {breach}", **common)
    if p_value < rules.alpha and lift > 0:
        return Decision("promote", f"challenger resolves more: +{lift:.3f}, always-valid "
                        f"p={p_value:.4f} < {rules.alpha}", **common)  # fmt: skip
    if p_value < rules.alpha and lift < 0:
        return Decision("reject", f"challenger loses: {lift:.3f}, p={p_value:.4f}", **common)
    if min(champion.turns, challenger.turns) >= rules.max_samples:
        return Decision("reject", "no difference after max_samples: keep the champion", **common)
    return Decision("continue", f"not conclusive yet (p={p_value:.3f})", **common)


def arms_from_frames(turns: Any, feedback: Any, log: Any = None) -> dict[str, Arm]:
    """Per-arm outcomes from the feedback snapshot (`served_turns`, `feedback` frames of
    crm/streams/feedback.py) and optionally the prediction log (latency, errors)."""
    bad = set(feedback.loc[feedback["kind"].isin(NEGATIVE_KINDS), "prediction_id"].dropna())
    bad |= set(feedback.loc[feedback["thumbs"] == "down", "prediction_id"].dropna())
    arms: dict[str, Arm] = {}
    for arm, rows in turns.groupby(turns["variant"].fillna("champion")):
        versions = rows["model_version"].dropna().astype(str).unique()
        answered = rows["reply_kind"].isin(ANSWERED) & ~rows["handoff"].astype(bool)
        resolved = answered & ~rows["prediction_id"].isin(bad)
        judged = feedback[(feedback["variant"] == arm) & feedback["correct"].notna()
                          & feedback["kind"].str.startswith("intent_")]  # fmt: skip
        csat = feedback[(feedback["variant"] == arm) & feedback["csat"].notna()]
        arms[str(arm)] = Arm(
            str(arm), ",".join(sorted(versions)) or None, turns=len(rows),
            auto_resolved=int(resolved.sum()), judged=len(judged),
            confirmed=int(judged["correct"].astype(int).sum()),
            csat_sum=float(csat["csat"].astype(float).sum()), csat_n=len(csat),
        )  # fmt: skip
    if log is not None and len(log):
        for arm, rows in log.groupby("variant"):
            if str(arm) in arms:
                arms[str(arm)].requests = len(rows)
                arms[str(arm)].latency_p95_ms = float(rows["latency_ms"].quantile(0.95))
    return arms
