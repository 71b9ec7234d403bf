"""`make bench`: each figure against a baseline measured in the same run, on the same machine."""
