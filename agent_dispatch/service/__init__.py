"""The service: the Dispatcher (one CapacityLimiter, the cache, the job nursery) and
what it runs: resolution, async jobs, dialogue, the agent registry, views."""
