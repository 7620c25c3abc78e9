"""`scrm eval marketing` small: the structure of its result, no opted-out customer reached,
every protective rule counted, and the true lift's sign recovered from the synthetic truth."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from pipelines.marketing_eval import TRUE_LIFT, campaign, population
from pipelines.marketing_eval import random as eval_random


def test_a_small_campaign_recovers_the_sign_and_spares_the_opted_out() -> None:
    found = campaign(800, seed=3)
    assert found["population"] == 800 and 0 < found["audience"]["count"] < 800
    assert found["opted_out_who_received"] == 0
    removed = found["removed_by_rule"]
    assert removed["opt_out"] > 0 and removed["purpose"] > 0 and removed["cap_day"] > 0
    assert removed["open_conversation"] > 0 and removed["quiet_hours"] == 0
    results = found["results"]
    assert set(results["units"]) == {"control", "offer", "holdout"}
    assert results["srm"]["mismatch"] is False
    assert TRUE_LIFT > 0 and results["conversion"]["offer"]["lift"] > 0
    assert found["sent"].get("holdout", 0) == 0
    assert sum(found["sent_by_channel"].values()) == found["launch"]["sent"]
    assert found["sent_by_channel"]["wecom"] > 0 and found["sent_by_channel"]["web_chat"] > 0


def test_one_seed_is_one_result() -> None:
    assert campaign(300, seed=5)["results"] == campaign(300, seed=5)["results"]


def test_the_population_is_seeded() -> None:
    one = population(50, eval_random.Random(7))
    two = population(50, eval_random.Random(7))
    assert [r.consent for r in one["records"]] == [r.consent for r in two["records"]]
    assert one["opted_out"] == two["opted_out"]


def test_the_command_writes_its_json(tmp_path) -> None:
    from pipelines.cli import app

    out = tmp_path / "marketing.json"
    ran = CliRunner().invoke(
        app, ["eval", "marketing", "--customers", "400", "--results-fp", str(out)]
    )
    assert ran.exit_code == 0, ran.output
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["command"].startswith("scrm eval marketing --customers 400")
    assert written["seed"] == 0 and "synthetic" in written["data"]
    assert len(written["load_average"]["before"]) == 3
    assert written["hillstrom"]["summary"]["visit/womens_email"]["beats_baseline"] is True
