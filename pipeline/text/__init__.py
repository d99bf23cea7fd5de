"""Shared text helpers: tokens, sentences, answer normalisation and matching."""
