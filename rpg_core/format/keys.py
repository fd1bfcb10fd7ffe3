"""Keyed ``.rpg`` files: the seeds are left out of the file and handed back as a key string,
checked against a salted hash in the metadata (docs/FORMAT.md says what this does and does not
protect). No torch.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import secrets
from typing import Any

from ..exceptions import RPGError, RPGKeyError
from ..rpg import generator
from .container import fail as _fail
from .container import is_int as _is_int
from .header import CompactHeader

log = logging.getLogger(__name__)

KEY_PREFIX = "rpgk1."
KEY_SALT_CONTEXT = b"rpg-studio key check v1\x00"


def _key_check(salt: str, key: str) -> str:
    return hashlib.sha256(KEY_SALT_CONTEXT + bytes.fromhex(salt) + key.encode()).hexdigest()


def _encode_key(model_seed: int, ring_seeds: dict[str, int]) -> str:
    payload = json.dumps({"seed": model_seed, "rings": ring_seeds}, separators=(",", ":"))
    return KEY_PREFIX + base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _decode_key(h: CompactHeader, key: str) -> tuple[int, dict[str, int]]:
    if not isinstance(key, str) or len(key) > 64_000:
        raise RPGKeyError(f"{h.path.name}: the key must be the string save_compact returned")
    if not h.key_salt or not h.key_check or _key_check(h.key_salt, key) != h.key_check:
        raise RPGKeyError(f"{h.path.name}: wrong key for this model (the file is intact: its key "
                          "checksum does not match the key given)")  # fmt: skip
    try:
        body = key[len(KEY_PREFIX) :]
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        seed = generator.check_seed(data["seed"], "key seed")
        rings = {str(k): generator.check_seed(v, "key ring seed") for k, v in data["rings"].items()}
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error, RPGError):
        raise RPGKeyError(f"{h.path.name}: the key matches but cannot be decoded") from None
    return seed, rings


def _seeds_for(h: CompactHeader, key: str | None) -> tuple[int | None, dict[str, int]]:
    """The model seed (None for a plain model) and each ring's seed."""
    if not h.keyed:
        if key is not None:
            log.info("%s is not keyed; the key given is ignored", h.path)
        if h.spec["rpg"] is None:
            return None, {}
        seed = h.spec["rpg"].get("seed")
        if not _is_int(seed) or not 0 <= seed < generator.SEED_LIMIT:
            raise _fail(h.path, "metadata: spec.rpg.seed must be an integer in [0, 2**63)")
        return seed, {r["name"]: r["seed"] for r in h.rings}
    if key is None:
        raise RPGKeyError(f"{h.path.name}: this model is keyed; pass the key it was saved with "
                          "(load_compact(path, key=...) or --key)")  # fmt: skip
    seed, rings = _decode_key(h, key)
    if set(rings) != {r["name"] for r in h.rings}:
        raise RPGKeyError(f"{h.path.name}: the key names other rings than the file")
    return seed, rings


def _make_keyed(
    spec: dict[str, Any], ring_specs: list[dict[str, Any]], meta: dict[str, str]
) -> str:
    seed = int(spec["rpg"]["seed"])
    if seed < 2**32:
        log.warning("keyed save: the model seed %d is small and can be guessed; a keyed model "
                    "is only as secret as its seed (train it with a random 63-bit seed)", seed)  # fmt: skip
    key = _encode_key(seed, {r["name"]: int(r["seed"]) for r in ring_specs})
    spec["rpg"]["seed"] = None
    for r in ring_specs:
        r["seed"] = None
    salt = secrets.token_hex(16)
    meta.update(
        spec=json.dumps(spec, sort_keys=True, separators=(",", ":")),
        rings=json.dumps(ring_specs, separators=(",", ":")),
        keyed="true",
        key_salt=salt,
        key_check=_key_check(salt, key),
    )
    return key
