"""The spec's ``eval`` section: extra evaluation after training (out-of-distribution test sets,
rpg_core.evaluate.ood; severities in docs/OOD.md). Re-exported by :mod:`rpg_core.spec`."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    model_validator,
)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ShiftName = Literal[
    "rotation",
    "gaussian_blur",
    "gaussian_noise",
    "contrast",
    "inversion",
    "occlusion",
    "translation",
]
SHIFTS: tuple[str, ...] = get_args(
    ShiftName
)  # the built-in shifts (rpg_core.evaluate.ood, docs/OOD.md)
MAX_SEVERITY = 5
KEY_RE = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"  # a name under the data root, never a path


class OODSetSpec(_Spec):
    """One out-of-distribution test set: a built-in shift of the validation set at named
    severities (``shift``), or an image folder under the data root (``folder`` + ``class_map``).
    Severity parameters: docs/OOD.md."""

    shift: ShiftName | None = Field(
        None,
        description="a built-in shift of the run's validation images, applied before "
        "normalisation: " + ", ".join(SHIFTS),
    )
    severities: list[Annotated[StrictInt, Field(ge=0, le=MAX_SEVERITY)]] | None = Field(
        None,
        description=f"shift: the severities to score, 0 (identity) to {MAX_SEVERITY}; default 1..5",
    )
    seed: StrictInt = Field(
        0, ge=0, lt=2**31, description="shift: seed of the per-image random draws"
    )
    folder: str | None = Field(
        None,
        pattern=KEY_RE,
        description="an image folder under the data root by name (<root>/<folder>/<class>/*.jpg), "
        "never a path",
    )
    class_map: str | None = Field(
        None,
        pattern=KEY_RE,
        description="folder: the class map <root>/class-maps/<class_map>.json, a JSON object "
        "{folder class: training class name or index, or a list of them}",
    )
    max_images: StrictInt | None = Field(
        None, ge=1, le=1_000_000, description="score at most this many images (a seeded subset)"
    )

    @model_validator(mode="after")
    def _one_kind(self) -> OODSetSpec:
        if (self.shift is None) == (self.folder is None):
            raise ValueError(
                "an eval.ood entry names exactly one of shift (a built-in shift) or folder "
                "(an image folder under the data root)"
            )
        if self.folder is not None and self.class_map is None:
            raise ValueError(
                f"folder {self.folder!r} needs class_map: the name of a JSON file "
                f"<data root>/class-maps/<name>.json mapping its classes to the training classes"
            )
        if self.shift is not None and (self.class_map is not None):
            raise ValueError("class_map applies to folder entries only; remove it")
        if self.folder is not None and self.severities is not None:
            raise ValueError("severities apply to shift entries only; remove them")
        if self.severities is not None and (
            not self.severities or len(set(self.severities)) != len(self.severities)
        ):
            raise ValueError("severities must be a non-empty list without repeats, e.g. [1, 3, 5]")
        return self

    @property
    def levels(self) -> list[int]:
        return list(self.severities) if self.severities is not None else [1, 2, 3, 4, 5]


class EvalSpec(_Spec):
    """Extra evaluation of the trained network (omit: none, at no cost)."""

    ood: list[OODSetSpec] = Field(
        default_factory=list,
        max_length=32,
        description="out-of-distribution test sets, scored after training with the run's own "
        "preprocessing (results: TrainResult.ood, per set and severity, and ood_acc, their mean)",
    )
    ood_each_epoch: StrictBool = Field(
        False,
        description="also score eval.ood at every evaluation (adds ood_acc to each epoch's "
        "metrics); off: only once, after training",
    )
