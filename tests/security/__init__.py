"""Regression tests for the security review's findings (issue 9) and the SDK suite's differences (issue 16)."""
