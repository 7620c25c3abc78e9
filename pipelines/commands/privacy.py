"""`scrm keys` and `scrm customers`: API keys, encryption keys at rest, erasure."""

from __future__ import annotations

from typing import Annotated

import typer

from pipelines.commands.common import ResultsFp, console, emit, fail, friendly_errors, settings

keys_app = typer.Typer(
    help="API keys of callers, and encryption keys of personal data at rest (docs/privacy.md)."
)
customers_app = typer.Typer(help="Customers' personal data: erasure (right to be forgotten).")


@keys_app.command("rotate")
@friendly_errors
def keys_rotate(
    new_key: Annotated[
        bool, typer.Option("--new-key/--no-new-key", help="Add a fresh key and make it active.")
    ] = True,
    retire: Annotated[
        bool, typer.Option(help="Drop keys no value uses any more (after servers reloaded).")
    ] = False,
    results_fp: ResultsFp = None,
) -> None:
    """Re-encrypt every personal value and data key under the active key, without downtime.

    The first run creates the keyring (params privacy.keyring_file, owner-only); with the
    keyring in $SCRM_PRIVACY_KEYS, values move to that keyring's active key instead.
    """
    from crm.stores import platform_stores
    from privacy.admin import rotate_keys, vault_of
    from privacy.atrest import FieldCipher

    config = settings()
    registry = platform_stores(config, FieldCipher(vault_of(config.privacy, config.root)))
    with console.status("Rotating encryption keys"):
        result = rotate_keys(config.privacy, config.root, registry, new_key, retire)
    emit(result, results_fp)
    console.print(f"[green]✓[/] active key {result['active']}; values by key "
                  f"{result['values_by_key']}", highlight=False)  # fmt: skip


@keys_app.command("issue")
@friendly_errors
def keys_issue(
    subject: Annotated[str, typer.Option(help="Who the key stands for (user or service id).")],
    tenant: Annotated[str, typer.Option(help="Whose data the key may reach.")],
    role: Annotated[
        str,
        typer.Option(help="customer, agent, supervisor, marketer, data_scientist or admin."),
    ],
    department: Annotated[str | None, typer.Option(help="Policy attribute.")] = None,
    clearance: Annotated[
        int, typer.Option(help="0 public, 1 internal, 2 personal, 3 sensitive.")
    ] = 0,
    purpose: Annotated[str | None, typer.Option(help="e.g. fraud_review.")] = None,
    rate: Annotated[
        float | None, typer.Option(help="Own requests/s limit (service keys); default params.")
    ] = None,
    burst: Annotated[int | None, typer.Option(help="Own burst with --rate.")] = None,
) -> None:
    """Issue an API key (send it as X-API-Key): printed once, stored only as its sha256."""
    from pydantic import ValidationError

    from privacy.auth import ApiKeyStore, Subject, readable_validation

    config = settings()
    try:
        who = Subject(
            id=subject, tenant=tenant, role=role, department=department, clearance=clearance,
            purpose=purpose, method="api_key", rate_per_s=rate, burst=burst,
        )  # fmt: skip
    except ValidationError as error:
        fail(readable_validation(error))
    key = ApiKeyStore(config.path(config.privacy.api_keys_file)).issue(who)
    print(key)
    console.print(
        f"[green]✓[/] key {key.split('_')[1]} for {subject} ({role}, tenant {tenant}); it is"
        " shown only now: revoke with scrm keys revoke ID",
        highlight=False,
    )


@keys_app.command("revoke")
@friendly_errors
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The id: scrm_<id>_...")]) -> None:
    """Revoke an API key at once (the gateway reads the key file on every request)."""
    from privacy.auth import ApiKeyStore

    config = settings()
    if not ApiKeyStore(config.path(config.privacy.api_keys_file)).revoke(key_id):
        fail(f"no API key with id {key_id}; see scrm keys list")
    console.print(f"[green]✓[/] key {key_id} revoked", highlight=False)


@keys_app.command("list")
@friendly_errors
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
) -> None:
    """Key ids with their subject and state (never a secret or hash), as JSON."""
    from privacy.auth import ApiKeyStore

    config = settings()
    emit(ApiKeyStore(config.path(config.privacy.api_keys_file)).list(tenant), None)


@customers_app.command("erase")
@friendly_errors
def customers_erase(
    customer_id: Annotated[str, typer.Argument(help="Customer id, e.g. 17850.")],
    tenant: Annotated[
        str | None, typer.Option(help="Only in this tenant (default: every tenant).")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: erasure cannot be undone.")] = False,
    results_fp: ResultsFp = None,
) -> None:
    """Delete a customer's personal data and shred their data keys; the act is audited."""
    from crm.stores import platform_stores
    from privacy.admin import erase, vault_of
    from privacy.atrest import FieldCipher

    if not yes:
        fail(f"erasing customer {customer_id} cannot be undone; add --yes to confirm")
    if not customer_id.strip() or len(customer_id) > 64:
        fail("customer id must be 1-64 characters")
    config = settings()
    vault = vault_of(config.privacy, config.root)
    registry = platform_stores(config, FieldCipher(vault))
    result = erase(config.privacy, config.root, config.event_log, customer_id, registry,
                   tenant, vault=vault)  # fmt: skip
    emit(result, results_fp)
    console.print(
        f"[green]✓[/] erased {customer_id}: {result['profile_fields_deleted']} profile fields, "
        f"{result['data_keys_shredded']} data keys shredded, "
        f"{result['conversation_events_deleted']} conversation events",
        highlight=False,
    )
