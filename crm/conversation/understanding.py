"""What the dialogue needs from the models, as two small protocols.

The dialogue package holds no model logic: it sees an `Analysis` of each message and scores
for candidate questions. Production implementations call the Serve endpoints (`/v1/analyze`)
and the registered `faq_match` model; tests plug in a trained TF-IDF model or a fake.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Entity:
    """One mention from the entity extractor: `type` is e.g. mobile, bank_card, date, time,
    city or branch; `text` is the surface form."""

    type: str
    text: str


@dataclass(frozen=True)
class Analysis:
    """The analyzer's view of one message (intent is `unknown` below the model threshold)."""

    intent: str
    intent_confidence: float
    in_scope: bool
    sentiment: str | None = None
    sentiment_confidence: float = 0.0
    entities: tuple[Entity, ...] = field(default_factory=tuple)
    # Which prediction this is (the prediction-log request id) and who made it: feedback on
    # the turn names them, so a label is traceable to a model version and an A/B arm.
    prediction_id: str | None = None
    model: str | None = None
    model_version: str | None = None
    variant: str | None = None


@runtime_checkable
class Understanding(Protocol):
    def analyze(self, text: str) -> Analysis: ...


@runtime_checkable
class QuestionMatcher(Protocol):
    def score(self, question: str, candidates: list[str]) -> list[float]:
        """Similarity in [0, 1] of `question` to each candidate (same order)."""
        ...


def analysis_from_json(body: dict[str, Any]) -> Analysis:
    """Parse the gateway's `/v1/analyze` answer.

    Accepts `{"intent": {...IntentResponse}, "sentiment": {"label", "confidence"},
    "entities": [{"type"|"label", "text"}]}`; missing parts count as unknown/neutral.
    """
    intent = body.get("intent") or {}
    sentiment = body.get("sentiment") or {}
    entities = tuple(
        Entity(type=str(e.get("type") or e.get("label")), text=str(e.get("text", "")))
        for e in body.get("entities") or []
    )
    return Analysis(
        intent=str(intent.get("label", "unknown")),
        intent_confidence=float(intent.get("confidence", 0.0)),
        in_scope=bool(intent.get("in_scope", False)),
        sentiment=sentiment.get("label"),
        sentiment_confidence=float(sentiment.get("confidence", 0.0)),
        entities=entities,
    )


class HttpUnderstanding:
    """Production `Understanding`: one POST to the gateway's `/v1/analyze` per message."""

    def __init__(self, base_url: str, timeout_s: float = 5.0, transport: Any = None):
        import httpx

        self.client = httpx.Client(base_url=base_url, timeout=timeout_s, transport=transport)

    def analyze(self, text: str) -> Analysis:
        response = self.client.post("/v1/analyze", json={"text": text})
        response.raise_for_status()
        return analysis_from_json(response.json())


class PyfuncUnderstanding:
    """In-process `Understanding` over registered classifiers (mlflow.pyfunc models whose
    predict takes a `text` column and returns `label`, `confidence`, `in_scope`).

    `intent` is required; `sentiment` is optional (no sentiment: neutral). Entities come from
    the gateway's extractor, so this one reports none.
    """

    def __init__(self, intent: Any, sentiment: Any | None = None):
        self.intent, self.sentiment = intent, sentiment

    @staticmethod
    def _first(model: Any, text: str) -> dict[str, Any]:
        import pandas as pd

        return model.predict(pd.DataFrame({"text": [text]})).iloc[0].to_dict()

    def analyze(self, text: str) -> Analysis:
        intent = self._first(self.intent, text)
        sentiment = self._first(self.sentiment, text) if self.sentiment else {}
        return Analysis(
            intent=str(intent["label"]),
            intent_confidence=float(intent["confidence"]),
            in_scope=bool(intent["in_scope"]),
            sentiment=sentiment.get("label", "neutral") if sentiment else "neutral",
            sentiment_confidence=float(sentiment.get("confidence", 0.0)) if sentiment else 0.0,
        )


class RegistryMatcher:
    """The registered `faq_match` pair model (mlflow.pyfunc), loaded in this process.

    Expects a model taking a frame with `text_a`, `text_b` and returning a probability column
    (`score`, `probability` or the first numeric column) per pair. Used where no gateway runs
    (reports, tests); the gateway asks its `faq_match` deployment instead (`HandleMatcher`).
    """

    def __init__(
        self, model_uri: str = "models:/faq_match@champion", tracking_uri: str | None = None
    ):
        import mlflow
        import mlflow.pyfunc

        if tracking_uri:
            mlflow.set_tracking_uri(tracking_uri)
        self.model_uri = model_uri
        self.model = mlflow.pyfunc.load_model(model_uri)

    def score(self, question: str, candidates: list[str]) -> list[float]:
        return self.score_pairs([(question, candidate) for candidate in candidates])

    def score_pairs(self, pairs: list[tuple[str, str]]) -> list[float]:
        import pandas as pd

        if not pairs:
            return []
        frame = pd.DataFrame({"text_a": [a for a, _ in pairs], "text_b": [b for _, b in pairs]})
        return pair_scores(self.model.predict(frame))


def pair_scores(out: Any) -> list[float]:
    """The probability column of a pair model's answer (a frame, a series or an array)."""
    import pandas as pd

    if isinstance(out, pd.DataFrame):
        column = next((c for c in ("score", "probability") if c in out), None)
        out = out[column] if column else out.select_dtypes("number").iloc[:, 0]
    return [float(v) for v in out]
