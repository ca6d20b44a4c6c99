"""What lives on disk: atomic writes and guarded reads, the config file, job records,
and what a project directory says about itself."""
