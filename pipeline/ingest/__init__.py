"""Ingest: WARC and clickstream files into the store (pages, links, navigation counts)."""
