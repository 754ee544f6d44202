"""Tests of archkit.report and the report/plot commands."""
