"""The HTTP surface: app factory, auth, one router per resource."""
