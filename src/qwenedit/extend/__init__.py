"""Prompt extension: rewriting the user's edit instruction before the model sees it."""
