"""MLflow "model from code" for the BERT-BiLSTM text classifier and its ensemble with TF-IDF.

The model carries its own code: `training/text` (architecture, tokenizer loading, batching) is
logged with it through `code_paths` (training.text.export.bundle_code), so whoever loads
`models:/intent@champion` needs torch, transformers, scikit-learn and mlflow, never this
repository. The tokenizer is the `vocab.txt` built from our corpora, loaded offline.

Output per text, the same columns as the TF-IDF pyfunc (text_classifier_model.py): `label`
(`unknown` below the threshold tuned on dev), `confidence` (temperature-scaled), `top_label`,
`in_scope`.

Family `bert_bilstm`: softmax(logits / T), where with several seed-bagged members the logits are
the log of their average probability. Family `ensemble`: the weighted average of each
member's calibrated probabilities (TF-IDF with its temperature, BERT-BiLSTM with its own; the
BERT weight `ensemble_weight` tuned on dev log-loss), then one more temperature fitted on that
average, so the threshold reads a calibrated confidence too.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


def _softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class NeuralTextClassifier(PythonModel):
    def load_context(self, context) -> None:
        self.load(Path(context.artifacts["bundle"]))

    def load(self, bundle: Path) -> None:
        import torch

        from training.text.export import member_weights
        from training.text.models import BertBiLSTMClassifier, EncoderParams
        from training.text.tokenizer import load_tokenizer

        config = json.loads((bundle / "config.json").read_text(encoding="utf-8"))
        torch.set_num_threads(int(config.get("threads", 2)))
        self.tokenizer = load_tokenizer(bundle, lowercase=config["lowercase"])
        self.models = []
        for member in range(int(config.get("members", 1))):  # 1: logged before bagging
            model = BertBiLSTMClassifier(
                EncoderParams(**config["encoder"]), len(self.tokenizer), len(config["labels"])
            )
            weights = bundle / member_weights(member)
            model.load_state_dict(torch.load(weights, weights_only=True))
            self.models.append(model.eval())
        self.tfidf = None
        if config["family"] == "ensemble":
            import joblib

            self.tfidf = joblib.load(bundle / "tfidf.joblib")
        self.configure(config)

    def configure(self, config: dict) -> None:
        self.config = config
        self.labels = np.array(config["labels"], dtype=object)
        self.unknown = config.get("unknown_label", "unknown")

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """Calibrated class probabilities, columns in `labels` order."""
        from training.text.predict import bagged_logits

        config = self.config
        logits = bagged_logits(self.models, self.tokenizer, texts, config["max_len"])
        mixture = _softmax(logits, config["bert_temperature"])
        if self.tfidf is not None:
            tfidf_logits = np.log(np.clip(self.tfidf.predict_proba(texts), 1e-12, 1.0))
            weight = float(config.get("ensemble_weight", 0.5))  # 0.5: logged before tuning
            tfidf = _softmax(tfidf_logits, config["tfidf_temperature"])
            mixture = (1 - weight) * tfidf + weight * mixture
        return _softmax(np.log(np.clip(mixture, 1e-12, 1.0)), config["temperature"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        texts = [unicodedata.normalize("NFKC", t) for t in model_input["text"].astype(str)]
        probabilities = self.probabilities(texts)
        confidence = probabilities.max(axis=1).astype(float)
        top_label = self.labels[probabilities.argmax(axis=1)].astype(str)
        in_scope = confidence >= float(self.config["threshold"])
        return pd.DataFrame(
            {
                "label": np.where(in_scope, top_label, self.unknown),
                "confidence": confidence,
                "top_label": top_label,
                "in_scope": in_scope,
            }
        )


mlflow.models.set_model(NeuralTextClassifier())
