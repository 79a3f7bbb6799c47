"""One module per pipeline stage, named as its CLI subcommand and its component
(components/<stage>.py): ingest, generate, embed, cluster, score, select, export, train,
evaluate, analyse, compare, curation, preflight, shard (and ledger, the recurring ingest's)."""
