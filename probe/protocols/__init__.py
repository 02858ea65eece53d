"""Protocol packages: each one's port identification, wire codec, collectors and checks."""
