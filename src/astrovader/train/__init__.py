"""Training: the s3VDC schedule, GMM initialisation, the Lightning module, callbacks and runs."""
