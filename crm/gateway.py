"""The HTTP ingress of the application: one Ray Serve deployment, its app built per replica.

`@serve.ingress()` without an app defers the FastAPI app to the replica: Serve calls
`__serve_build_asgi_app__` after the constructor, so the routes close over this replica's own
parts (stores, access control, handles) instead of module state shared through pickled copies.
"""

from __future__ import annotations

from typing import Any

from ray import serve

from crm.api import build_api
from crm.parts import build_parts
from privacy.redaction import PredictionRedaction
from settings import Settings


@serve.deployment
@serve.ingress()
class Gateway:
    async def __init__(self, models: dict[str, Any], conversation: Any, settings: Settings):
        PredictionRedaction().install_logs()  # Serve's, uvicorn's and our logs, masked
        # Access control first: a broken policy file stops the replica before it serves.
        self.parts = build_parts(settings, models, conversation)
        self.parts.start()

    def __serve_build_asgi_app__(self) -> Any:
        return build_api(self.parts)

    def __del__(self) -> None:
        """Serve's graceful replica shutdown: stop the worker and the MQTT bridge."""
        if (parts := getattr(self, "parts", None)) is not None:
            parts.stop()
