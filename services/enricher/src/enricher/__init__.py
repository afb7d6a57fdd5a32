"""Enricher service: where each Stripe payment's money went, written onto its transactions."""
