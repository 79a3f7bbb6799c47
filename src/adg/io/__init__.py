"""Formats and I/O: records, pool shapes, tables, object storage, models on disk, fingerprints
and resumable outputs. Imports only the modules at the top of `adg` (config, errors, progress,
package_data)."""
