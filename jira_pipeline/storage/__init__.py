"""Talking to MongoDB: client factory, indexes, upserts, IO manager, token encryption."""
