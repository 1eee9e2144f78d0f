"""ReviewPulse: the Faust application, its settings, topics, CLI and embedded dev stack."""
