"""Who may do what: projects, scoped API keys, people signed in through OpenID Connect, and
the audit log of administrative actions. ``permissions`` is the one check the API and the
dashboard both call."""
