"""Tabular models scored by customer id: features from the model's Feast service, online.

A request names a customer (features read from the online store) or carries the features
itself. Every customer named passes the application's object-level check first, so a caller
never learns the score, or the existence, of another tenant's customer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from serving.client import ModelClient
from serving.http import ServingError
from serving.schemas import TabularRequest

# Raises (404) when the caller may not read one of these customers.
AuthorizeCustomers = Callable[[list[str]], None]


# A Feast feature service's name -> its online client (features.store.OnlineFeatureClient).
FeatureClients = Callable[[str], Any]


def online_clients(feature_repo: Path, online_store: str) -> FeatureClients:
    """One OnlineFeatureClient per feature service, opened on first use."""

    @cache
    def client_of(service: str) -> Any:
        from features.store import OnlineFeatureClient

        return OnlineFeatureClient(feature_repo, service, online_store)

    return client_of


class TabularScorer:
    def __init__(
        self,
        client: ModelClient,
        feature_client: FeatureClients,
        authorize: AuthorizeCustomers | None = None,
    ):
        self.client = client
        self.feature_client = feature_client
        self.authorize = authorize

    async def online_rows(self, model: str, ids: list[str]) -> dict[str, dict | None]:
        spec = self.client.settings.models[model]
        if not spec.feature_service:
            raise ServingError(422, f"{model} has no feature service: send `features`")
        try:
            client = await asyncio.to_thread(self.feature_client, spec.feature_service)
            rows = await asyncio.to_thread(client.get_many, ids)
        except Exception as error:
            raise ServingError(
                503, f"features of {model} unavailable ({spec.feature_service}): {error}"
            ) from None
        return dict(zip(ids, rows, strict=True))

    async def score(self, model: str, requests: list[TabularRequest], rid: str) -> list[dict]:
        """Features from the request, else from the model's Feast service by customer_id."""
        self.client.handle(model)
        self.client.check_count(len(requests))
        named = [r.customer_id for r in requests if r.customer_id]
        if named and self.authorize is not None:
            await asyncio.to_thread(self.authorize, named)
        lookup = [r.customer_id for r in requests if not r.features]
        online = await self.online_rows(model, lookup) if lookup else {}
        items = []
        for r in requests:
            features = r.features or online.get(r.customer_id)
            if features is None:
                raise ServingError(404, f"Unknown customer: {r.customer_id} has no features online")
            source = "request" if r.features else "feast"
            items.append(
                {
                    "customer_id": r.customer_id,
                    "features": features,
                    "source": source,
                    "explain": r.explain,
                }
            )
        answers = await self.client.predict(model, items, rid)
        for item, answer in zip(items, answers, strict=True):
            answer.update(customer_id=item["customer_id"], features_from=item["source"])
        return answers
