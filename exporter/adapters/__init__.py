"""Adapters around third-party libraries whose errors must not leak into the engine."""
