"""LLM enrichment library: client, prompt, parsing, guards, heuristic fallback and simulator."""
