"""Stripe webhooks: verified, recorded durably, applied to transactions in any order."""
