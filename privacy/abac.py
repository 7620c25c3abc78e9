"""Attribute-based access control: policies are data (YAML), evaluated deny-by-default.

A request is allowed only if some `permit` rule matches and no `deny` rule does. On top of the
file, one invariant cannot be configured away: a resource of another tenant is always denied.
A policy file with an error is refused when loaded, naming the file line that is wrong, so a
typo can never silently widen (or close) access at run time.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from privacy.auth import ROLES, Subject

ATTRIBUTES = {
    "subject": {"id", "tenant", "role", "department", "clearance", "purpose", "method"},
    "resource": {"type", "id", "tenant", "owner", "sensitivity", "department"},
    "context": {"hour", "weekday", "channel", "purpose", "action"},
}
OPERATORS = ("==", "!=", "<=", ">=", "<", ">", "not in", "in")
CONDITION = re.compile(r"^\s*(\S+)\s+(==|!=|<=|>=|<|>|not in|in)\s+(.+?)\s*$")
REFERENCE = re.compile(r"^(subject|resource|context)\.([a-z_]+)$")
MASKING_LEVELS = ("strict", "standard", "review")


class PolicyError(ValueError):
    """The policy file is wrong; the message names the file and line."""


@dataclass(frozen=True)
class Resource:
    """What is being accessed (`resource.<field>`); tenant None only for tenant-free things."""

    type: str
    id: str | None = None
    tenant: str | None = None
    owner: str | None = None
    # 0 public, 1 internal, 2 personal, 3 sensitive
    sensitivity: int = 0
    department: str | None = None


@dataclass(frozen=True)
class Context:
    """Request circumstances (`context.<field>`): local time, channel, declared purpose."""

    action: str
    hour: int
    weekday: int  # 0 Monday .. 6 Sunday
    channel: str | None = None
    purpose: str | None = None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str  # the deciding rule id, or "default-deny" / "tenant-isolation"
    reason: str
    masking: str = "strict"

    @property
    def effect(self) -> str:
        return "permit" if self.allowed else "deny"


@dataclass(frozen=True)
class Condition:
    text: str
    left: Reference | Any  # an attribute reference or a literal
    operator: str
    right: Reference | Any

    def holds(self, attributes: dict[str, dict[str, Any]]) -> bool:
        left, right = resolve(self.left, attributes), resolve(self.right, attributes)
        if left is None or right is None:
            return False  # a missing attribute never grants (or matches) anything
        try:
            return compare(left, self.operator, right)
        except TypeError:
            return False


@dataclass(frozen=True)
class Rule:
    id: str
    effect: str
    actions: tuple[str, ...]
    roles: tuple[str, ...] | None
    conditions: tuple[Condition, ...]
    description: str = ""

    def applies(self, action: str, attributes: dict[str, dict[str, Any]]) -> bool:
        if self.roles is not None and attributes["subject"]["role"] not in self.roles:
            return False
        if not any(fnmatch.fnmatchcase(action, pattern) for pattern in self.actions):
            return False
        return all(condition.holds(attributes) for condition in self.conditions)


@dataclass(frozen=True)
class MaskingRule:
    id: str
    level: str
    roles: tuple[str, ...] | None
    conditions: tuple[Condition, ...]


@dataclass
class Policy:
    rules: list[Rule]
    actions: set[str]
    masking_rules: list[MaskingRule] = field(default_factory=list)
    masking_default: str = "strict"
    source: str = "<policy>"

    def evaluate(
        self, subject: Subject, action: str, resource: Resource, context: Context
    ) -> Decision:
        """Deny overrides permit; nothing matching is a deny; another tenant is always a deny."""
        masking = self.masking_level(subject, context)
        if action not in self.actions:
            return Decision(False, "unknown-action", f"action {action!r} is not declared", masking)
        if resource.tenant is not None and resource.tenant != subject.tenant:
            return Decision(
                False, "tenant-isolation", "resource belongs to another tenant", masking
            )
        attributes = attribute_view(subject, resource, context)
        permit = None
        for rule in self.rules:
            if not rule.applies(action, attributes):
                continue
            if rule.effect == "deny":
                return Decision(False, rule.id, rule.description or "denied by rule", masking)
            permit = permit or rule
        if permit is None:
            return Decision(False, "default-deny", f"no rule permits {action}", masking)
        return Decision(True, permit.id, permit.description or "permitted by rule", masking)

    def masking_level(self, subject: Subject, context: Context) -> str:
        """The first masking rule that matches the caller decides; else the default."""
        attributes = attribute_view(subject, Resource(type="response"), context)
        for rule in self.masking_rules:
            if rule.roles is not None and subject.role not in rule.roles:
                continue
            if all(c.holds(attributes) for c in rule.conditions):
                return rule.level
        return self.masking_default


def attribute_view(subject: Subject, resource: Resource, context: Context) -> dict[str, dict]:
    return {
        "subject": subject.model_dump(),
        "resource": vars(resource),
        "context": vars(context),
    }


def resolve(operand: Any, attributes: dict[str, dict[str, Any]]) -> Any:
    if isinstance(operand, Reference):
        return attributes[operand.root].get(operand.name)
    return operand


@dataclass(frozen=True)
class Reference:
    root: str
    name: str


def compare(left: Any, operator: str, right: Any) -> bool:
    if operator == "==":
        return left == right
    if operator == "!=":
        return left != right
    if operator == "in":
        return left in right
    if operator == "not in":
        return left not in right
    if operator == "<":
        return left < right
    if operator == "<=":
        return left <= right
    if operator == ">":
        return left > right
    return left >= right


# ---------------------------------------------------------------- loading, with line numbers


class Located:
    """A YAML value plus the 1-based line it starts on, for error messages."""

    def __init__(self, value: Any, line: int):
        self.value, self.line = value, line
        self.key_line = line  # for a mapping value: the line of its key


def located(node: yaml.Node) -> Located:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Located] = {}
        for key_node, value_node in node.value:
            key = yaml.safe_load(yaml.serialize(key_node))
            out[str(key)] = located(value_node)
            out[str(key)].key_line = key_node.start_mark.line + 1
        return Located(out, line)
    if isinstance(node, yaml.SequenceNode):
        return Located([located(item) for item in node.value], line)
    return Located(yaml.safe_load(yaml.serialize(node)), line)


class Loader:
    def __init__(self, source: str):
        self.source = source

    def fail(self, where: Located | int, message: str) -> None:
        line = where if isinstance(where, int) else where.line
        raise PolicyError(f"{self.source} line {line}: {message}")

    def mapping(self, item: Located, what: str, allowed: set[str], required: set[str]) -> dict:
        if not isinstance(item.value, dict):
            self.fail(item, f"{what} must be a mapping")
        for key, value in item.value.items():
            if key not in allowed:
                self.fail(
                    value.key_line, f"{what}: unknown key {key!r}; allowed: {sorted(allowed)}"
                )
        for key in sorted(required - set(item.value)):
            self.fail(item, f"{what}: missing {key!r}")
        return item.value

    def strings(self, item: Located, what: str, choices: set[str] | None = None) -> tuple:
        values = item.value if isinstance(item.value, list) else None
        if values is None or not values:
            self.fail(item, f"{what} must be a non-empty list")
        out = []
        for value in values:
            if not isinstance(value.value, str):
                self.fail(value, f"{what}: {value.value!r} is not a string")
            if choices is not None and value.value not in choices:
                self.fail(value, f"{what}: unknown {value.value!r}; known: {sorted(choices)}")
            out.append(value.value)
        return tuple(out)

    def operand(self, text: str, where: Located) -> Any:
        if match := REFERENCE.match(text):
            root, name = match.groups()
            if name not in ATTRIBUTES[root]:
                known = ", ".join(sorted(ATTRIBUTES[root]))
                self.fail(where, f"unknown attribute {text!r}; {root} has {known}")
            return Reference(root, name)
        if text.split(".")[0] in ATTRIBUTES:
            self.fail(where, f"bad attribute reference {text!r}")
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError:
            self.fail(where, f"cannot read the value {text!r}")

    def conditions(self, item: Located | None, what: str) -> tuple[Condition, ...]:
        if item is None:
            return ()
        if not isinstance(item.value, list):
            self.fail(item, f"{what}.when must be a list of conditions")
        out = []
        for entry in item.value:
            text = entry.value
            match = CONDITION.match(text) if isinstance(text, str) else None
            if match is None:
                self.fail(
                    entry,
                    f"{what}: condition {text!r} is not '<attribute> <op> <value>'"
                    f" with op one of {', '.join(OPERATORS)}",
                )
            left, operator, right = match.groups()
            if not REFERENCE.match(left):
                self.fail(
                    entry,
                    f"{what}: the left side {left!r} must be an attribute like subject.tenant",
                )
            parsed = Condition(
                text, self.operand(left, entry), operator, self.operand(right, entry)
            )
            if operator in ("in", "not in") and not isinstance(parsed.right, list | Reference):
                self.fail(entry, f"{what}: '{operator}' needs a list, e.g. [wecom, web_chat]")
            out.append(parsed)
        return tuple(out)

    def roles(self, item: Located | None, what: str) -> tuple[str, ...] | None:
        return None if item is None else self.strings(item, f"{what}.roles", set(ROLES))


def load_policy(path: Path | str) -> Policy:
    path = Path(path)
    if not path.is_file():
        raise PolicyError(f"policy file {path} does not exist")
    return parse_policy(path.read_text(encoding="utf-8"), str(path))


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Parse and check a policy document; any error raises PolicyError naming the line."""
    loader = Loader(source)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else 1
        raise PolicyError(f"{source} line {line}: YAML syntax: {error.problem}") from None
    if node is None:
        raise PolicyError(f"{source} line 1: empty policy file")
    top = loader.mapping(
        located(node), "policy", {"version", "actions", "rules", "masking"}, {"version", "rules"}
    )
    if top["version"].value != 1:
        loader.fail(top["version"], f"version {top['version'].value!r} unsupported; use 1")
    actions = set(loader.strings(top["actions"], "actions")) if "actions" in top else set()
    rules, seen = [], set()
    if not isinstance(top["rules"].value, list) or not top["rules"].value:
        loader.fail(top["rules"], "rules must be a non-empty list")
    for index, item in enumerate(top["rules"].value):
        what = f"rules[{index}]"
        raw = loader.mapping(
            item,
            what,
            {"id", "effect", "actions", "roles", "when", "description"},
            {"id", "effect", "actions"},
        )
        rule_id = raw["id"].value
        if not isinstance(rule_id, str) or rule_id in seen:
            loader.fail(raw["id"], f"{what}.id {rule_id!r} must be a unique string")
        seen.add(rule_id)
        if raw["effect"].value not in ("permit", "deny"):
            loader.fail(raw["effect"], f"{what}.effect {raw['effect'].value!r}: use permit or deny")
        patterns = loader.strings(raw["actions"], f"{what}.actions")
        for pattern, entry in zip(patterns, raw["actions"].value, strict=True):
            if actions and not fnmatch.filter(actions, pattern):
                loader.fail(entry, f"{what}.actions: {pattern!r} matches no declared action")
        rules.append(
            Rule(
                id=rule_id,
                effect=raw["effect"].value,
                actions=patterns,
                roles=loader.roles(raw.get("roles"), what),
                conditions=loader.conditions(raw.get("when"), what),
                description=str(raw["description"].value) if "description" in raw else "",
            )
        )
    masking_rules, default = parse_masking(loader, top.get("masking"))
    if not actions:
        actions = {p for rule in rules for p in rule.actions if not any(c in p for c in "*?[")}
    return Policy(rules, actions, masking_rules, default, source)


def parse_masking(loader: Loader, item: Located | None) -> tuple[list[MaskingRule], str]:
    if item is None:
        return [], "strict"
    raw = loader.mapping(item, "masking", {"default", "rules"}, {"default"})
    default = raw["default"].value
    if default not in MASKING_LEVELS:
        loader.fail(raw["default"], f"masking.default {default!r}: use one of {MASKING_LEVELS}")
    rules = []
    for index, entry in enumerate(raw["rules"].value if "rules" in raw else []):
        what = f"masking.rules[{index}]"
        spec = loader.mapping(entry, what, {"id", "level", "roles", "when"}, {"id", "level"})
        if spec["level"].value not in MASKING_LEVELS:
            loader.fail(spec["level"], f"{what}.level: use one of {MASKING_LEVELS}")
        rules.append(
            MaskingRule(
                id=str(spec["id"].value),
                level=spec["level"].value,
                roles=loader.roles(spec.get("roles"), what),
                conditions=loader.conditions(spec.get("when"), what),
            )
        )
    return rules, default
