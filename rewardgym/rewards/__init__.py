"""Reward sources: programs, prelude, sandbox, composition, analysis."""
