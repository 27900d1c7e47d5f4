"""A local Jira Cloud stand-in, served over real HTTP, for the demo, tests and benchmarks."""
