"""The ``.rpg`` file, in layers (the public names are in :mod:`rpg_core.compact`):

- :mod:`.container`: the safetensors container, read strictly; every failure is a
  :class:`~.container.ContainerError` with a :class:`~.container.ContainerErrorCode` (no torch).
- :mod:`.header`: the ``.rpg`` metadata on top of it, validated into a ``CompactHeader``
  (format and generator versions, rings, spec, ring dtype, keys, inference; no torch).
- :mod:`.keys`: keyed files (the seeds left out and handed back as a key).
- :mod:`.plan`: the header checked against the architecture on the meta device.
- :mod:`.torchvision_models`: torchvision classification models, rebuilt by name.
- :mod:`.save`, :mod:`.load`, :mod:`.inspect`: writing, rebuilding, describing and exporting.

``docs/FORMAT.md`` is the specification.
"""
