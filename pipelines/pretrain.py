"""`scrm pretrain CORPUS`: masked-LM pretraining of the small BERT encoder on our own text.

No hub weights are allowed, so the only way to give the BERT-BiLSTMs more than their labelled
rows is to pretrain the encoder on every unlabelled sentence we have: the train splits of the
corpus's data sets (params `text.pretrain.corpora`; `zh`: SMP2017, ChnSentiCorp, CLUENER, ATEC;
`en`: BANKING77). Dev and test text never enters, and a train text that also appears in any of
the corpus's test splits is dropped, so no task's frozen test set is read before its gate.

One MLflow run per corpus (experiment `text_encoder_CORPUS`): params, the held-out masked-LM
loss before (random weights) and after, per-epoch loss, the tokenizer, and a fill-mask pyfunc
registered as `text_encoder_CORPUS`. The directory `data/models/pretrain_CORPUS/encoder` (DVC
output) is what fine-tuning loads when `text.bert.pretrained` is true, together with its
tokenizer (training/text/pretrained.py).
"""

from __future__ import annotations

import logging
import random
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from pipelines.io import read_json, write_json
from pipelines.progress import fit_bar
from pipelines.text_families import write_history
from settings import Settings
from training.tracking import use_experiment

log = logging.getLogger(__name__)

ENCODER_MODEL = Path(__file__).resolve().parents[1] / "training" / "encoder_model.py"
TEXT_COLUMNS = ("text", "text_a", "text_b")
HISTORY_KEYS = ["epoch", "train_loss", "dev_mlm_loss", "seconds"]
PROBE = {"zh": "今天天气很[MASK]", "en": "i lost my [MASK]"}


def out_dir(settings: Settings, corpus: str) -> Path:
    return settings.model_dir(f"pretrain_{corpus}")


def encoder_dir(settings: Settings, corpus: str) -> Path:
    return out_dir(settings, corpus) / "encoder"


def split_texts(settings: Settings, dataset: str, split: str) -> list[str]:
    """Every text column of one split of a validated data set (pairs give both questions)."""
    frame = pd.read_parquet(settings.validated_file(dataset))
    frame = frame[frame["split"] == split]
    columns = [c for c in TEXT_COLUMNS if c in frame.columns]
    return [str(t) for c in columns for t in frame[c] if isinstance(t, str) and t.strip()]


def corpus_texts(settings: Settings, corpus: str) -> tuple[list[str], list[str], dict]:
    """(train texts, held-out texts, counts): unique train-split texts of the corpus minus any
    test text, shuffled (seeded) and split by `heldout_share`; `max_texts` subsamples."""
    spec = settings.text.pretrain
    datasets = settings.text.corpus(corpus)
    test = {t for name in datasets for t in split_texts(settings, name, "test")}
    found = [t for name in datasets for t in split_texts(settings, name, "train")]
    unique = list(dict.fromkeys(found))
    texts = [t for t in unique if t not in test]
    counts = {"train_texts": len(found), "unique_texts": len(unique)}
    counts["dropped_test_texts"] = len(unique) - len(texts)
    random.Random(settings.seed).shuffle(texts)
    if spec.max_texts is not None:
        texts = texts[: spec.max_texts]
    held = max(1, int(len(texts) * spec.heldout_share))
    return texts[held:], texts[:held], counts


def pretrain(settings: Settings, corpus: str) -> dict[str, Any]:
    """Pretrain CORPUS's encoder, save it for fine-tuning and register its fill-mask pyfunc."""
    import torch

    from training.text.pretrained import save_pretrained
    from training.text.tokenizer import TokenizerParams, build_tokenizer

    spec, bert = settings.text.pretrain, settings.text.bert
    torch.set_num_threads(bert.threads)
    texts, heldout, counts = corpus_texts(settings, corpus)
    name = f"{spec.registered_model_prefix}_{corpus}"
    use_experiment(settings.tracking_uri, name, settings.artifact_root)
    run_name = f"pretrain-{corpus}"
    with mlflow.start_run(run_name=run_name) as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tags({"task": "pretrain", "corpus": corpus})
        tokenizer = build_tokenizer(
            texts,
            Path(tmp) / "tokenizer",
            TokenizerParams(vocab_size=spec.vocab_size, min_frequency=spec.min_frequency),
        )
        mlm, params, fit, (before, after) = fit_encoder(
            settings, corpus, (texts, heldout, counts), tokenizer
        )
        info = {"corpus": corpus, "run_id": run.info.run_id, "heldout_mlm_loss": after}
        directory = save_pretrained(encoder_dir(settings, corpus), mlm, tokenizer, params, info)
        mlflow.log_artifact(str(directory / "vocab.txt"), "tokenizer")
        write_history(out_dir(settings, corpus) / "learning_curve.csv", fit.history, HISTORY_KEYS)
        model_info, probe = log_encoder(directory, corpus)
    version = mlflow.register_model(model_info.model_uri, name)
    result = {
        "run_id": run.info.run_id,
        "model_uri": model_info.model_uri,
        "model_name": name,
        "version": int(version.version),
        "corpus": corpus,
        "texts": len(texts),
        "heldout_texts": len(heldout),
        "vocab_size": len(tokenizer),
        "heldout_mlm_loss_before": before,
        "heldout_mlm_loss_after": after,
        "epochs": len(fit.history),
        "best_epoch": fit.best_epoch,
        "seconds": round(fit.seconds, 1),
        "stopped": fit.stopped,
        "probe": probe,
    }
    write_json(out_dir(settings, corpus) / "pretrain.json", result)
    return result


def fit_encoder(
    settings: Settings, corpus: str, texts: tuple[list[str], list[str], dict], tokenizer
) -> tuple[Any, Any, Any, tuple[float, float]]:
    """Masked-LM pretraining of a fresh encoder on `texts` (train, held-out, counts), with a
    progress bar; logs params and the held-out loss before and after. Returns (the masked-LM
    model, its EncoderParams, the fit, (loss before, loss after))."""
    from training.text.data import chunk_texts
    from training.text.fit import pretrain_mlm
    from training.text.loop import TrainParams
    from training.text.models import EncoderParams, build_mlm
    from training.text.predict import mlm_loss

    spec, bert = settings.text.pretrain, settings.text.bert
    texts, heldout, counts = texts
    params = EncoderParams(**bert.encoder.model_dump(), max_len=spec.max_len)
    schedule = spec.train_for(corpus)
    train = TrainParams(**schedule.model_dump(), seed=settings.seed, pad_multiple=bert.pad_multiple)
    mlm = build_mlm(params, len(tokenizer))
    heldout_chunks = chunk_texts(tokenizer, heldout, spec.max_len)
    before = mlm_loss(mlm, tokenizer, heldout_chunks, spec.mask_probability)
    mlflow.log_params(
        {"corpus": corpus, "datasets": ",".join(settings.text.corpus(corpus))}
        | counts
        | {"pretrain_texts": len(texts), "heldout_texts": len(heldout)}
        | {"vocab_size": len(tokenizer), "mask_probability": spec.mask_probability}
        | {f"bert_{k}": v for k, v in params.__dict__.items()}
        | {f"train_{k}": v for k, v in schedule.model_dump().items()}
    )
    mlflow.log_metric("heldout_mlm_loss_before", before)

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        mlflow.log_metrics(metrics, step=epoch)

    with fit_bar(f"masked-LM pretraining ({corpus})") as on_step:
        fit = pretrain_mlm(
            mlm, tokenizer, texts, heldout, spec.max_len, train, on_epoch,
            spec.mask_probability, on_step,
        )  # fmt: skip
    after = mlm_loss(mlm, tokenizer, heldout_chunks, spec.mask_probability)
    mlflow.log_metrics({"heldout_mlm_loss_after": after, "train_seconds": fit.seconds})
    mlflow.set_tag("stopped", fit.stopped)
    return mlm, params, fit, (before, after)


def log_encoder(directory: Path, corpus: str):
    """Log the encoder directory as a fill-mask pyfunc; returns (model info, probe answer)."""
    from training.encoder_model import MaskedLanguageModel
    from training.text.export import log_pyfunc

    wrapper = MaskedLanguageModel()
    wrapper.load(directory)
    example = pd.DataFrame({"text": [PROBE.get(corpus, "[MASK]")]})
    output = wrapper.predict(None, example)
    return log_pyfunc(ENCODER_MODEL, directory, example, output), output["filled"].iloc[0]


def pretrained_for(settings: Settings, corpus: str, enabled: bool | None = None):
    """The encoder fine-tuning starts from, or None when pretraining is off (`enabled`, which
    defaults to `text.bert.pretrained`) or the corpus has not been pretrained in this project
    (logged either way).

    Logs which pretraining run it came from on the active run (lineage in the MLflow UI)."""
    if not (settings.text.bert.pretrained if enabled is None else enabled):
        mlflow.log_param("pretrained", False)
        return None
    from training.text.pretrained import load_pretrained

    directory = encoder_dir(settings, corpus)
    if not (directory / "config.json").is_file():
        # A data set added with `scrm data add` trains in a project where `scrm pretrain` may
        # never have run (DVC runs it before every pipeline task): train from scratch and say so.
        log.warning(
            "text.bert.pretrained is true but %s is missing: the BERT-BiLSTM trains from "
            "scratch (run `scrm pretrain %s` first to start from the pretrained encoder)",
            directory, corpus,
        )  # fmt: skip
        mlflow.log_params({"pretrained": False, "pretrained_missing": str(directory)})
        return None
    encoder = load_pretrained(directory)
    summary = read_json(out_dir(settings, corpus) / "pretrain.json")
    mlflow.log_params(
        {
            "pretrained": True,
            "pretrained_corpus": corpus,
            "pretrained_run_id": encoder.info.get("run_id", ""),
            "pretrained_model": f"{summary['model_name']} v{summary['version']}",
        }
    )
    return encoder


def start_encoder(
    settings: Settings,
    corpus: str,
    texts: list[str],
    directory: Path,
    max_len: int,
    pretrained: bool | None = None,
):
    """(tokenizer, EncoderParams, pretrained encoder or None) for a BERT-BiLSTM about to train;
    `pretrained` overrides `text.bert.pretrained` for one task.

    Pretrained: its tokenizer and BERT size (the BiLSTM size still from `text.bert.encoder`);
    else a tokenizer built from `texts` (the task's own train+dev) and `text.bert.encoder`.
    Either way `directory/vocab.txt` is written and logged under `tokenizer/`."""
    from training.text.models import EncoderParams
    from training.text.tokenizer import TokenizerParams, build_tokenizer, save_tokenizer

    bert = settings.text.bert
    encoder = pretrained_for(settings, corpus, pretrained)
    if encoder is None:
        vocab = TokenizerParams(vocab_size=bert.vocab_size, min_frequency=bert.min_frequency)
        tokenizer = build_tokenizer(texts, directory, vocab)
        params = EncoderParams(**bert.encoder.model_dump(), max_len=max_len)
    else:
        if max_len > encoder.params.max_len:
            raise ValueError(
                f"max_len {max_len} exceeds the pretrained encoder's {encoder.params.max_len} "
                "positions: raise text.pretrain.max_len and re-run `scrm pretrain`"
            )
        tokenizer = encoder.tokenizer
        save_tokenizer(tokenizer, directory)
        params = encoder.encoder_params(bert.encoder.lstm_hidden, bert.encoder.dropout)
    mlflow.log_artifact(str(directory / "vocab.txt"), "tokenizer")
    return tokenizer, params, encoder
