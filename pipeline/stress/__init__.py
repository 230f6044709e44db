"""Stress tests: lighting and optics perturbations and adversarial attacks on the anomaly
score, judged at the deployed threshold (design.md "Stress tests")."""
