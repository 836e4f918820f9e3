"""Stonetown: a Zanzibar-style, relationship-based authorization server."""

__version__ = "0.1.0"
