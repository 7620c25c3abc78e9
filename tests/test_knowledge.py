"""The FAQ set, the lexical matcher, retrieval confidence and the ATEC retrieval report."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipelines.dialogue_eval import eval_retrieval
from pipelines.settings import load_settings
from serving.dialogue.knowledge import KnowledgeBase, load_entries
from serving.dialogue.matching import LexicalMatcher

REPO = Path(__file__).resolve().parents[1]
KB = REPO / "data" / "kb"


@pytest.fixture(scope="module")
def entries():
    return load_entries(KB)


@pytest.fixture(scope="module")
def kb(entries) -> KnowledgeBase:
    return KnowledgeBase(entries, LexicalMatcher(q for e in entries for q in e.questions), 0.7)


def test_faq_covers_every_banking77_intent_and_valid_smp_intents(entries) -> None:
    categories = set(json.loads((REPO / "data/raw/banking77/categories.json").read_text()))
    english = {e.intent for e in entries if e.language == "en"}
    assert english == categories and len(categories) == 77
    smp_labels = set(load_settings(REPO).dataset("smp2017_ecdt_task1").labels)
    chinese_intents = {e.intent for e in entries if e.language == "zh"}
    modelled = {i for i in chinese_intents if not i.startswith("zh_")}
    assert modelled and modelled <= smp_labels
    assert all(1 <= len(e.questions) <= 3 and e.answer for e in entries)
    assert "written for scrm-platform" in (KB / "README.md").read_text().lower()


def test_a_broken_entry_is_refused_with_its_file_and_position(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("language: en\nentries:\n  - {intent: x, answer: y}\n")
    with pytest.raises(ValueError, match="bad.yaml entry 0 needs questions"):
        load_entries(tmp_path)


def test_lexical_matcher_ranks_paraphrases_above_unrelated_questions() -> None:
    matcher = LexicalMatcher(
        ["怎么更改花呗手机号码", "花呗冻结以后还能开通吗", "How do I reset my PIN?"]
    )
    same, para, other = matcher.score(
        "怎么更改花呗手机号码",
        ["怎么更改花呗手机号码", "花呗绑定的手机号码怎么更改", "花呗冻结以后还能开通吗"],
    )
    assert same == pytest.approx(1.0) and para > other
    english = matcher.score("how to reset a pin", ["How do I reset my PIN?", "Where is my card?"])
    assert english[0] > 0.4 > english[1]
    assert matcher.score("！？", ["abc"]) == [0.0]


def test_sparse_matrix_gives_the_same_cosines_as_pairwise_scoring() -> None:
    texts = ["借呗怎么还款", "借呗可以提前还款吗", "card arrival time", "when will my card arrive"]
    matcher = LexicalMatcher(texts)
    vectors, _ = matcher.matrix(texts)
    bulk = (vectors @ vectors.T).toarray()
    for i, a in enumerate(texts):
        assert bulk[i].tolist() == pytest.approx(matcher.score(a, texts))


def test_trusted_intent_picks_its_entry_and_confidence_mixes_both_signals(kb) -> None:
    found = kb.retrieve("when does my new card come", "card_arrival", 0.9, in_scope=True)
    assert found.entry.id == "card_arrival" and found.by_intent
    assert found.confidence == pytest.approx(0.7 * 0.9 + 0.3 * found.similarity)
    weak = kb.retrieve("when does my new card come", "card_arrival", 0.3, in_scope=True)
    assert weak.confidence < found.confidence


def test_without_a_trusted_intent_only_a_close_question_is_confident(kb) -> None:
    close = kb.retrieve("跨行转账要手续费吗？", "unknown", 0.2, in_scope=False)
    assert close.entry.id == "zh_transfer_fee" and close.confident(0.75)
    vague = kb.retrieve("钱的事情", "unknown", 0.2, in_scope=False)
    assert not vague.confident(0.75)
    nonsense = kb.retrieve("qwzx plorb", None, 0.0, in_scope=False)
    assert not nonsense.confident(0.75)


def test_retrieval_report_scores_top_answers_against_labelled_paraphrases() -> None:
    pairs = pd.DataFrame(
        {
            "text_a": ["花呗怎么还款", "借呗怎么开通", "花呗逾期了怎么办", "借呗额度怎么提升"],
            "text_b": ["花呗如何还款", "借呗如何开通呢", "花呗怎么还款呢", "借呗额度怎么提高"],
            "label": ["1", "1", "0", "1"],
        }
    )
    report = eval_retrieval(load_settings(REPO), pairs=pairs)
    pool = report["open_pool"]
    # 6 questions have a labelled paraphrase; "花呗怎么还款" ranks "花呗怎么还款呢" (a labelled
    # non-paraphrase of another question, unlabelled with it) above "花呗如何还款": a miss.
    assert pool["queries"] == 6 and pool["faq_questions"] == 8
    assert pool["precision_at_1"] == pytest.approx(5 / 6, abs=1e-4)
    assert report["pairs"]["positive_share"] == 0.75


def test_atec_held_out_retrieval_is_precise_when_it_answers() -> None:
    """The real frozen ATEC test split (about 9 s): confident answers with a labelled pair are
    right; the lexical matcher answers few questions, which the faq_match model should raise."""
    report = eval_retrieval(load_settings(REPO))
    pool = report["open_pool"]
    assert pool["queries"] > 1000 and pool["faq_questions"] > 5000
    assert pool["precision_when_answered_labelled"] >= 0.9
    assert report["pairs"]["at"]["0.75"]["precision"] >= 0.9
    assert report["labelled_candidates"]["precision_at_1"] > 0.5
