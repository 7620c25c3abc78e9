"""Log BERT-BiLSTM models as self-contained MLflow pyfuncs.

A torch model needs its architecture code to load. Rather than make serving import this
repository, the code travels with the model: `bundle_code` copies `training/text` and
`training/entities` into a fresh `training` package that MLflow stores under the model's
`code/` folder (`code_paths`) and puts on `sys.path` when loading. Every neural model bundles
the same set, so whichever model a process loads first, `training.text` and
`training.entities` both resolve.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path

import pandas as pd

TRAINING = Path(__file__).resolve().parents[1]
BUNDLED = ("text", "entities")


def bundle_code(directory: Path) -> Path:
    """A `training` package holding only what inference needs; returns its path."""
    package = directory / "training"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""Inference code bundled with a model."""\n')
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in BUNDLED:
        shutil.copytree(TRAINING / name, package / name, ignore=ignore)
    return package


def requirements(*extra: str) -> list[str]:
    names = (
        "mlflow",
        "torch",
        "transformers",
        "tokenizers",
        "pytorch-crf",
        "pandas",
        "numpy",
        *extra,
    )
    return [f"{name}=={version(name).split('+')[0]}" for name in names]


def log_pyfunc(
    model_file: Path,
    bundle: Path,
    input_example: pd.DataFrame,
    signature_output: pd.DataFrame,
    extra_requirements: tuple[str, ...] = (),
):
    """Log `model_file` (a model-from-code) with `bundle` as its artifact and the code bundle."""
    import mlflow
    from mlflow.models import infer_signature

    with tempfile.TemporaryDirectory() as tmp:
        code = bundle_code(Path(tmp))
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(model_file),
            artifacts={"bundle": str(bundle)},
            code_paths=[str(code)],
            signature=infer_signature(input_example, signature_output),
            input_example=input_example,
            pip_requirements=requirements(*extra_requirements),
        )


def member_weights(member: int) -> str:
    """File of a seed-bagged member's weights: the first keeps the single model's name."""
    return "weights.pt" if member == 0 else f"weights_{member}.pt"


def write_classifier_bundle(
    directory: Path,
    models: list,
    tokenizer,
    config: dict,
    tfidf_pipeline=None,
) -> Path:
    """weights.pt (weights_N.pt per further member) + vocab.txt + config.json (+ tfidf.joblib
    for the ensemble) in `directory`."""
    import joblib
    import torch

    from training.text.tokenizer import save_tokenizer

    directory.mkdir(parents=True, exist_ok=True)
    for member, model in enumerate(models):
        torch.save(model.state_dict(), directory / member_weights(member))
    save_tokenizer(tokenizer, directory)
    (directory / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    if tfidf_pipeline is not None:
        joblib.dump(tfidf_pipeline, directory / "tfidf.joblib")
    return directory
