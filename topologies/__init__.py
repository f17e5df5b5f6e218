"""Reference topologies: each module exposes `app` for `kstream run topologies.<name>:app`,
`build()` for tests, and a `DEMO` spec for `kstream demo <name>`."""
