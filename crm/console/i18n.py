"""The console's words in Chinese and English: two small dicts, one lookup.

Chinese is the default (the users are in China); a missing Chinese string falls back to the
English one, a missing English one to its key, so a page never shows nothing.
"""

from __future__ import annotations

LANGS = ("zh", "en")

EN = {
    "title": "SCRM console", "login": "Sign in", "logout": "Sign out", "api_key": "API key",
    "language": "Language", "login_help": "Sign in with the API key issued to you "
    "(scrm keys issue).", "login_failed": "Sign-in failed",
    "overview": "Overview", "drill": "Drill-down", "desk": "Agent desk",
    "customers": "Customer 360", "marketing": "Marketing", "models": "Models", "alerts": "Alerts",
    "sessions": "Sessions", "messages": "Messages", "auto_answered_share": "Auto-answered",
    "auto_resolved_share": "Auto-resolved",
    "handoff_rate": "Handoff rate", "handoffs": "Handoffs", "queue_length": "Queue length",
    "queue_wait_s": "Queue wait (median s)", "first_response_s": "First response (median s)",
    "resolution_s": "Resolution (median s)", "csat": "CSAT", "channel": "Channel",
    "intent": "Intent", "range": "Time range", "hours": "hours", "refresh": "Refreshed",
    "by_channel": "By channel", "conversations": "Conversations", "transcript": "Transcript",
    "customer": "Customer", "turns": "Turns", "last_at": "Last message", "none": "Nothing yet",
    "queue": "Queue", "accept": "Accept", "reply": "Reply", "send": "Send",
    "resolve": "Resolve", "outcome": "Outcome", "transfer": "Back to the bot",
    "feedback": "Feedback on the bot", "confirm_intent": "Intent right",
    "correct_intent": "Correct intent", "answer_right": "Answer right",
    "answer_wrong": "Answer wrong", "agent_id": "Agent", "skills": "Skills",
    "register": "Go on duty", "mine": "My conversations", "wait": "Waiting",
    "customer_id": "Customer id", "open": "Open", "profile": "Profile", "tags": "Tags",
    "segment": "Segment", "scores": "Scores", "features": "Features", "relations": "Relations",
    "timeline": "Timeline", "campaigns": "Campaigns", "audience": "Audience",
    "status": "Status", "results": "Results", "experiment": "Experiment",
    "served_models": "Served models", "version": "Version", "mlflow_ui": "MLflow UI",
    "learning_loop": "Learning loop", "feedback_snapshot": "Last feedback snapshot",
    "no_runs": "no runs yet", "mlflow_experiments": "runs in MLflow (monitor-*, online-*)",
    "in_mlflow": "in MLflow", "drift": "Drift", "drift_share": "Drifted columns",
    "experiments_online": "Online experiments", "decision": "Decision", "reason": "Reason",
    "loop_runs": "Loop runs (audited)", "step": "Step",
    "severity": "Severity", "summary": "Summary", "since": "Since", "role": "Role",
    "tenant": "Tenant", "masked_note": "Personal data masked at your clearance",
    "not_allowed": "Your role may not open this page", "reply_text": "Reply to the customer",
    "skip": "Skip to content", "name": "Name", "count": "Count", "value": "Value",
    "kind": "Kind", "state": "State", "load": "Load", "error": "Error",
    "suggested": "Suggested answers (knowledge base)", "use": "Use",
}  # fmt: skip

ZH = {
    "title": "SCRM 控制台", "login": "登录", "logout": "退出", "api_key": "API 密钥",
    "language": "语言", "login_help": "使用发给您的 API 密钥登录（scrm keys issue）。",
    "login_failed": "登录失败", "overview": "总览", "drill": "下钻", "desk": "坐席工作台",
    "customers": "客户 360", "marketing": "营销", "models": "模型", "alerts": "告警",
    "sessions": "会话数", "messages": "消息数", "auto_answered_share": "机器人自答率",
    "auto_resolved_share": "机器人解决率",
    "handoff_rate": "转人工率", "handoffs": "转人工", "queue_length": "排队长度",
    "queue_wait_s": "排队等待（中位秒）", "first_response_s": "首次响应（中位秒）",
    "resolution_s": "解决时长（中位秒）", "csat": "满意度", "channel": "渠道",
    "intent": "意图", "range": "时间范围", "hours": "小时", "refresh": "已刷新",
    "by_channel": "按渠道", "conversations": "会话", "transcript": "对话记录",
    "customer": "客户", "turns": "轮次", "last_at": "最后消息", "none": "暂无数据",
    "queue": "排队", "accept": "接入", "reply": "回复", "send": "发送", "resolve": "结束",
    "outcome": "结果", "transfer": "转回机器人", "feedback": "对机器人的反馈",
    "confirm_intent": "意图正确", "correct_intent": "纠正意图", "answer_right": "回答正确",
    "answer_wrong": "回答错误", "agent_id": "坐席", "skills": "技能组", "register": "上线",
    "mine": "我的会话", "wait": "等待", "customer_id": "客户编号", "open": "打开",
    "profile": "档案", "tags": "标签", "segment": "分群", "scores": "评分",
    "features": "特征", "relations": "关系", "timeline": "时间线", "campaigns": "活动",
    "audience": "人群", "status": "状态", "results": "结果", "experiment": "实验",
    "served_models": "在线模型", "version": "版本", "mlflow_ui": "MLflow 界面",
    "learning_loop": "学习闭环", "feedback_snapshot": "最近的反馈快照", "no_runs": "暂无运行",
    "mlflow_experiments": "MLflow 中的运行（monitor-*、online-*）", "in_mlflow": "（MLflow）",
    "drift": "漂移", "drift_share": "漂移列占比", "experiments_online": "在线实验",
    "decision": "决定", "reason": "原因", "loop_runs": "闭环运行（已审计）", "step": "步骤",
    "severity": "级别", "summary": "摘要", "since": "开始", "role": "角色", "tenant": "租户",
    "masked_note": "个人信息已按您的权限脱敏", "not_allowed": "您的角色无权打开此页",
    "reply_text": "回复客户", "skip": "跳到正文", "name": "名称", "count": "数量",
    "value": "值", "kind": "类型", "state": "状态", "load": "加载", "error": "错误",
    "suggested": "推荐回答（知识库）", "use": "采用",
}  # fmt: skip

WORDS = {"en": EN, "zh": ZH}


def translate(lang: str, key: str) -> str:
    """The word for `key` in `lang` (zh falls back to en, en to the key)."""
    return WORDS.get(lang, ZH).get(key) or EN.get(key) or key


def lang_of(value: str | None) -> str:
    return value if value in LANGS else "zh"


# The education scenario's teacher pages (issue 27).
EN |= {
    "classes": "Classes", "class": "Class", "student": "Student", "mastery": "Mastery",
    "at_risk": "Students at risk", "mean_mastery": "Mean mastery", "weak_skills": "Weak skills",
    "history": "Recent answers", "correct": "Correct", "prerequisites": "Prerequisites",
    "next_skill": "Practise next", "synthetic_note": "Synthetic students (simulated data).",
}  # fmt: skip
ZH |= {
    "classes": "班级学情", "class": "班级", "student": "学生", "mastery": "掌握度",
    "at_risk": "需关注的学生", "mean_mastery": "平均掌握度", "weak_skills": "薄弱知识点",
    "history": "最近作答", "correct": "正确", "prerequisites": "前置知识点",
    "next_skill": "建议下一步练习", "synthetic_note": "模拟学生（合成数据）。",
}  # fmt: skip
