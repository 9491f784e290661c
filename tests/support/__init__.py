"""Helpers shared by the test tiers: image factories, a loopback image server, a test engine."""
