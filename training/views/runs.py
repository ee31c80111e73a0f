"""Views for runs."""
