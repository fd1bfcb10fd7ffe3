"""Sub-commands of the ``rpg`` command line (one module each, with ``register(sub)``)."""
