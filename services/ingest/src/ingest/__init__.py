"""Ingest service: OpenTickets transactions into Cosmos DB, each new payment queued for enrichment."""
