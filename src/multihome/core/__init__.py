"""The pure core: the data model, config parsing, planning, diffing, the doctor's findings and
the health rules. Nothing here does I/O or keeps state between calls; tests need no root."""
