"""Signed product codes: format, keyring, batches, verification and export. No network I/O."""
