"""mediakeep: keep AI-generated media for good."""
