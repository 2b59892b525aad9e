#!/usr/bin/env node
// Ships GenAI spans to an OTLP/HTTP endpoint with the official OpenTelemetry JS SDK and
// exporters, as a Node application instrumented by hand would. Driven by
// tests/receiver/test_js_clients.py; runnable alone:
//
//   node tests/js/export-genai-spans.js --endpoint http://127.0.0.1:4318 --key am_... \
//       --exporter proto --compression gzip --service checkout-js --count 5 [--batch-size 512]
//
// Each option may come from the environment instead: AETHERMIND_ENDPOINT, AETHERMIND_API_KEY,
// AETHERMIND_EXPORTER (json|proto), AETHERMIND_COMPRESSION (none|gzip), AETHERMIND_SERVICE,
// AETHERMIND_COUNT. It makes `count` chat spans shaped like the OTel GenAI semantic
// conventions plus one plain HTTP span (not GenAI: the receiver drops it), force-flushes,
// shuts down, and prints one JSON line: each export call's outcome ("exports"), the spans
// exported successfully ("exported"), flush/shutdown errors, and every GenAI span's ids and
// duration. Exit status 0 only if every span was exported; 1 if not; 2 on bad usage.

import { parseArgs } from 'node:util';
import { SpanKind } from '@opentelemetry/api';
import { OTLPTraceExporter as JsonTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtoTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';

// ExportResultCode.SUCCESS in @opentelemetry/core (not imported: it is not a direct dependency).
const EXPORT_SUCCESS = 0;

function usage(message) {
  process.stderr.write(`export-genai-spans: ${message}\n`);
  process.exit(2);
}

function options() {
  const { values } = parseArgs({
    options: {
      endpoint: { type: 'string', default: process.env.AETHERMIND_ENDPOINT },
      key: { type: 'string', default: process.env.AETHERMIND_API_KEY },
      exporter: { type: 'string', default: process.env.AETHERMIND_EXPORTER ?? 'proto' },
      compression: { type: 'string', default: process.env.AETHERMIND_COMPRESSION ?? 'none' },
      service: { type: 'string', default: process.env.AETHERMIND_SERVICE ?? 'checkout-js' },
      count: { type: 'string', default: process.env.AETHERMIND_COUNT ?? '1' },
      'batch-size': { type: 'string', default: '512' },
      'timeout-ms': { type: 'string', default: '10000' },
    },
    strict: true,
  });
  if (!values.endpoint) usage('--endpoint (or AETHERMIND_ENDPOINT) is required');
  if (!values.key) usage('--key (or AETHERMIND_API_KEY) is required');
  if (!['json', 'proto'].includes(values.exporter)) usage('--exporter must be json or proto');
  if (!['none', 'gzip'].includes(values.compression)) usage('--compression must be none or gzip');
  const count = Number(values.count);
  if (!Number.isInteger(count) || count < 0) usage('--count must be a whole number');
  const batchSize = Number(values['batch-size']);
  if (!Number.isInteger(batchSize) || batchSize < 1) usage('--batch-size must be > 0');
  const timeoutMillis = Number(values['timeout-ms']);
  if (!Number.isInteger(timeoutMillis) || timeoutMillis < 1) usage('--timeout-ms must be > 0');
  return { ...values, count, batchSize, timeoutMillis };
}

// Wraps the real exporter to keep each export call's outcome, since the span processors only
// log failures through the diag logger.
class RecordingExporter {
  constructor(inner) {
    this.inner = inner;
    this.results = [];
  }

  export(spans, resultCallback) {
    this.inner.export(spans, (result) => {
      this.results.push({
        spans: spans.length,
        ok: result.code === EXPORT_SUCCESS,
        error: result.error ? String(result.error.message ?? result.error) : null,
      });
      resultCallback(result);
    });
  }

  forceFlush() {
    return this.inner.forceFlush();
  }

  shutdown() {
    return this.inner.shutdown();
  }
}

async function main() {
  const opts = options();
  const Exporter = opts.exporter === 'json' ? JsonTraceExporter : ProtoTraceExporter;
  const exporter = new RecordingExporter(
    new Exporter({
      url: `${opts.endpoint.replace(/\/+$/, '')}/v1/traces`,
      headers: { Authorization: `Bearer ${opts.key}` },
      compression: opts.compression,
      timeoutMillis: opts.timeoutMillis,
    }),
  );
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: opts.service }),
    spanProcessors: [
      new BatchSpanProcessor(exporter, {
        maxExportBatchSize: opts.batchSize,
        maxQueueSize: Math.max(2048, opts.count + 1),
      }),
    ],
  });
  const tracer = provider.getTracer('aethermind-js-client-test', '1.0.0');

  // Fixed start and end times make each duration exact: 100 ms + 10 ms per span index.
  const base = Date.now() - 60_000;
  const spans = [];
  for (let i = 0; i < opts.count; i++) {
    const start = base + i * 1000;
    const durationMs = 100 + 10 * i;
    const span = tracer.startSpan('chat gpt-4o', {
      kind: SpanKind.CLIENT,
      startTime: start,
      attributes: {
        'gen_ai.operation.name': 'chat',
        'gen_ai.provider.name': 'openai',
        'gen_ai.request.model': 'gpt-4o',
        'gen_ai.response.model': 'gpt-4o-2024-08-06',
        'gen_ai.usage.input_tokens': 1200,
        'gen_ai.usage.output_tokens': 300,
        'gen_ai.usage.cache_read.input_tokens': 400,
      },
    });
    span.end(start + durationMs);
    const ctx = span.spanContext();
    spans.push({ trace_id: ctx.traceId, span_id: ctx.spanId, duration_ms: durationMs });
  }
  const plain = tracer.startSpan('GET /health', {
    kind: SpanKind.SERVER,
    startTime: base,
    attributes: { 'http.request.method': 'GET', 'http.response.status_code': 200 },
  });
  plain.end(base + 5);

  // The batch processor rejects forceFlush when an export failed: keep the error and report.
  const errors = [];
  for (const step of ['forceFlush', 'shutdown']) {
    try {
      await provider[step]();
    } catch (error) {
      errors.push(`${step}: ${error?.message ?? error}`);
    }
  }

  const failed = exporter.results.filter((r) => !r.ok);
  const exported = exporter.results.reduce((sum, r) => sum + (r.ok ? r.spans : 0), 0);
  const ok = errors.length === 0 && failed.length === 0 && exported === opts.count + 1;
  process.stdout.write(
    `${JSON.stringify({
      ok,
      exporter: opts.exporter,
      compression: opts.compression,
      service: opts.service,
      exported,
      exports: exporter.results,
      errors,
      spans,
      plain_span_id: plain.spanContext().spanId,
    })}\n`,
  );
  process.exitCode = ok ? 0 : 1;
}

main().catch((error) => {
  process.stderr.write(`export-genai-spans: ${error?.stack ?? error}\n`);
  process.exitCode = 1;
});
