"""Measuring results: alignment stability, identity, expression, flicker, reconstruction."""
