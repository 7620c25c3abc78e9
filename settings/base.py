"""The one strict base every settings section derives from.

Frozen, so a section handed to a Ray replica or a background thread cannot drift from what was
loaded; `extra="forbid"`, so a misspelt key in params.yaml fails at start-up instead of falling
back to a default in code.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UnknownName(LookupError):
    """A name (data set, task, corpus) that params.yaml does not define; the message lists the
    known ones."""
