"""The Aethermind receiver: OTLP ingest, query API and dashboard behind the ``[receiver]`` extra."""
