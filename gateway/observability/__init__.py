"""Observability: Prometheus metrics, JSON logs, and the history behind ``/dashboard``."""
