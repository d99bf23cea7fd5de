"""The simulated web: immutable snapshots, search index, fetch/search/links, HTTP server, call log."""
