"""Pure rules: no I/O, no imports from the other rooms."""
