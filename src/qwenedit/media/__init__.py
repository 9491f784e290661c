"""Everything that touches outside bytes: the guarded outbound client and image decoding."""
