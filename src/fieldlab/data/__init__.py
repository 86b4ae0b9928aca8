"""Corpus conventions (schema), loading and transforms."""
