"""Processes under trio: a claude child's whole life in its own process group, and
the groups a killed server left behind."""
