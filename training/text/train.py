"""The text trainer's names where they lived before it was split (compatibility only).

data.py (ids, padding, batches), loop.py (the training loop), fit.py (each head's fit) and
predict.py (inference and dev scores) hold the code. This module stays because models logged
before the split carry model files that import `training.text.train` (neural_text_model.py,
ner_model.py, match_model.py), and promotion re-scores those champions in-process; new code
imports from the four modules directly.
"""

from training.text.data import (
    NO_PADDING,
    Batch,
    Padding,
    chunk_texts,
    encode_tagged,
    encode_texts,
    mask_tokens,
)
from training.text.fit import fit_classifier, fit_matcher, fit_tagger, pretrain_mlm
from training.text.loop import (
    FitResult,
    OnEpoch,
    OnStep,
    StepProgress,
    TrainParams,
    seed_everything,
)
from training.text.predict import (
    bagged_logits,
    entity_f1,
    mlm_loss,
    predict_logits,
    predict_proba,
    predict_tags,
)

__all__ = [
    "NO_PADDING",
    "Batch",
    "FitResult",
    "OnEpoch",
    "OnStep",
    "Padding",
    "StepProgress",
    "TrainParams",
    "bagged_logits",
    "chunk_texts",
    "encode_tagged",
    "encode_texts",
    "entity_f1",
    "fit_classifier",
    "fit_matcher",
    "fit_tagger",
    "mask_tokens",
    "mlm_loss",
    "predict_logits",
    "predict_proba",
    "predict_tags",
    "pretrain_mlm",
    "seed_everything",
]
