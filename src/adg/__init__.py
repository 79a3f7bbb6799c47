"""ADG: Answer Divergence-Guided selection of instruction-tuning data, as a library.

The package is layered; a module imports only from its own layer or a lower one
(tests/test_layering.py checks it, docs/architecture.md is the map):

    config, errors, progress, package_data, parameters   settings and their checks, errors, logging
    io/         formats and I/O: records, pool shapes, tables, object storage, models on disk,
                fingerprints and resumable outputs
    method/     the paper's math: prompts, hidden states, divergence, bins, selection, IFD,
                task types
    planning/   the cost plan and the GPU pods' sizes
    reporting/  the pages and tables the stages write (HTML, Markdown, SVG)
    stages/     one module per pipeline stage, named as its CLI subcommand and its component
    cli/        the `adg` command (`adg.cli:main`)

Importing `adg` imports nothing else: `adg --help` stays fast.
"""
