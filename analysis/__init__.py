"""Measuring rounds against their dense trunk, and showing the results."""
