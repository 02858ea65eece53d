"""Human-facing renderings: the terminal tables of scans, profiles and the catalogue."""
