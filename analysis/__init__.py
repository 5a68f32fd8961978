"""Turning finished runs (their ``result.json`` records) into DataFrames, tables, figures and reports."""
