"""Events out: genvault as a Standard Webhooks sender (outbox, signing, delivery)."""
