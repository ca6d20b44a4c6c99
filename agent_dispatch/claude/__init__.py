"""The Claude CLI, sans IO: argv, prompt and environment in; decoded output and
classified outcomes out. Nothing here imports trio or touches a process."""
