"""Tokens, signatures and redaction of secrets."""
