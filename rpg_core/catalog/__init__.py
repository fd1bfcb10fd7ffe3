"""The catalog: torch-free facts about what a spec can name, each with one owner.

- :mod:`.tasks`: tasks (classification, pose, multitask), their datasets, architectures, sharing
  variants, metrics and each metric's direction;
- :mod:`.archs`: architecture names and the module that registers each (timm's ``_registry``);
- :mod:`.datasets`: datasets: names and patterns, channels, classes, fixed sizes, system paths;
- :mod:`.methods`: the ways to shrink a network to a parameter budget (``method.name``: rpg,
  width, hashed, prune-global, prune-filters) and how each reads ``method.budget``.

Nothing here imports torch: the spec, the API's validation, the dashboard and the file format
read these facts without the training stack.
"""
