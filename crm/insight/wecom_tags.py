"""Push tags to WeCom's external-contact tag API (企业客户标签), so staff see them in WeCom.

    POST /cgi-bin/externalcontact/add_corp_tag   create missing tags in our tag group
    POST /cgi-bin/externalcontact/mark_tag       add/remove tags on one external contact

An access token comes from /cgi-bin/gettoken (cached until five minutes before it expires,
refreshed once when WeCom answers 40014/42001). Tag ids are remembered per name. Only our own
tag group (`group_name`) is created or changed; tags staff set by hand in WeCom are never
removed, because we only remove ids we added.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

TOKEN_EXPIRED = {40014, 42001}


class WeComTagError(RuntimeError):
    """WeCom refused or could not be reached."""


class WeComTagClient:
    def __init__(
        self,
        corp_id: str,
        secret: str,
        api_base: str = "https://qyapi.weixin.qq.com",
        staff_userid: str = "scrm-bot",
        group_name: str = "SCRM auto tags",
        transport: httpx.BaseTransport | None = None,
    ):
        self.corp_id, self.secret = corp_id, secret
        self.staff_userid, self.group_name = staff_userid, group_name
        self.client = httpx.Client(base_url=api_base, timeout=10.0, transport=transport)
        self.token: tuple[str, float] | None = None
        self.tag_ids: dict[str, str] = {}
        self.lock = threading.Lock()

    def access_token(self, refresh: bool = False) -> str:
        if refresh or self.token is None or self.token[1] <= time.time():
            answer = self.client.get(
                "/cgi-bin/gettoken", params={"corpid": self.corp_id, "corpsecret": self.secret}
            ).json()
            if answer.get("errcode", 0) != 0:
                raise WeComTagError(f"WeCom gettoken: {answer.get('errmsg', answer)}")
            self.token = (answer["access_token"], time.time() + answer["expires_in"] - 300)
        return self.token[0]

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        for refresh in (False, True):
            token = self.access_token(refresh)
            answer = self.client.post(path, params={"access_token": token}, json=body).json()
            code = answer.get("errcode", 0)
            if code == 0:
                return answer
            if code not in TOKEN_EXPIRED:
                break
        raise WeComTagError(f"WeCom {path}: {answer.get('errcode')} {answer.get('errmsg')}")

    def ids_for(self, names: list[str]) -> dict[str, str]:
        """WeCom tag ids of `names`, creating the missing ones in our group."""
        missing = [n for n in names if n not in self.tag_ids]
        if missing:
            answer = self.call(
                "/cgi-bin/externalcontact/add_corp_tag",
                {"group_name": self.group_name, "tag": [{"name": n} for n in missing]},
            )
            for tag in (answer.get("tag_group") or {}).get("tag", []):
                self.tag_ids[tag["name"]] = tag["id"]
            if unknown := [n for n in missing if n not in self.tag_ids]:
                raise WeComTagError(f"WeCom add_corp_tag returned no id for {unknown}")
        return {n: self.tag_ids[n] for n in names}

    def mark(self, external_userid: str, add: list[str], remove: list[str]) -> dict[str, Any]:
        with self.lock:
            add_ids = self.ids_for(add)
            remove_ids = {n: self.tag_ids[n] for n in remove if n in self.tag_ids}
            body = {
                "userid": self.staff_userid,
                "external_userid": external_userid,
                "add_tag": list(add_ids.values()),
                "remove_tag": list(remove_ids.values()),
            }
            if body["add_tag"] or body["remove_tag"]:
                self.call("/cgi-bin/externalcontact/mark_tag", body)
            return {"external_userid": external_userid, "added": add, "removed": list(remove_ids)}

    def close(self) -> None:
        self.client.close()


def wecom_pusher(client: WeComTagClient, identity: Any):
    """A ProfileService pusher: mark the diff on each of the customer's WeCom contacts."""

    def push(tenant: str, customer_id: str, diff: dict[str, list[str]]) -> dict[str, Any]:
        contacts = [s for c, s in identity.identities(tenant, customer_id) if c == "wecom"]
        # Customers who came through a channel QR code (crm/channels/wecom_contacts.py).
        contacts += identity.senders("wecom_external", customer_id)
        if not contacts:
            return {"wecom": "no WeCom contact linked"}
        if not diff["added"] and not diff["removed"]:
            return {"wecom": "nothing changed"}
        try:
            done = [client.mark(c, diff["added"], diff["removed"]) for c in contacts]
        except (WeComTagError, httpx.HTTPError) as error:
            return {"wecom": f"failed: {error}"}
        return {"wecom": done}

    return push
