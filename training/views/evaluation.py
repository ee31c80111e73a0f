"""Views for evaluation."""
