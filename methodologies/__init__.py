"""Built-in methodology packages, one per methodology (DESIGN §5), each with its factors file.

They register through the ``carbon_points.methodologies`` entry-point group declared in our own
pyproject.toml, exactly as a third-party methodology package would.
"""
