"""The webhook service's configuration (``OT_`` and ``OT_WEBHOOKS_`` variables)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from otcommon.settings import ConfigurationError, ServiceSettings


class WebhookSettings(ServiceSettings):
    """Everything ``python -m webhooks`` reads from the environment."""

    webhooks_platform_secrets: SecretStr | None = Field(
        default=None,
        description="Signing secrets of the platform endpoint, comma-separated (several while one rotates).",
    )
    webhooks_connect_secrets: SecretStr | None = Field(
        default=None,
        description="Signing secrets of the Connect endpoint, comma-separated (several while one rotates).",
    )
    webhooks_tolerance_seconds: int = Field(
        default=300, ge=1, description="Refuse signatures whose timestamp is further than this from now."
    )
    webhooks_max_body_bytes: int = Field(
        default=256 * 1024, ge=1024, description="Refuse bodies larger than this (Stripe's are far smaller)."
    )
    webhooks_livemode: bool = Field(
        default=False, description="Accept only live-mode events when true, only test-mode events when false."
    )
    webhooks_changes_topic: str = Field(
        default="transaction-changes", description="Topic of TransactionChanged announcements."
    )
    webhooks_payout_queue: str = Field(
        default="stripe-events-queue",
        description=(
            "Queue of StripePayoutChanged and StripeTransferCreated messages for the enricher, "
            "which owns the deposit and routing fields."
        ),
    )
    webhooks_sweep_seconds: float = Field(
        default=30.0, gt=0, description="How often recorded but unapplied events are looked for."
    )
    webhooks_sweep_age_seconds: float = Field(
        default=10.0, ge=0, description="A recorded event is swept once it is this old and still unapplied."
    )
    webhooks_apply_workers: int = Field(
        default=8, ge=1, le=64, description="Events applied at once by the in-process workers."
    )
    webhooks_apply_while_answering: int = Field(
        default=2,
        ge=0,
        le=64,
        description="Events applied at once while deliveries are being recorded (0: apply only between "
        "deliveries); the answers come first, this much applying goes on beside them.",
    )
    webhooks_apply_batch_size: int = Field(
        default=50,
        ge=1,
        le=500,
        description="Queued events a worker takes at once, reading their payments' index documents and "
        "transactions with two queries instead of four point reads each.",
    )
    webhooks_apply_batch_wait_seconds: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="How long a worker waits after an event arrives for more to join its batch.",
    )
    stripe_api_key: SecretStr | None = Field(
        default=None,
        description="Stripe key with read access to events; only `replay --since` needs it.",
    )
    stripe_api_base: str | None = Field(
        default=None,
        description="Stripe API base URL; unset means Stripe itself (set for the local sandbox).",
    )
    stripe_max_network_retries: int = Field(
        default=3,
        ge=0,
        le=10,
        description="Retries of network errors, 429s, 409s and 5xx in one Stripe call.",
    )
    stripe_requests_per_second: float = Field(
        default=10.0, gt=0, description="Stripe request rate of a replay (leaves room for the enricher's)."
    )
    stripe_timeout_seconds: float = Field(default=30.0, gt=0, description="Per-request Stripe timeout.")
    webhooks_processes: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Server processes sharing the HTTP port (SO_REUSEPORT), each a whole service "
        "(answering only when `OT_WEBHOOKS_APPLY_PROCESSES` is set); 1 on Kubernetes, where replicas "
        "scale instead; up to the cores of a host serving alone.",
    )
    webhooks_apply_processes: int = Field(
        default=0,
        ge=0,
        le=16,
        description="Processes that only apply events, beside the `OT_WEBHOOKS_PROCESSES` that then only "
        "answer (each hands what it records to one of them over a pipe); 0: each process applies what it "
        "answers. Where applying takes a core or more, this keeps the answers fast.",
    )
    webhooks_apply_niceness: int = Field(
        default=4,
        ge=0,
        le=19,
        description="How much lower the CPU priority (nice) of the apply processes is, so that the kernel "
        "runs the answers first when the cores are busy.",
    )
    webhooks_hand_off_fd: int | None = Field(
        default=None,
        ge=0,
        description="Set by `serve` for its answer processes: the pipe to hand recorded events over.",
    )
    webhooks_apply_from_fds: str | None = Field(
        default=None,
        description="Set by `serve` for its apply processes: the pipes to read events from "
        "(comma-separated).",
    )
    webhooks_reuse_port: bool = Field(
        default=False,
        description="Listen with SO_REUSEPORT (set for the processes `OT_WEBHOOKS_PROCESSES` starts).",
    )
    webhooks_http_host: str = Field(default="0.0.0.0", description="HTTP listen address.")  # noqa: S104
    webhooks_http_port: int = Field(default=8082, ge=0, le=65535, description="HTTP listen port.")

    def require_secrets(self) -> None:
        """Serving needs at least one signing secret: ConfigurationError naming the variables."""
        if not self.signing_secrets:
            raise ConfigurationError(
                "invalid configuration:\n  set OT_WEBHOOKS_PLATFORM_SECRETS or OT_WEBHOOKS_CONNECT_SECRETS"
            )

    def require_stripe_key(self) -> SecretStr:
        """Reading Stripe's event list needs a key: ConfigurationError naming the variable."""
        if self.stripe_api_key is None or not self.stripe_api_key.get_secret_value():
            raise ConfigurationError(
                "invalid configuration:\n  set OT_STRIPE_API_KEY (read access to events)"
            )
        return self.stripe_api_key

    @property
    def apply_from(self) -> list[int]:
        """The pipes an apply process takes events from (none for a process that answers)."""
        text = self.webhooks_apply_from_fds or ""
        try:
            return [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise ConfigurationError(
                f"invalid configuration:\n  OT_WEBHOOKS_APPLY_FROM_FDS must list file descriptors: {text!r}"
            ) from None

    @property
    def signing_secrets(self) -> list[str]:
        """Every secret a delivery may be signed with: the platform's and the Connect endpoint's."""
        secrets: list[str] = []
        for joined in (self.webhooks_platform_secrets, self.webhooks_connect_secrets):
            if joined is not None:
                secrets += [part.strip() for part in joined.get_secret_value().split(",") if part.strip()]
        return secrets
