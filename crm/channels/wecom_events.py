"""WeCom callback events (MsgType=event) and the WeCom extras a gateway replica holds.

The callback URL receives, besides customer messages, events:
- `kf_msg_or_event` (WeChat Customer Service): pull with kf/sync_msg (crm/channels/wecom_kf.py);
- `change_external_contact` / `add_external_contact`: a customer added a staff member, often
  by scanning a channel QR code whose `State` names it (crm/channels/wecom_contacts.py);
- `change_external_contact` / `edit_external_contact` and `change_external_tag`: tags edited in
  WeCom, read back with `externalcontact/get` into the profile's WeCom tags;
- `subscribe` / `enter_agent`: the member followed or opened the app: a passive welcome;
- `click` (a menu item) is not an event here: the adapter reads its EventKey as the member's
  words (crm/channels/wecom.py), so menus reach the dialogue like typed text.
Unknown events are acknowledged (an empty 200) and ignored, as WeCom expects.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from typing import Any

from crm.channels.senders import WeComAppSender
from crm.channels.wecom import field
from crm.channels.wecom_contacts import contacts_of
from crm.channels.wecom_kf import KfAdapter, KfDesk, KfService, KfStore
from crm.channels.wecom_media import MediaStore
from crm.messages import MessageHandler, Reply

log = logging.getLogger(__name__)


class WeComEvents:
    def __init__(self, welcome: str, kf: KfService | None = None, contacts: Any = None):
        self.welcome, self.kf, self.contacts = welcome, kf, contacts

    async def __call__(self, plain: ET.Element, handler: MessageHandler) -> Reply | None:
        """Handle one event; a Reply is answered passively (encrypted) to the member."""
        event = (field(plain, "Event") or "").strip()
        if event == "kf_msg_or_event" and self.kf is not None:
            token, open_kfid = field(plain, "Token") or "", field(plain, "OpenKfId") or ""
            if open_kfid:
                self.kf.on_event(token, open_kfid, handler)
            return None
        if event in ("change_external_contact", "change_external_tag"):
            if self.contacts is not None:
                await self.contacts.on_event(plain)
            return None
        if event in ("subscribe", "enter_agent") and self.welcome:
            return Reply(text=self.welcome, intent=f"event.{event}")
        log.info("WeCom event %s acknowledged, not used", event or "?")
        return None


def attach_wecom(parts: Any, cipher: Any) -> None:
    """WeCom's extras on a gateway replica whose WeCom channel and app secret are configured:
    media storage, WeChat Customer Service, the events dispatcher, the desk's kf state sync."""
    settings, channels = parts.settings, parts.channels
    api = channels.outbound.get("wecom")
    if not isinstance(api, WeComAppSender):
        return
    wecom = settings.channels.wecom
    path = settings.root / settings.channels.store
    if cipher is not None:
        channels.media = MediaStore(path, cipher, api, channels.identity)
    kf = KfService(api, channels, KfStore(path), channels.media, wecom.kf_welcome)
    channels.router.routes[KfAdapter.name] = KfAdapter(api.corp_id)
    channels.outbound[KfAdapter.name] = kf.sender
    contacts = contacts_of(parts, api, path)
    channels.events = WeComEvents(wecom.welcome, kf, contacts)
    parts.desk = KfDesk(parts.desk, kf)
    parts.kf, parts.contacts = kf, contacts
