"""HTTP service for a finished run: ``POST /predict``, ``POST /predict/batch``, ``GET /health`` and a demo page."""

from mmsent.serve.app import ServeSettings, create_app

__all__ = ["ServeSettings", "create_app"]
