"""Benchmark harness for mediakeep against rclone and naive download-then-upload peers."""
