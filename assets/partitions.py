"""Partitions: one WARC partition per WARC file, one clickstream partition per dump file.

Keys are file names. New files become partitions through the sensors in `assets.sensors`
(or `websim run`), never at import.
"""

import dagster as dg

warc_files = dg.DynamicPartitionsDefinition(name="warc_files")
clickstream_files = dg.DynamicPartitionsDefinition(name="clickstream_files")
