"""Storages: bytes and metadata in and out of a backing store.  No HTTP, no ORM."""
