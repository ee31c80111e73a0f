"""Views for datasets."""
