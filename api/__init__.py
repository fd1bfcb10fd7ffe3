"""RPG Studio REST API: FastAPI app, database models, service layer and CLI commands."""
