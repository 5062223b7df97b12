"""Trigger-to-event resolution, the standard event catalogue, and mapping validation."""
