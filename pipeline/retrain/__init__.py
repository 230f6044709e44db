"""The production loop's decisions: the retraining config, the promotion gate and the
registry moves it makes (promote, roll back), kept free of orchestration."""
