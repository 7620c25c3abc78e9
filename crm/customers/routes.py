"""Customer routes: the customer's features (the 360 view) and conversation events.

The features come from the Feast online store through `features/` (never from training code).
An event posted here is published on the event bus and answered 202 once it is stored; the
stream processors (crm/streams) fold it into the customer's aggregates and push them online.
"""

# No `from __future__ import annotations`: FastAPI must see real types on the routes.
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi import Path as PathParam

from crm.access import AccessControl, unknown_customer
from crm.customers.schemas import ConversationEventRequest, CustomerFeatures, EventAccepted
from serving.http import ERRORS

# ASCII, as the OpenAPI pattern reads to every client (JSON Schema regexes are ECMA: `\w` is
# ASCII there, Unicode in Python, so "ï" or a Cyrillic "С-100" got through; issue 26).
CUSTOMER_ID = PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


def customer_router(access: AccessControl, features: Any, publish: Any, engine: str) -> APIRouter:
    """`features`: a features.store.OnlineFeatureClient; `publish`: the bus's blocking publish
    (events.bus.BlockingPublisher.publish) of engine `engine`."""
    router = APIRouter(prefix="/v1/customers", tags=["customers"], responses=ERRORS)
    read = access.require("customer.read", access.customer_in_path, not_found=unknown_customer)
    write = access.require("customer.write", access.customer_to_write, not_found=unknown_customer)

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

    register = access.require(
        "customer.register", access.customer_to_register, not_found=unknown_customer
    )

    @router.put("/{customer_id}/registration", dependencies=[Depends(register)])
    def register_customer(customer_id: str = CUSTOMER_ID) -> dict[str, str]:
        """Register a customer id in the administrator's tenant (idempotent). Writes to an
        unregistered id are 404: no tenant can claim an id by writing to it first."""
        access.claim_customer(customer_id)
        return {"customer_id": customer_id, "tenant": str(access.caller().resource.tenant)}

    @router.post(
        "/{customer_id}/events",
        response_model=EventAccepted,
        status_code=202,
        dependencies=[Depends(write)],
    )
    def conversation_event(
        body: ConversationEventRequest, customer_id: str = CUSTOMER_ID
    ) -> EventAccepted:
        """Publish a conversation event; 202 once the bus has stored it (the aggregates
        follow when the stream processors apply it). The customer must be known (a data
        set's, or registered by an administrator)."""
        from events.schemas import TurnRecorded

        tenant = access.caller_tenant() or access.default_tenant
        event = TurnRecorded(
            customer_id=customer_id,
            tenant=tenant,
            source="api",
            at=body.at or datetime.now(UTC),
            **body.model_dump(exclude={"at"}),
        )
        publish([event])
        access.claim_customer(customer_id)
        return EventAccepted(customer_id=customer_id, event_id=event.event_id, bus=engine)

    return router
