"""Edge deployment: engine building and the camera-side runtime (not built yet; see README)."""
