"""The bot's own sentences (not FAQ answers, not flow prompts), in Chinese and English."""

from __future__ import annotations

import re

CJK = re.compile(r"[\u4e00-\u9fff]")

REPLIES = {
    "greeting": {
        "zh": "您好！我是智能客服，可以解答业务问题，"
        "也可以帮您挂失银行卡、查询余额、更换预留手机号、预约网点。",
        "en": "Hello! I can answer questions about your account and cards, block a lost card, "
        "check a balance, change your phone number or book a branch appointment.",
    },
    "clarify": {
        "zh": "抱歉，我没有完全理解您的问题，能换个说法再描述一下吗？",
        "en": "Sorry, I'm not sure I understood. Could you say it another way?",
    },
    "queued": {
        "zh": "正在为您转接人工客服，您当前排在第 {position} 位，请稍候。",
        "en": "I'm connecting you to an agent. You are number {position} in the queue.",
    },
    "agent_joined": {
        "zh": "人工客服 {agent} 已接入，请问有什么可以帮您？",
        "en": "Agent {agent} has joined the conversation.",
    },
    "resolved": {
        "zh": "本次人工服务已结束，感谢您的耐心。如还有问题，可随时留言。",
        "en": "The agent has closed this conversation. Write any time if you need more help.",
    },
    "back_to_bot": {
        "zh": "已为您转回智能客服，请问还有什么可以帮您？",
        "en": "You're back with the assistant. What else can I do for you?",
    },
    "feedback_thanks": {
        "zh": "感谢您的评价！",
        "en": "Thank you for your feedback!",
    },
}


def language_of(text: str) -> str:
    return "zh" if CJK.search(text) else "en"


def reply(name: str, language: str, **values: object) -> str:
    return REPLIES[name][language].format(**values)
