"""Self-contained HTML reports: every image inline, no external scripts, styles or fonts."""
