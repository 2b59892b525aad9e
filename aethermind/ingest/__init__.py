"""The middle of the pipeline, pure (no aiohttp, no asyncpg, no I/O): OTLP bodies decoded
into spans, plain JSON events parsed, each organization's policy applied, usage normalized
and priced, and the rows the writer stores built. The receiver calls it and does the I/O.
"""
