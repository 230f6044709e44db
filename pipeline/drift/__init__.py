"""Drift monitoring: a reference profile of good parts at training time, and two-sample tests
of new line batches against it (design.md "Drift")."""
