"""Rewards: campaigns, tier-weighted draws, budgets and the points ledger (sans-I/O)."""
