"""Calibration: observers, threshold search, calibration data, cache and report."""
