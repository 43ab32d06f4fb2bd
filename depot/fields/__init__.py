"""Files attached to database rows: the stored JSON value, its ORM trackers, filters and image types."""
