"""Use cases the API routes and the worker call: the seam between the wire and the store."""
