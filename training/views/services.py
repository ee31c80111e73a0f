"""Views for services."""
