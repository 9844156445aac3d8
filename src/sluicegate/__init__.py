"""sluicegate: guardrails between a journey orchestrator and the external systems it calls."""
