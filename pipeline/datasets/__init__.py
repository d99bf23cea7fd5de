"""Dataset helpers shared by the synthesis stages: export, splits."""
