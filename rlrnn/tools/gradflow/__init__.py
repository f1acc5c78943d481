"""Gradient flow through time, and what gradient clipping does to it."""
