"""The service's limits on top of the spec's own validation (422 naming the field)."""

from __future__ import annotations

from fastapi import HTTPException

from rpg_core.spec import ExperimentSpec, resolve_train

from .settings import Settings


def limit_errors(
    spec: ExperimentSpec, settings: Settings, prefix: str = ""
) -> list[dict[str, str]]:
    """Each field of ``spec`` over a maximum of ``settings``, as {"field", "message"}."""
    errors = []
    rpg = spec.rpg
    if (
        rpg is not None
        and isinstance(rpg.ring_size, int)
        and rpg.ring_size > settings.max_ring_size
    ):
        errors.append(
            {
                "field": f"{prefix}rpg.ring_size",
                "message": f"at most {settings.max_ring_size} on this server",
            }
        )
    train = resolve_train(spec.train)
    if train["epochs"] > settings.max_epochs:
        errors.append(
            {
                "field": f"{prefix}train.epochs",
                "message": f"at most {settings.max_epochs} on this server",
            }
        )
    if train["batch_size"] > settings.max_batch_size:
        errors.append(
            {
                "field": f"{prefix}train.batch_size",
                "message": f"at most {settings.max_batch_size} on this server",
            }
        )
    return errors


def check_limits(spec: ExperimentSpec, settings: Settings) -> None:
    errors = limit_errors(spec, settings)
    if errors:
        raise HTTPException(422, detail=errors)
