"""Operator, auditor and admin endpoints under /api/v1/admin."""
