"""Data: the MVTec-layout reader, validation, demo-data generator and augmentation."""
