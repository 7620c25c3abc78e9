"""MLflow "model from code" for `ner`: a learned tagger merged with the pattern/gazetteer types.

The tagger (BERT-BiLSTM with a CRF or softmax head, or the BiLSTM-CRF baseline, whichever won
on dev) finds CLUENER's 10 learned types; `training.entities.extract_entities` adds the pattern
and gazetteer types (118 in all) and resolves overlaps. Both `training/text` and
`training/entities` travel with the model as `code_paths`, so loading it never needs this
repository.

Output per text: `entities`, the merged list as JSON (start, end exclusive, text, type, source
model/pattern/gazetteer, value), and `model_entities`, the tagger's spans alone as JSON (what
the entity-level F1 on CLUENER scores).
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class EntityTagger(PythonModel):
    def load_context(self, context) -> None:
        self.load(Path(context.artifacts["bundle"]))

    def load(self, bundle: Path) -> None:
        import torch

        from training.text.models import BertBiLSTMTagger, BiLSTMCRFTagger, EncoderParams
        from training.text.tokenizer import load_tokenizer

        config = json.loads((bundle / "config.json").read_text(encoding="utf-8"))
        torch.set_num_threads(int(config.get("threads", 2)))
        self.tokenizer = load_tokenizer(bundle, lowercase=True)
        tags = config["tag_names"]
        if config["kind"] == "bilstm_crf":
            self.model = BiLSTMCRFTagger(
                len(self.tokenizer),
                len(tags),
                config["embedding"],
                config["lstm_hidden"],
                use_crf=True,
                tag_names=tags,
            )
        else:
            encoder = EncoderParams(**config["encoder"])
            self.model = BertBiLSTMTagger(
                encoder, len(self.tokenizer), len(tags), config["use_crf"], tags
            )
        self.model.load_state_dict(torch.load(bundle / "weights.pt", weights_only=True))
        self.model.eval()
        self.config = config

    def model_spans(self, texts: list[str]) -> list[list[tuple[int, int, str]]]:
        from training.text.predict import predict_tags
        from training.text.spans import bio_spans

        words = [list(text) for text in texts]
        tags = predict_tags(
            self.model, self.tokenizer, words, self.config["tag_names"], self.config["max_len"]
        )
        return [bio_spans(row) for row in tags]

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from training.entities import extract_entities

        texts = model_input["text"].astype(str).tolist()
        spans = self.model_spans(texts)
        merged, learned = [], []
        for text, found in zip(texts, spans, strict=True):
            entities = extract_entities(text, found)
            merged.append(json.dumps([_entity(e) for e in entities], ensure_ascii=False))
            learned.append(
                json.dumps(
                    [{"start": s, "end": e, "text": text[s:e], "type": k} for s, e, k in found],
                    ensure_ascii=False,
                )
            )
        return pd.DataFrame({"entities": merged, "model_entities": learned})


def _entity(entity) -> dict:
    value = entity.value
    return {
        "start": entity.start,
        "end": entity.end,
        "text": entity.text,
        "type": entity.type,
        "source": entity.source,
        "value": value if isinstance(value, str | int | float) or value is None else str(value),
    }


mlflow.models.set_model(EntityTagger())
