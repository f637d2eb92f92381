"""Batch ingestion of VQA datasets into Neo4j as STCGs."""
