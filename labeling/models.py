# Labels and images live in projects.models; labeling holds the screens and the
# rules for changing them.
