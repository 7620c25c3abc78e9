"""Settings of the model platform (the offline half): MLflow, data sets, features, text and
tabular training, the registry gate. params.yaml sections `mlflow`, `data`, `datasets`,
`features`, `text`, `tabular`, `registry`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, PositiveInt

from settings.base import Strict, UnknownName


class MlflowSettings(Strict):
    tracking_uri: str
    artifact_root: str


class DataSettings(Strict):
    raw_dir: str
    validated_dir: str
    reports_dir: str


Kind = Literal[
    "text-classification",
    "text-pair",
    "sequence-labelling",
    "tabular",
    "transactions",
    "interactions",
]
KINDS: tuple[str, ...] = Kind.__args__


class SplitSpec(Strict):
    """How to cut `carve_from` rows into dev/test shares (seeded by params `seed`)."""

    carve_from: str
    dev: float = Field(0.0, ge=0.0, lt=1.0)
    test: float = Field(0.0, ge=0.0, lt=1.0)
    stratify: bool = True
    group_pairs: bool = False


class RepairSpec(Strict):
    """Fixes `scrm data add` applied at the user's request (pipelines/repairs.py), replayed on
    every load so `scrm validate NAME` sees the same rows; each is counted in the card."""

    # Split value in the file -> train/dev/test (e.g. validation -> dev).
    split_map: dict[str, str] = Field(default_factory=dict)
    # A text in several splits stays only in its earliest (train < dev < test).
    cross_split_duplicates: bool = False
    # Every repeated text keeps only its first row (earliest split first).
    duplicate_texts: bool = False
    # Classes with fewer train rows than this are dropped, or merged into `rare_merge_into`.
    min_class_count: int = Field(0, ge=0)
    rare_merge_into: str | None = None


class DatasetSpec(Strict):
    """Where a data set's files are and how they map to the schema of its kind."""

    kind: Kind
    files: dict[str, str]
    columns: dict[str, str] = Field(default_factory=dict)
    header: list[str] | None = None
    labels: list[str] = Field(default_factory=list)
    labels_file: str | None = None
    label_names: dict[str, str] = Field(default_factory=dict)
    numeric: list[str] = Field(default_factory=list)
    split: SplitSpec | None = None
    max_text_chars: int = Field(512, gt=0)
    min_rows_per_class: int = Field(1, ge=1)
    max_duplicate_share: float = Field(0.05, ge=0.0, le=1.0)
    drop_leaks: bool = False
    max_overlap_share: float = Field(0.0, ge=0.0, le=1.0)
    repairs: RepairSpec | None = None


class FeatureSettings(Strict):
    repo_dir: str
    output_dir: str
    transactions_dataset: str
    accounts_dataset: str
    accounts_as_of: datetime
    # The served turn history (`scrm events history` from the bus) the offline
    # conversation_stats source is built from.
    conversation_events: str
    event_log: str
    # "sqlite" (the repo's feature_store.yaml) or redis://host:port[/db]
    online_store: str = "sqlite"
    # training.tabular.repurchase.RepurchaseParams (cutoffs and horizon of the labels).
    repurchase_labels: dict[str, Any] = Field(default_factory=dict)


class TextTask(Strict):
    """One registered text model: what it learns from and what it must get right."""

    head: Literal["classifier"] = "classifier"
    dataset: str
    registered_model: str
    # Precision the accepted (non-`unknown`) dev predictions must keep; sets the threshold.
    target_precision: float = Field(0.95, gt=0, le=1)
    # Behavioural gate: text -> the label the model must give.
    known_examples: dict[str, str] = Field(default_factory=dict)
    # BERT-BiLSTM input length in tokens (reviews need more than chat turns).
    max_len: int = Field(64, gt=2)
    # The `text.pretrain.corpora` entry whose pretrained encoder starts the BERT-BiLSTM.
    corpus: str = "zh"
    # BERT-BiLSTMs trained with seeds seed, seed+1, ..., each for `text.bert.train.epochs`;
    # their probabilities are averaged (bagging by seed). Pays where one fit is short and
    # noisy (a few thousand chat turns), not where one fit already spends the budget.
    bert_members: int = Field(1, ge=1, le=10)


class TfidfParams(Strict):
    analyzer: Literal["char", "char_wb", "word"] = "char_wb"
    ngram_min: int = Field(1, ge=1)
    ngram_max: int = Field(3, ge=1)
    min_df: int = Field(1, ge=1)
    sublinear_tf: bool = True


class ClassifierParams(Strict):
    C: float = Field(10.0, gt=0)
    max_iter: int = Field(2000, gt=0)


class BaselineSettings(Strict):
    tfidf: TfidfParams
    classifier: ClassifierParams


class TuneSettings(Strict):
    trials: int = Field(gt=0)
    folds: int = Field(ge=2)
    timeout_s: int = Field(gt=0)


Family = Literal["tfidf", "bert_bilstm", "ensemble"]


class BertEncoderSettings(Strict):
    """training.text.models.EncoderParams: the BERT (from BertConfig) + BiLSTM size."""

    hidden: int = Field(gt=0)
    layers: int = Field(gt=0)
    heads: int = Field(gt=0)
    intermediate: int = Field(gt=0)
    lstm_hidden: int = Field(ge=0)
    dropout: float = Field(ge=0, lt=1)


class BertTrainSettings(Strict):
    """training.text.train.TrainParams. The budget is `epochs` (with `patience`); max_minutes
    is only a safety cap per model: a fit that passes it fails loudly (BudgetExceeded)."""

    epochs: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    lr: float = Field(gt=0)
    patience: int = Field(gt=0)
    max_minutes: float = Field(gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)


class BertSettings(Strict):
    """The BERT-BiLSTM family and the candidates the champion family is chosen from on dev."""

    families: list[Family] = Field(min_length=1)
    # A later (more complex) family replaces an earlier one only if better on dev by more.
    min_dev_gain: float = Field(0.005, ge=0.0)
    encoder: BertEncoderSettings
    train: BertTrainSettings
    vocab_size: int = Field(gt=10)
    min_frequency: int = Field(ge=1)
    # Subsample of train rows (seeded); null = all. The test suite's tiny profile sets it.
    max_train_rows: int | None = Field(None, gt=0)
    threads: int = Field(2, gt=0)
    # Start every BERT-BiLSTM (intent, sentiment, ner, faq_match) from `scrm pretrain CORPUS`'s
    # encoder and tokenizer instead of random weights and a tokenizer of the task's own texts.
    pretrained: bool = False
    # Pad batch widths to a multiple of this (torch builds CPU kernels per new input shape).
    pad_multiple: int = Field(16, ge=1)
    # Search grid size of the ensemble's BERT-BiLSTM weight, tuned on dev log-loss.
    ensemble_weight_steps: int = Field(20, ge=1)


class PretrainSettings(Strict):
    """`scrm pretrain CORPUS`: masked-LM pretraining of the `text.bert.encoder` on the train
    splits of a corpus's data sets (no dev or test text); its tokenizer is built from them."""

    corpora: dict[str, list[str]] = Field(min_length=1)
    registered_model_prefix: str = "text_encoder"
    # Window length and number of position embeddings: >= every task's max_len.
    max_len: int = Field(gt=2)
    vocab_size: int = Field(gt=10)
    min_frequency: int = Field(ge=1)
    mask_probability: float = Field(0.15, gt=0, lt=1)
    # Share of the corpus's texts held out to measure the masked-LM loss (seeded).
    heldout_share: float = Field(0.02, gt=0, lt=0.5)
    # Seeded subsample of texts (the test suite's tiny profile); null = all.
    max_texts: int | None = Field(None, gt=0)
    train: BertTrainSettings
    # Corpus -> epochs instead of train.epochs: a small corpus (BANKING77's 9k texts) is read
    # many times within the wall budget; the linear schedule decays over these epochs.
    epochs_by_corpus: dict[str, PositiveInt] = Field(default_factory=dict)

    def train_for(self, corpus: str) -> BertTrainSettings:
        epochs = self.epochs_by_corpus.get(corpus, self.train.epochs)
        return self.train.model_copy(update={"epochs": epochs})


class NerSettings(Strict):
    """`scrm train ner`: BERT-BiLSTM taggers (one per head) vs the BiLSTM-CRF baseline; the
    encoder size and vocabulary come from `text.bert`."""

    dataset: str
    registered_model: str
    max_len: int = Field(gt=2)
    heads: list[Literal["crf", "softmax"]] = Field(min_length=1)
    train: BertTrainSettings
    baseline_embedding: int = Field(gt=0)
    baseline_lstm_hidden: int = Field(gt=0)
    baseline_train: BertTrainSettings
    max_train_rows: int | None = Field(None, gt=0)
    # First N dev and test rows only (the test suite's tiny profile); null = all.
    max_eval_rows: int | None = Field(None, gt=0)
    corpus: str = "zh"


class MatchSettings(Strict):
    """`scrm train faq_match`: siamese BERT-BiLSTM vs TF-IDF cosine / character overlap."""

    dataset: str
    registered_model: str
    max_len: int = Field(gt=2)
    train: BertTrainSettings
    # Weight of the positive class in the loss: null = negatives/positives of train.
    positive_weight: float | None = Field(None, gt=0)
    max_train_rows: int | None = Field(None, gt=0)
    # First N dev and test rows only (the test suite's tiny profile); null = all.
    max_eval_rows: int | None = Field(None, gt=0)
    corpus: str = "zh"
    # Start from the corpus's pretrained encoder: null = `text.bert.pretrained`.
    pretrained: bool | None = None
    # Behavioural gate: pairs that must score as "same" / "different", and in that order.
    known_pairs: dict[Literal["same", "different"], list[tuple[str, str]]] = Field(
        default_factory=dict
    )


class TextSettings(Strict):
    output_dir: str
    unknown_label: str
    min_invariance: float = Field(ge=0, le=1)
    baseline: BaselineSettings
    tune: TuneSettings
    bert: BertSettings
    pretrain: PretrainSettings
    ner: NerSettings
    faq_match: MatchSettings
    tasks: dict[str, TextTask]

    def task(self, name: str) -> TextTask:
        if name not in self.tasks:
            raise UnknownName(f"Unknown task: {name}; available: {', '.join(self.tasks)}")
        return self.tasks[name]

    def corpus(self, name: str) -> list[str]:
        """The data sets of a pretraining corpus (params `text.pretrain.corpora`)."""
        corpora = self.pretrain.corpora
        if name not in corpora:
            raise UnknownName(f"Unknown corpus: {name}; available: {', '.join(corpora)}")
        return corpora[name]


class RecencyBaseline(Strict):
    """A one-feature rule the model has to beat, e.g. "whoever bought last buys again"."""

    feature: str
    higher_is_positive: bool = False


class BatchScoring(Strict):
    """`scrm predict batch`: whom to score, with which features, and where scores go online."""

    feature_service: str  # the service the model was trained on
    population: str  # a parquet of the feature store whose customer ids are scored


GateMetric = Literal["roc_auc", "f1", "accuracy", "rmse", "mae"]
LOWER_IS_BETTER: frozenset[str] = frozenset({"rmse", "mae"})


class TabularTask(Strict):
    """A tabular model trained on a Feast training set (features as of each label's time), or
    on a table registered with `scrm data add --kind tabular`."""

    training_set: str
    dataset: str  # the validated data set behind it: the gate checks its validation
    label: str
    registered_model: str
    # training.tabular.automl.AutoMLParams, checked when a tabular step starts (importing
    # AutoGluon here would slow every `scrm` command by seconds).
    automl: dict[str, Any]
    # The promotion gate's test metric (lower is better for rmse and mae).
    metric: GateMetric = "roc_auc"
    baseline: RecencyBaseline | None = None
    batch: BatchScoring | None = None


class TabularSettings(Strict):
    tasks: dict[str, TabularTask]

    def task(self, name: str) -> TabularTask:
        if name not in self.tasks:
            raise UnknownName(f"Unknown tabular task: {name}; available: {', '.join(self.tasks)}")
        return self.tasks[name]


class RegistrySettings(Strict):
    min_improvement: float = Field(ge=0.0)
