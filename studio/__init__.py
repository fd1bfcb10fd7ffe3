"""RPG Studio as one product: the top of the import graph, where the layers are put together.

``studio.app`` composes the web app (the REST API of ``api`` and the dashboard of ``frontend``);
``studio.cli`` registers the ``rpg`` commands that serve it (``rpg api``, ``rpg serve``). Nothing
below imports this package.
"""
