"""The promotion gate: a registered version becomes `champion` only when it earns it.

Every candidate is registered (so the registry shows the full history), but the `champion`
alias, which serving follows, moves only if the data passed validation and the candidate beats
the current champion on the same frozen test set by more than `min_improvement`. A candidate
that does not gets the `challenger` alias and the reason as a tag. Nor does a candidate whose
artifact does not load (corrupted or half-written after it was evaluated): serving would fail
to load it and keep the old version anyway, so the gate refuses it up front (issue 26).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass
class Promotion:
    model_name: str
    version: str
    alias: str
    candidate_score: float
    champion_version: str | None
    champion_score: float | None
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def current_champion(client: MlflowClient, name: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def decide(
    candidate: float, champion: float | None, min_improvement: float, blockers: list[str]
) -> tuple[bool, str]:
    """`blockers`: reasons found before scoring (invalid data, failed behavioural checks)."""
    if blockers:
        return False, "; ".join(blockers)
    if champion is None:
        return True, "no champion yet"
    if candidate > champion + min_improvement:
        return True, f"beats champion {candidate:.4f} > {champion:.4f} + {min_improvement}"
    return False, f"does not beat champion: {candidate:.4f} <= {champion:.4f} + {min_improvement}"


def load_problem(model_uri: str) -> str | None:
    """Why the artifact at `model_uri` cannot be served (None: it loads as serving loads it)."""
    import mlflow

    try:
        mlflow.pyfunc.load_model(model_uri)
    except Exception as error:  # whatever a broken artifact raises, it blocks promotion
        line = (str(error).strip().splitlines() or [""])[-1][:200]
        return f"the artifact does not load ({type(error).__name__}: {line})"
    return None


def register_and_gate(
    model_uri: str,
    name: str,
    candidate_score: float,
    score_champion: Callable[[str], float],
    min_improvement: float,
    blockers: list[str],
    tags: dict[str, str],
    check: Callable[[str], str | None] = load_problem,
) -> Promotion:
    """Register `model_uri` under `name` and move `champion` to it only if it wins.

    `score_champion(model_uri)` scores a model on the same frozen test set as the candidate;
    `check(model_uri)` says why the candidate cannot be served (it is then a blocker).
    """
    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name)
    champion_version = current_champion(client, name)
    champion_score = (
        score_champion(f"models:/{name}/{champion_version}") if champion_version else None
    )
    problem = check(model_uri)
    blockers = [*blockers, problem] if problem else blockers
    new = client.create_model_version(name, model_uri, tags=tags)
    wins, reason = decide(candidate_score, champion_score, min_improvement, blockers)
    alias = CHAMPION if wins else CHALLENGER
    client.set_registered_model_alias(name, alias, new.version)
    client.set_model_version_tag(name, new.version, "promotion", reason)
    return Promotion(
        name, str(new.version), alias, candidate_score, champion_version, champion_score, reason
    )
