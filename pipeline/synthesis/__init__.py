"""Synthesis: evidence chains, hard questions, report tasks, chunking."""
