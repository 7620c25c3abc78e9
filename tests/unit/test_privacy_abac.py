"""The ABAC engine: policies as data, deny by default, errors refused with their line."""

from __future__ import annotations

from pathlib import Path

import pytest

from privacy.abac import Context, PolicyError, Resource, load_policy, parse_policy
from privacy.auth import ROLES, Subject

POLICY_FILE = Path(__file__).resolve().parents[2] / "privacy" / "policies.yaml"
MINIMAL = """\
version: 1
actions: [customer.read, customer.write]
rules:
  - id: agents-read
    effect: permit
    roles: [agent]
    actions: [customer.read]
    when: ["resource.tenant == subject.tenant"]
  - id: no-vip
    effect: deny
    actions: ["customer.*"]
    when: ["resource.department in [vip]"]
"""


def subject(role="agent", tenant="acme", **extra) -> Subject:
    return Subject(id="u1", tenant=tenant, role=role, clearance=3, **extra)


def context(action="customer.read", hour=10, channel=None, purpose=None) -> Context:
    return Context(action, hour, 2, channel, purpose)


def test_permit_deny_overrides_and_default_deny() -> None:
    policy = parse_policy(MINIMAL)
    customer = Resource("customer", "c1", "acme", sensitivity=2)
    assert policy.evaluate(subject(), "customer.read", customer, context()).rule == "agents-read"
    denied = policy.evaluate(subject("marketer"), "customer.read", customer, context())
    assert (denied.allowed, denied.rule) == (False, "default-deny")
    vip = Resource("customer", "c2", "acme", department="vip")
    assert policy.evaluate(subject(), "customer.read", vip, context()).rule == "no-vip"
    write = policy.evaluate(subject(), "customer.write", customer, context("customer.write"))
    assert not write.allowed
    unknown = policy.evaluate(subject(), "customer.delete", customer, context())
    assert (unknown.allowed, unknown.rule) == (False, "unknown-action")


def test_other_tenant_is_denied_even_if_a_rule_forgets_the_tenant() -> None:
    careless = parse_policy(
        "version: 1\nrules:\n  - {id: everyone, effect: permit, actions: [customer.read]}\n"
    )
    other = Resource("customer", "c9", "globex")
    decision = careless.evaluate(subject(), "customer.read", other, context())
    assert (decision.allowed, decision.rule) == (False, "tenant-isolation")
    assert careless.evaluate(subject(), "customer.read", Resource("customer", "c1", "acme"),
                             context()).allowed  # fmt: skip


def test_missing_attribute_never_matches() -> None:
    policy = parse_policy(
        "version: 1\nrules:\n  - id: by-channel\n    effect: permit\n    actions: [a.b]\n"
        "    when: ['context.channel in [wecom]', 'resource.tenant == subject.tenant']\n"
    )
    acme = Resource("x", None, "acme")
    assert policy.evaluate(subject(), "a.b", acme, context(channel="wecom")).allowed
    assert not policy.evaluate(subject(), "a.b", acme, context(channel=None)).allowed
    assert not policy.evaluate(subject(), "a.b", acme, context(channel="sms")).allowed


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            "version: 1\nrules:\n  - id: a\n    effect: allow\n    actions: [x]\n",
            4,
            "effect 'allow': use permit or deny",
        ),
        (
            "version: 1\nrules:\n  - id: a\n    effect: permit\n    actions: [x]\n"
            "    roles: [agent, boss]\n",
            6,
            "unknown 'boss'",
        ),
        (
            "version: 1\nrules:\n  - id: a\n    effect: permit\n    actions: [x]\n    when:\n"
            "      - resource.tenant == subject.tenant\n      - subject.salary > 3\n",
            8,
            "unknown attribute 'subject.salary'",
        ),
        (
            "version: 1\nrules:\n  - id: a\n    effect: permit\n    actions: [x]\n"
            "    when: ['tenant is acme']\n",
            6,
            "is not '<attribute> <op> <value>'",
        ),
        (
            "version: 1\nrules:\n  - id: a\n    effect: permit\n    actions: [x]\n"
            "    colour: red\n",
            6,
            "unknown key 'colour'",
        ),
        ("version: 1\nrules:\n  - id: a\n    effect: permit\n", 3, "missing 'actions'"),
        ("version: 1\nrules:\n  - id: a\n    effect: permit\n    actions: [x\n", 6, "YAML syntax"),
        (
            "version: 1\nactions: [customer.read]\nrules:\n  - id: a\n    effect: permit\n"
            "    actions: [customer.raed]\n",
            6,
            "matches no declared action",
        ),
        ("version: 2\nrules: []\n", 1, "version 2 unsupported"),
        (
            "version: 1\nrules:\n  - {id: a, effect: permit, actions: [x]}\n"
            "  - {id: a, effect: deny, actions: [x]}\n",
            4,
            "must be a unique string",
        ),
        (
            "version: 1\nrules:\n  - {id: a, effect: permit, actions: [x]}\nmasking:\n"
            "  default: naked\n",
            5,
            "masking.default 'naked'",
        ),
        (
            "version: 1\nrules:\n  - id: a\n    effect: permit\n    actions: [x]\n"
            "    when: ['context.channel in wecom']\n",
            6,
            "needs a list",
        ),
    ],
)
def test_policy_errors_name_the_line(text, line, message) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "policies.yaml")
    assert f"policies.yaml line {line}:" in str(caught.value)
    assert message in str(caught.value)


def test_missing_policy_file_is_refused(tmp_path) -> None:
    with pytest.raises(PolicyError, match="does not exist"):
        load_policy(tmp_path / "nope.yaml")


def test_shipped_policy_loads_and_covers_every_role() -> None:
    policy = load_policy(POLICY_FILE)
    permitted_roles = {r for rule in policy.rules if rule.effect == "permit" for r in rule.roles}
    assert permitted_roles == set(ROLES)
    # every permit rule of the shipped file pins the tenant explicitly, too
    for rule in policy.rules:
        if rule.effect == "permit":
            assert any(c.text == "resource.tenant == subject.tenant" for c in rule.conditions)


def test_masking_level_follows_caller_attributes() -> None:
    policy = load_policy(POLICY_FILE)
    level = policy.masking_level
    assert level(subject("agent"), context()) == "standard"
    assert level(subject("supervisor"), context(purpose="fraud_review")) == "review"
    assert level(subject("supervisor"), context(purpose="care")) == "standard"
    assert level(subject("agent"), context(purpose="fraud_review")) == "standard"
    assert level(subject("marketer"), context()) == "strict"
    assert level(subject("data_scientist"), context()) == "strict"


def test_context_time_rule_of_the_shipped_policy() -> None:
    policy = load_policy(POLICY_FILE)
    customer = Resource("customer", "c1", "acme", sensitivity=2)
    agent = Subject(id="a", tenant="acme", role="agent", clearance=2)
    assert policy.evaluate(agent, "customer.read", customer, context(hour=10)).allowed
    night = policy.evaluate(agent, "customer.read", customer, context(hour=3))
    assert (night.allowed, night.rule) == (False, "deny-agents-off-hours")
    unmask = policy.evaluate(
        Subject(id="s", tenant="acme", role="supervisor", clearance=3, purpose="fraud_review"),
        "pii.unmask", customer, context("pii.unmask", purpose="fraud_review"),
    )  # fmt: skip
    assert unmask.allowed
    assert not policy.evaluate(agent, "pii.unmask", customer, context("pii.unmask")).allowed
