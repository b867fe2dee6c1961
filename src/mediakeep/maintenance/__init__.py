"""Maintenance: migration, URL import, gc, verify, stats, doctor and scheduled clean-up."""
