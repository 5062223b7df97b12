"""The HTTP API for lead-routing systems (FastAPI): ingest, lead keys, postback history, health."""
