"""A BERT WordPiece vocabulary built from our own corpora, loaded as `BertTokenizerFast`.

BERT's normaliser puts spaces around every CJK character, so WordPiece training sees each Chinese
character as a word of its own: Chinese tokenizes per character (what NER tag alignment needs)
while Latin and digit runs inside Chinese text, and English text such as BANKING77, still get
subwords. One builder therefore serves both languages.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import BertWordPieceTokenizer
from transformers import BatchEncoding, BertTokenizerFast

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
IGNORE_INDEX = -100  # torch's cross-entropy default: positions that carry no label
# A pre-split "word" that normalises to nothing (a space in CLUENER) would yield no token and
# break the 1:1 alignment; it is replaced by a token that always exists.
_EMPTY_WORD = "[UNK]"


@dataclass(frozen=True)
class TokenizerParams:
    vocab_size: int = 8000
    # Characters (the initial alphabet) and subword merges both need this many occurrences:
    # a character seen once cannot be learned anyway and is better served by [UNK].
    min_frequency: int = 2
    lowercase: bool = True


def _normalise(text: str, lowercase: bool) -> str:
    return text.lower() if lowercase else text


def build_tokenizer(
    texts: Iterable[str], directory: Path, params: TokenizerParams = TokenizerParams()
) -> BertTokenizerFast:
    """Train WordPiece on `texts`, write `directory/vocab.txt` and load it back as BERT does."""
    texts = [text for text in texts if text]
    counts = Counter(char for text in texts for char in _normalise(text, params.lowercase))
    alphabet = sum(1 for char, n in counts.items() if n >= params.min_frequency and char.strip())
    trainer = BertWordPieceTokenizer(
        clean_text=True,
        handle_chinese_chars=True,
        strip_accents=None,
        lowercase=params.lowercase,
    )
    trainer.train_from_iterator(
        texts,
        vocab_size=params.vocab_size,
        min_frequency=params.min_frequency,
        limit_alphabet=alphabet,
        special_tokens=SPECIAL_TOKENS,
    )
    directory.mkdir(parents=True, exist_ok=True)
    trainer.save_model(str(directory))
    return load_tokenizer(directory, lowercase=params.lowercase)


def load_tokenizer(directory: Path, lowercase: bool = True) -> BertTokenizerFast:
    """Load `vocab.txt` with `vocab=`: transformers 5 silently ignores `vocab_file=`."""
    path = Path(directory) / "vocab.txt"
    expected = sum(1 for _ in path.open(encoding="utf-8"))
    tokenizer = BertTokenizerFast(vocab=str(path), do_lower_case=lowercase)
    if len(tokenizer) != expected:
        raise ValueError(f"{path}: loaded {len(tokenizer)} tokens, file has {expected}")
    return tokenizer


def save_tokenizer(tokenizer: BertTokenizerFast, directory: Path) -> Path:
    """Write `vocab.txt` (id order). transformers 5 `save_pretrained` writes only tokenizer.json,
    and vocab.txt is the format `load_tokenizer` and every BERT tool read."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    if [i for _, i in vocab] != list(range(len(vocab))):
        raise ValueError("vocabulary ids are not contiguous")
    path = directory / "vocab.txt"
    path.write_text("".join(f"{token}\n" for token, _ in vocab), encoding="utf-8")
    return path


def encode_words(
    tokenizer: BertTokenizerFast,
    words: Sequence[Sequence[str]],
    max_len: int,
) -> BatchEncoding:
    """Encode pre-split words (characters for Chinese NER); `word_ids` maps tokens back to words."""
    cleaned = [[word if word.strip() else _EMPTY_WORD for word in sentence] for sentence in words]
    return tokenizer(
        cleaned,
        is_split_into_words=True,
        truncation=True,
        max_length=max_len,
        return_attention_mask=False,
    )


def align_labels(word_ids: Sequence[int | None], labels: Sequence[int]) -> list[int]:
    """Label each word's first token; special tokens and continuation pieces get IGNORE_INDEX."""
    aligned, previous = [], None
    for word_id in word_ids:
        if word_id is None or word_id == previous:
            aligned.append(IGNORE_INDEX)
        else:
            aligned.append(labels[word_id])
        previous = word_id
    return aligned
