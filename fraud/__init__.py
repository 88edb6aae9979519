"""Fraud rules: geo maths, territories, counterfeit, clone and diversion verdicts (sans-I/O)."""
