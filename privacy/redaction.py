"""What the model replicas keep of personal data: prediction-log rows and log records, masked.

The model endpoints (serving/) hold no rule about what is personal; the application hands each
replica a `PredictionRedaction`, which serving only knows as its `Redaction` protocol. Texts are
masked before they are written (runs of 6+ digits: phone, ID, card, order numbers; e-mails;
names and addresses the NER model found), inputs of pairs and features string by string.
"""

from __future__ import annotations

import re
from typing import Any

from privacy.masking import Span, install_log_masking, mask_text, mask_value

ENTITY_KINDS = {"name": "name", "address": "address", "PER": "name", "LOC": "address"}

# 6+ digits, optionally split by single spaces or hyphens (138 0013 8000, 6222-0200-...).
DIGIT_RUN = re.compile(r"\d(?:[ \-]?\d){5,}")


def mask_digits(text: str) -> str:
    """Replace every digit of a 6+ digit run with `*`; shorter numbers (prices, dates) stay."""
    return DIGIT_RUN.sub(lambda m: re.sub(r"\d", "*", m.group()), text)


def mask_log_text(text: str, spans: list[Span] | None = None) -> str:
    """Digit runs starred, then emails and the given name/address spans masked (standard)."""
    return mask_text(mask_digits(text), "standard", spans or ())


def masked(value: Any) -> Any:
    """Mask every string inside an input or output (texts, string features, entity texts)."""
    if isinstance(value, str):
        return mask_log_text(value)
    if isinstance(value, dict):
        return {k: masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked(v) for v in value]
    return value


def entity_spans(output: Any) -> list[Span]:
    """Names and addresses the NER model found, as spans of its input text."""
    entities = output.get("entities") if isinstance(output, dict) else None
    spans = []
    for entity in entities if isinstance(entities, list) else []:
        if not isinstance(entity, dict):
            continue
        kind = ENTITY_KINDS.get(str(entity.get("type") or entity.get("label")))
        if kind and isinstance(entity.get("start"), int) and isinstance(entity.get("end"), int):
            spans.append(Span(entity["start"], entity["end"], kind))
    return spans


def masked_output(output: Any) -> Any:
    """Outputs masked too: NER answers repeat the numbers and names of the text."""
    if isinstance(output, dict) and isinstance(output.get("entities"), list):
        entities = []
        for entity in output["entities"]:
            kind = ENTITY_KINDS.get(str(entity.get("type") or entity.get("label")))
            if isinstance(entity, dict) and kind and isinstance(entity.get("text"), str):
                entity = {**entity, "text": mask_value(entity["text"], kind, "standard")}
            entities.append(entity)
        output = {**output, "entities": entities}
    return masked(output)


class PredictionRedaction:
    """serving.prediction_log.Redaction with the privacy layer's rules (picklable: Ray ships it
    to every model replica)."""

    def row(self, row: dict[str, Any]) -> dict[str, Any]:
        row = dict(row)
        spans = entity_spans(row.get("output"))
        if isinstance(row.get("input"), str):
            row["input"] = mask_log_text(row["input"], spans)
        else:  # pairs (faq_match: text_a, text_b) and other structured inputs
            row["input"] = masked(row.get("input"))
        row["features"] = masked(row.get("features"))
        row["output"] = masked_output(row.get("output"))
        return row

    def install_logs(self) -> None:
        install_log_masking()
