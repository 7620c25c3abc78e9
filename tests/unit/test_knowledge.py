"""The FAQ set, the lexical matcher, retrieval confidence and the ATEC retrieval report."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from crm.conversation.knowledge import KnowledgeBase, knowledge_matcher, load_entries
from crm.conversation.matching import LexicalMatcher, RerankMatcher
from pipelines.retrieval_eval import eval_retrieval
from settings import load_settings
from settings.dialogue import KnowledgeConfig

REPO = Path(__file__).resolve().parents[2]
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


class PairModel:
    """A stand-in for `faq_match`: 0.9 for candidates sharing the question's last character,
    else 0.1; records what it was asked (the shortlist)."""

    def __init__(self, fail: bool = False):
        self.asked: list[list[str]] = []
        self.fail = fail

    def score(self, question: str, candidates: list[str]) -> list[float]:
        if self.fail:
            raise RuntimeError("replica down")
        self.asked.append(candidates)
        return [0.9 if c[-1] == question[-1] else 0.1 for c in candidates]


def test_rerank_scores_only_the_lexical_shortlist_with_the_pair_model() -> None:
    faq = ["花呗怎么还款", "花呗如何还款呢", "借呗怎么开通", "余额宝收益"]
    lexical = LexicalMatcher(faq)
    model = PairModel()
    matcher = RerankMatcher(lexical, model, top_k=2, model_weight=1.0)
    scores = matcher.score("花呗怎么还款呢", faq)
    assert len(model.asked) == 1 and len(model.asked[0]) == 2  # one call, the top 2 only
    plain = lexical.score("花呗怎么还款呢", faq)
    top = sorted(range(4), key=lambda i: -plain[i])[:2]
    assert all(scores[i] == 0.0 for i in range(4) if i not in top)
    assert scores[1] == 0.9  # the model's choice wins ("呢"), not the closer lexical match
    combined = RerankMatcher(lexical, PairModel(), top_k=2, model_weight=0.5)
    mixed = combined.score("花呗怎么还款呢", faq)
    assert mixed[1] == pytest.approx(0.5 * 0.9 + 0.5 * plain[1])


def test_rerank_keeps_lexical_scores_for_other_languages_and_a_failed_model() -> None:
    faq = ["How do I reset my PIN?", "花呗怎么还款"]
    lexical = LexicalMatcher(faq)
    english = RerankMatcher(lexical, PairModel(), languages=["zh"])
    assert english.score("reset my pin", faq) == lexical.score("reset my pin", faq)
    assert english.model.asked == []
    broken = RerankMatcher(lexical, PairModel(fail=True))
    assert broken.score("花呗怎么还款", faq) == lexical.score("花呗怎么还款", faq)


def test_knowledge_matcher_follows_the_config(entries) -> None:
    assert isinstance(knowledge_matcher(KnowledgeConfig(), entries, PairModel()), LexicalMatcher)
    config = KnowledgeConfig(matcher="combined", model_weight=0.3, rerank_top=5)
    matcher = knowledge_matcher(config, entries, PairModel())
    assert isinstance(matcher, RerankMatcher) and matcher.model_weight == 0.3
    assert matcher.top_k == 5
    faq_only = knowledge_matcher(KnowledgeConfig(matcher="faq_match"), entries, PairModel())
    assert faq_only.model_weight == 1.0
    # configured, but no model loaded (not registered yet): lexical, not a crash
    no_model = knowledge_matcher(KnowledgeConfig(matcher="faq_match"), entries, None)
    assert isinstance(no_model, LexicalMatcher)


def test_a_knowledge_base_over_the_pair_model_answers_chinese_faq(entries) -> None:
    """End to end in the knowledge base: the registered-model path ranks, confidence holds."""
    config = KnowledgeConfig(matcher="faq_match")
    matcher = knowledge_matcher(config, entries, PairModel())
    kb = KnowledgeBase(entries, matcher, 0.7)
    found = kb.retrieve("跨行转账要手续费吗？", "unknown", 0.2, in_scope=False)
    assert found.entry is not None and found.similarity in (0.9, 0.1)
    assert matcher.model.asked and len(matcher.model.asked[0]) == config.rerank_top


def test_retrieval_report_with_a_pair_model_names_it_and_reranks() -> None:
    pairs = pd.DataFrame(
        {
            "text_a": ["花呗怎么还款", "借呗怎么开通", "花呗逾期了怎么办", "借呗额度怎么提升"],
            "text_b": ["花呗如何还款", "借呗如何开通呢", "花呗怎么还款呢", "借呗额度怎么提高"],
            "label": ["1", "1", "0", "1"],
        }
    )
    settings = load_settings(REPO)
    report = eval_retrieval(settings, pairs=pairs, matcher_name="faq_match", model=PairModel())
    assert "re-scored 1 x PairModel" in report["open_pool"]["matcher"]
    # the stand-in accepts only same-last-character pairs: 花呗怎么还款 / 花呗如何还款, a paraphrase
    accepted = report["pairs"]["at"]["0.5"]
    assert (accepted["accepted_share"], accepted["precision"]) == (0.25, 1.0)
    with pytest.raises(ValueError, match="unknown matcher 'bm25'"):
        eval_retrieval(settings, pairs=pairs, matcher_name="bm25")


def test_the_gateway_asks_its_faq_match_deployment_once_per_shortlist() -> None:
    from crm.conversation.models import HandleMatcher

    class Call:
        def __init__(self, answers: list[dict]):
            self.answers = answers

        def result(self, timeout_s: float) -> list[dict]:
            return self.answers

    class PredictMany:
        def __init__(self):
            self.calls: list[list[dict]] = []

        def remote(self, items: list[dict]) -> Call:
            self.calls.append(items)
            return Call([{"score": 0.25 * i, "label": "0", "model_name": "faq_match"}
                         for i, _ in enumerate(items)])  # fmt: skip

    class Handle:
        predict_many = PredictMany()

    matcher = HandleMatcher(Handle(), timeout_s=1.0)
    assert matcher.score("花呗怎么还款", ["a", "b", "c"]) == [0.0, 0.25, 0.5]
    (items,) = Handle.predict_many.calls
    assert [i["text_b"] for i in items] == ["a", "b", "c"] and items[0]["text_a"] == "花呗怎么还款"
    assert len({i["id"] for i in items}) == 3 and matcher.score("x", []) == []
