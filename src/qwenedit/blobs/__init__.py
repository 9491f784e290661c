"""Where result images (and later uploads) live."""
