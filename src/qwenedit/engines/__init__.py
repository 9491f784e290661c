"""Engines turn an edit job into images. ``load_engine`` picks one by name."""
