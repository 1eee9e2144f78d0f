"""Faust agents, one module per stage, and the LLM client they use."""
