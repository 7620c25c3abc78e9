"""A campaign as a declarative spec (YAML or the API's JSON): who, why, where, what, which arms.

    name: spring-winback
    purpose: promotions               # PIPL: the purpose customers consented to
    audience: {all: [{kind: segment, name: at_risk}]}
    channels: [wecom, web_chat]       # tried in order: the first the customer is reachable on
    templates:
      wecom: {text: "{surname}先生/女士，春季回馈", plain: "春季回馈"}
    arms: [{name: control, weight: 1}, {name: coupon, weight: 1, templates: {...}}]
    holdout: 0.1
    steps: [{name: first}, {name: reminder, wait_s: 259200, when: not_replied}]
    trigger: {events: [prediction.made]}   # optional: members join on events

Templates are validated here (whitelisted fields only); a personalised text needs a `plain`
non-personalised version (PIPL art. 24).
"""

from __future__ import annotations

from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from crm.marketing.audience import Audience
from crm.marketing.rules import Caps, QuietHours
from crm.marketing.templates import personalised, placeholders

NAME = r"^[A-Za-z0-9_][\w.-]{0,63}$"
Channel = Literal["wecom", "dingtalk", "web_chat", "mqtt"]
Branch = Literal["always", "replied", "not_replied", "converted", "not_converted"]


class MessageTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=1000)
    plain: str | None = Field(None, max_length=1000, description="non-personalised version")

    @model_validator(mode="after")
    def safe(self) -> MessageTemplate:
        placeholders(self.text)  # TemplateError (a ValueError) names the refused field
        if personalised(self.text):
            if self.plain is None:
                raise ValueError("a personalised text needs `plain` (PIPL art. 24)")
            if personalised(self.plain):
                raise ValueError("`plain` must not be personalised")
        elif self.plain is not None:
            placeholders(self.plain)
        return self


Templates = dict[Channel, MessageTemplate]


class Arm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    weight: float = Field(1.0, gt=0)
    templates: Templates | None = None  # the arm's variant; default: the campaign's


class Step(BaseModel):
    """One journey step: sent `wait_s` after the previous one reached the customer, only if
    the branch holds on what they did since (replied, converted)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    wait_s: float = Field(0, ge=0)
    when: Branch = "always"
    templates: Templates | None = None


class Trigger(BaseModel):
    """An event-triggered campaign: on each of these bus events or marketing signals, the
    event's customer joins if they match the audience at that moment. Signals (derived by the
    marketing consumer, crm/streams/marketing.py, and the no-purchase tick): churn score
    crossing `churn_threshold` upwards (`signal:churn_crossed`), a resolved handoff followed
    by a CSAT at most `csat_at_most` (`signal:low_csat_handoff`), no purchase for
    `no_purchase_days` (`signal:no_purchase`)."""

    model_config = ConfigDict(extra="forbid")
    events: list[str] = Field(min_length=1, max_length=8)
    # What the marketing consumer's signals (crm/streams/marketing.py) must show to fire.
    churn_threshold: float = Field(0.7, gt=0, le=1, description="signal:churn_crossed")
    csat_at_most: int = Field(2, ge=1, le=5, description="signal:low_csat_handoff")
    no_purchase_days: int = Field(30, ge=1, le=730, description="signal:no_purchase")

    @field_validator("events")
    @classmethod
    def known(cls, events: list[str]) -> list[str]:
        from crm.streams.marketing import SIGNALS
        from events.schemas import EVENT_TYPES

        unknown = [e for e in events if e not in EVENT_TYPES and e not in SIGNALS]
        if unknown:
            raise ValueError(f"unknown event type(s) {unknown}; signals: {list(SIGNALS)}")
        return events

    def fires(self, event: Any) -> bool:
        """The event is one this trigger listens for, and a signal passes its threshold: a
        churn score crossing upwards, a CSAT at most `csat_at_most`, a purchase lapse of at
        least `no_purchase_days`."""
        if event.type not in self.events:
            return False
        value = getattr(event, "value", None) or {}
        if event.type == "signal:churn_crossed":
            before = value.get("previous")
            return value["score"] >= self.churn_threshold and (
                before is None or before < self.churn_threshold
            )
        if event.type == "signal:low_csat_handoff":
            return int(value["csat"]) <= self.csat_at_most
        if event.type == "signal:no_purchase":
            return float(value["days"]) >= self.no_purchase_days
        return True


class CampaignSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    purpose: str = Field(pattern=NAME)
    audience: Audience
    channels: list[Channel] = Field(min_length=1, max_length=4)
    templates: Templates
    arms: list[Arm] = Field(default_factory=lambda: [Arm(name="control")], min_length=1)
    holdout: float = Field(0.0, ge=0, le=0.5)
    steps: list[Step] = Field(
        default_factory=lambda: [Step(name="main")], min_length=1, max_length=10
    )
    rate_per_s: dict[Channel, float] = Field(default_factory=dict)
    caps: Caps = Field(default_factory=Caps)
    quiet_hours: QuietHours = Field(default_factory=QuietHours)
    trigger: Trigger | None = None  # None: one-shot, the audience frozen at launch

    @field_validator("channels")
    @classmethod
    def distinct(cls, channels: list[str]) -> list[str]:
        if len(set(channels)) != len(channels):
            raise ValueError("a channel is listed twice")
        return channels

    @model_validator(mode="after")
    def complete(self) -> CampaignSpec:
        for what, names in (
            ("arm", [a.name for a in self.arms]),
            ("step", [s.name for s in self.steps]),
        ):
            if len(set(names)) != len(names):
                raise ValueError(f"{what} names must be distinct")
        if "holdout" in {a.name for a in self.arms}:
            raise ValueError("`holdout` is reserved for the holdout group")
        missing = [c for c in self.channels if c not in self.templates]
        if missing:
            raise ValueError(f"no template for channel(s) {missing}")
        if self.steps[0].when != "always":
            raise ValueError("the first step cannot branch: nothing happened yet")
        return self

    def arm_weights(self) -> dict[str, float]:
        return {arm.name: arm.weight for arm in self.arms}

    def template(self, arm: str, step: int, channel: str) -> MessageTemplate:
        """The step's own text first, then the arm's variant, then the campaign's."""
        for found in (
            self.steps[step].templates,
            next(a.templates for a in self.arms if a.name == arm),
            self.templates,
        ):
            if found and channel in found:
                return found[channel]  # type: ignore[index]
        raise KeyError(channel)


def load_spec(text: str) -> CampaignSpec:
    """A spec from YAML (safe_load: no tags, no objects)."""
    return CampaignSpec.model_validate(yaml.safe_load(text))
