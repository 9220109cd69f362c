"""Jobs: states, records, submission, provider answers, polling and operator retry."""
