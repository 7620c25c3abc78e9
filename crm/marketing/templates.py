"""Message templates with personalisation from the profile, safely.

`{field}` placeholders only, from a fixed whitelist: no attribute or index access
(`{x.__class__}`, `{x[0]}`), no conversions or format specs, nothing that is not listed. A
template naming anything else is refused when the campaign is defined, not when it is sent.
Personal values are masked before they reach a template (`surname` is one character, never the
whole name); contact data (phone, e-mail, address, ids) is never a field at all. Rendering
builds its values from the whitelist only, so a template that slipped past validation still
cannot read anything else.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

from crm.marketing.audience import CustomerRecord


def _plain(value: Any) -> str:
    return "" if value is None else str(value)[:40]


def _surname(value: Any) -> str:
    text = str(value or "").strip()
    return text[:1]  # a family name's first character: the customer knows it, nobody learns it


# field -> (where in the record, how it is shown). Personal fields are masked here.
FIELDS: dict[str, tuple[str, Callable[[Any], str]]] = {
    "surname": ("name", _surname),
    "rfm_tier": ("rfm_tier", _plain),
    "segment_description": ("segment_description", _plain),
    "tier": ("tier", _plain),
    "city": ("city", _plain),
    "points": ("points", _plain),
    "last_product": ("last_product", _plain),
}
PERSONAL = {"surname", "city", "points", "last_product"}


class TemplateError(ValueError):
    """A template that reads what it may not, or is not a plain `{field}` template."""


def placeholders(template: str) -> list[str]:
    """The fields a template uses; TemplateError on anything but a whitelisted `{field}`."""
    used = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise TemplateError(f"template: {error}") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in FIELDS:
            raise TemplateError(f"template field {name!r} is not allowed; use {sorted(FIELDS)}")
        if spec or conversion:
            raise TemplateError(f"template field {name!r}: no format spec or conversion")
        used.append(name)
    return used


def personalised(template: str) -> bool:
    return any(name in PERSONAL for name in placeholders(template))


def render(template: str, record: CustomerRecord) -> str:
    """The text for one customer (validated again: the whitelist is the only way in)."""
    names = placeholders(template)
    values = {name: FIELDS[name][1](record.fields.get(FIELDS[name][0])) for name in names}
    return template.format_map(values)
