"""Package data `adg.data`: the in-repository sample pool that `adg run` reads by default, the
task-type seed set and its benchmark results, the measured GPU factors (read by path through
`adg.package_data`, never imported for code)."""
