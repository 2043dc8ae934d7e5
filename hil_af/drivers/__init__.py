"""Drivers: frame sources and lens actuators opened by URL (see registry)."""
