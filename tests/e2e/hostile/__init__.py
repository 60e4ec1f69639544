"""Hostile request bodies for the property-based fuzz against the real engine."""
