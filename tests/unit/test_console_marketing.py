"""The console's marketing pages over the marketing API's own fixture: campaigns with their
status and audience count, the experiment page, another role refused with a 403 page."""

from __future__ import annotations

import re

from tests.unit.test_console import sign_in
from tests.unit.test_marketing_routes import SPEC, app  # noqa: F401 (the fixture)


def test_marketer_sees_campaigns_with_audience_counts_and_the_experiment(app) -> None:  # noqa: F811
    client, keys, _, _, _ = app
    made = client.post("/v1/marketing/campaigns", json=SPEC, headers=keys["marketer"])
    assert made.status_code == 201, made.text
    cid = made.json()["id"]
    preview = client.post("/v1/marketing/audiences/preview", json=SPEC["audience"],
                          headers=keys["marketer"]).json()  # fmt: skip
    sign_in(client, keys["marketer"]["X-API-Key"])
    page = client.get("/console/marketing").text
    row = re.search(r"<tr><th scope=\"row\">winback</th><td>(\w+)</td>\s*<td data-audience>"
                    r"(\d+) / (\d+)", page)  # fmt: skip
    assert row is not None, page
    assert row.group(1) == "draft"
    assert (int(row.group(2)), int(row.group(3))) == (preview["count"], preview["population"])
    detail = client.get(f"/console/marketing/{cid}")
    assert detail.status_code == 200 and "data-state>draft" in detail.text
    assert client.get("/console/marketing/nope").status_code == 404


def test_a_page_the_role_may_not_open_is_a_403_page_with_its_navigation(app) -> None:  # noqa: F811
    client, keys, _, _, _ = app
    sign_in(client, keys["supervisor"]["X-API-Key"])
    denied = client.get("/console/marketing")
    assert denied.status_code == 403 and "campaign.manage denied" in denied.text
    assert 'data-nav="desk"' in denied.text and 'data-nav="marketing"' not in denied.text
