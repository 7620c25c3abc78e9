"""Customer routes: the customer's features (the 360 view) and conversation events.

The features come from the Feast online store through `features/` (never from training code);
an event recorded here updates the customer's conversation aggregates online before the answer.
"""

# No `from __future__ import annotations`: FastAPI must see real types on the routes.
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi import Path as PathParam

from crm.access import AccessControl, unknown_customer
from crm.customers.schemas import ConversationEventRequest, ConversationStats, CustomerFeatures
from serving.http import ERRORS

CUSTOMER_ID = PathParam(min_length=1, max_length=64, pattern=r"^[\w-]+$")


def customer_router(access: AccessControl, features: Any, stream: Any) -> APIRouter:
    """`features`: a features.store.OnlineFeatureClient; `stream`: its ConversationStream."""
    router = APIRouter(prefix="/v1/customers", tags=["customers"], responses=ERRORS)
    read = access.require("customer.read", access.customer_in_path, not_found=unknown_customer)
    write = access.require(
        "customer.write", access.customer_to_write, not_found=unknown_customer
    )

    @router.get(
        "/{customer_id}/features", response_model=CustomerFeatures, dependencies=[Depends(read)]
    )
    def customer_features(customer_id: str = CUSTOMER_ID) -> CustomerFeatures:
        """The customer's features from the Feast online store, on-demand ones as of now."""
        values = features.get(customer_id)
        if values is None:
            raise HTTPException(404, f"Unknown customer: {customer_id} has no features online")
        return CustomerFeatures(
            customer_id=customer_id, features=values, feature_service=features.service.name
        )

    @router.post(
        "/{customer_id}/events", response_model=ConversationStats, dependencies=[Depends(write)]
    )
    def conversation_event(
        body: ConversationEventRequest, customer_id: str = CUSTOMER_ID
    ) -> ConversationStats:
        """Record a conversation event; the customer's aggregates are online when this returns.

        A customer first written here belongs to the writer's tenant."""
        from features.conversations import ConversationEvent

        event = ConversationEvent(
            customer_id=customer_id,
            at=body.at or datetime.now(UTC),
            **body.model_dump(exclude={"at"}),
        )
        stats = stream.record(event)
        access.claim_customer(customer_id)
        return ConversationStats(
            customer_id=customer_id, stats=stats, pushed_to="conversation_stats"
        )

    return router
