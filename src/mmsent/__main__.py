"""``python -m mmsent`` runs the CLI."""

from mmsent.cli import app

app()
