"""params.yaml `channels:`: the channel adapters, the identity map and the intake log.

Secrets never sit in params.yaml: each channel names the environment variables holding its
token / key / secret, and a channel whose variables are unset is answered with a 503 that says
which ones to set.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from settings.base import Strict


class WeComSettings(Strict):
    token_env: str = "SCRM_WECOM_TOKEN"
    aes_key_env: str = "SCRM_WECOM_AES_KEY"
    corp_id_env: str = "SCRM_WECOM_CORP_ID"
    # Active sends (agent replies, worker replies): the app's secret and AgentID.
    secret_env: str = "SCRM_WECOM_SECRET"
    agent_id_env: str = "SCRM_WECOM_AGENT_ID"
    api_base: str = "https://qyapi.weixin.qq.com"
    # A signed callback older or newer than this is refused (replay window; WeCom retries a
    # callback within seconds). Seen signatures are remembered for twice the window.
    max_skew_s: float = Field(300.0, gt=0)
    # Passive answer to an app's subscribe / enter_agent event ("" says nothing).
    welcome: str = "您好，我是智能助手，请问有什么可以帮您？"
    # WeChat Customer Service: said on enter_session with its welcome_code ("" says nothing).
    kf_welcome: str = "您好，欢迎咨询！请直接输入您的问题，需要人工时回复“转人工”。"


class DingTalkSettings(Strict):
    app_secret_env: str = "SCRM_DINGTALK_APP_SECRET"
    # DingTalk rejects its own callbacks older than an hour; so do we (replay protection).
    max_skew_s: float = Field(3600.0, gt=0)
    # The platform tenant of the configured robot: a message's tenant is this, never the
    # body's unsigned chatbotCorpId.
    tenant: str = Field("default", min_length=1, max_length=64)
    # Hosts a callback's sessionWebhook may point at (agent replies are POSTed there).
    webhook_hosts: list[str] = Field(
        default_factory=lambda: ["oapi.dingtalk.com", "api.dingtalk.com"]
    )


class WebChatSettings(Strict):
    tenant: str = "default"
    history_turns: int = Field(20, ge=0, description="Transcript lines replayed on reconnect.")
    # Server-issued session tokens (privacy/sessions.py) live this long; `resume` renews one.
    session_ttl_s: float = Field(8 * 3600.0, gt=0)
    # A socket frame over this many bytes closes the socket (1009) before it is parsed.
    max_frame_bytes: int = Field(16384, gt=0)
    # The server pings an idle socket this often and closes it after `idle_timeout_s` silent.
    heartbeat_s: float = Field(20.0, gt=0)
    idle_timeout_s: float = Field(600.0, gt=0)


class MqttSettings(Strict):
    # Off by default: `make run` needs no broker. On: the gateway replica runs the bridge next
    # to its conversation (started and stopped with it), reconnecting while the broker is down.
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(1883, gt=0, lt=65536)
    topic_in: str = "scrm/in/#"
    topic_out_prefix: str = "scrm/out/"
    qos: Literal[0, 1, 2] = 1
    tenant: str = "default"
    # Retained "online" once subscribed, "offline" on stop (and as the broker's last will):
    # kiosks (and tests) know whether a gateway is listening before they publish.
    status_topic: str = "scrm/status/gateway"
    reconnect_s: float = Field(1.0, gt=0, description="Pause before reconnecting to the broker.")


class IntakeSettings(Strict):
    backend: Literal["sqlite", "redis"] = "sqlite"
    path: str = "data/events/intake.db"
    synchronous: Literal["FULL", "NORMAL", "EXTRA"] = "FULL"
    redis_url: str | None = None
    stream: str = "scrm:intake"
    # inline: the route answers with the reply (the worker only retries failures);
    # async: the route acknowledges at once and the worker (one in every gateway replica)
    # answers through the dialogue and delivers on the customer's channel.
    mode: Literal["inline", "async"] = "inline"
    reply_timeout_s: float = Field(4.0, gt=0)  # WeCom retries after 5 s without an answer
    lease_s: float = Field(30.0, gt=0)
    max_attempts: int = Field(5, ge=1)
    backoff_s: float = Field(1.0, ge=0)
    batch: int = Field(32, ge=1)


class ChannelSettings(Strict):
    store: str = "data/events/channels.db"  # identity map + web chat transcripts
    max_body_bytes: int = Field(65536, gt=0)
    max_text_chars: int = Field(512, gt=0)
    wecom: WeComSettings = WeComSettings()
    dingtalk: DingTalkSettings = DingTalkSettings()
    web_chat: WebChatSettings = WebChatSettings()
    mqtt: MqttSettings = MqttSettings()
    intake: IntakeSettings = IntakeSettings()
