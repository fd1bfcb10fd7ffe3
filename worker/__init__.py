"""RPG Studio worker."""
