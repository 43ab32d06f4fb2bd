"""Session fixtures that start real servers (being written: see issue 5)."""
