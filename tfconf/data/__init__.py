"""Data sources. Nothing here downloads: data comes from files the user has or packages that ship it."""
