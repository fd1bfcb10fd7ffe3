"""The package version (one owner: rpg_core re-exports it; the .rpg writer names it)."""

__version__ = "0.1.0"
