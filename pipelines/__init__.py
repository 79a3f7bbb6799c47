"""The ADG pipeline graph (KFP v2); only wiring, no selection logic."""
