"""params.yaml `privacy:`: policies, keys, the audit trail, tenancy and request limits."""

from __future__ import annotations

from pydantic import Field

from settings.base import Strict


class JwtSettings(Strict):
    """Which tokens are accepted: HS256 with a shared secret and/or RS256 with a public key."""

    algorithms: list[str] = Field(default_factory=lambda: ["HS256", "RS256"])
    # Name of the environment variable holding the HS256 secret (never the secret itself).
    hs256_secret_env: str = "SCRM_JWT_SECRET"
    # PEM file with the RS256 public key (relative to the project root), optional.
    rs256_public_key: str | None = None
    # Checked when set (params.yaml sets both): a token for another audience or issuer is 401.
    issuer: str | None = "scrm-platform"
    audience: str | None = "scrm-gateway"
    leeway_s: int = Field(30, ge=0)


class RateLimitSettings(Strict):
    """Token bucket per subject: `rate_per_s` refill, `burst` capacity."""

    rate_per_s: float = Field(5.0, gt=0)
    burst: int = Field(20, ge=1)


class TenancySettings(Strict):
    """Whose customers are whose (docs/privacy.md, "Tenants").

    Customer ids are one namespace (the Feast entity), each id owned by one tenant: the
    customers loaded from the data sets belong to `default_tenant`, which also owns this
    deployment's conversation layer (channels, agent desk); a customer first written through
    the API (`POST /v1/customers/{id}/events`) belongs to the writer's tenant, recorded in
    `directory_db`.
    """

    default_tenant: str = Field("default", min_length=1, max_length=64)
    directory_db: str = "data/privacy/customers.db"
    # Sensitivity of a customer's features (0 public .. 3 sensitive): callers whose clearance is
    # lower are refused (policies.yaml deny-above-clearance).
    customer_sensitivity: int = Field(1, ge=0, le=3)


class PrivacyConfig(Strict):
    """Where policies, keys and the audit trail live, and the request limits."""

    policy_file: str = "privacy/policies.yaml"
    # Hashed API keys (sha256 of the key, with its subject attributes); see auth.ApiKeyStore.
    api_keys_file: str = "data/privacy/api_keys.json"
    # AES-256 master keys; the env var named by `keyring_env` wins over the file.
    keyring_file: str = "keys/keyring.json"  # outside data/: data backups never hold it
    keyring_env: str = "SCRM_PRIVACY_KEYS"
    # Encrypted personal fields (profile table) and, apart from them so that data backups
    # never hold them, the per-customer data keys that erasure shreds.
    personal_db: str = "data/privacy/personal.db"
    data_keys_db: str = "keys/data_keys.db"
    audit_db: str = "data/privacy/audit.db"
    jwt: JwtSettings = JwtSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    # Routes without a subject (webhooks, health, the WeCom URL check), per client address.
    address_rate_limit: RateLimitSettings = RateLimitSettings(rate_per_s=100.0, burst=500)
    # Nesting depth of a JSON body or frame beyond which it is refused (422) unparsed.
    max_json_depth: int = Field(32, ge=2, le=512)
    tenancy: TenancySettings = TenancySettings()
    max_body_bytes: int = Field(65536, gt=0)
    max_auth_header_bytes: int = Field(8192, gt=0)
    max_batch_items: int = Field(100, gt=0)
    # Time zone of policy conditions on `context.hour` / `context.weekday`.
    timezone: str = "Asia/Shanghai"
