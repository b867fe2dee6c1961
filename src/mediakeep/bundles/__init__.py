"""Multi-file outputs stored as one versioned archive."""
