"""The command-line face: cyclopts commands and terminal output."""
