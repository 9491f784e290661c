"""Callback delivery: outbox rows to HTTPS POSTs on the retry schedule."""
