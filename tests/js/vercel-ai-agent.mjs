#!/usr/bin/env node
// One multi-step Vercel AI SDK run (generateText with a tool: the model asks for the tool,
// then answers) against a provider at --provider-url, traced by one of the SDK's two
// OpenTelemetry integrations from @ai-sdk/otel (--telemetry current: a root invoke_agent
// span summing its chat spans' gen_ai.usage.*; legacy: ai.generateText over
// ai.generateText.doGenerate spans with ai.usage.*), and shipped span by span as they end
// (children before parents) with the official OTLP/protobuf exporter. Driven by
// tests/receiver/test_exactly_once_stacks.py:
//
//   node tests/js/vercel-ai-agent.mjs --endpoint http://127.0.0.1:4318 --key aether_... \
//       --provider-url http://127.0.0.1:PORT --vendor openai|openai-chat|anthropic \
//       --telemetry current|legacy --service agents-app
//
// Prints one JSON line: the spans exported and the trace id. Exit status 0 when every span
// was exported.

import { parseArgs } from 'node:util';
import { generateText, stepCountIs, tool } from 'ai';
import { createAnthropic } from '@ai-sdk/anthropic';
import { createOpenAI } from '@ai-sdk/openai';
import { LegacyOpenTelemetry, OpenTelemetry } from '@ai-sdk/otel';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { z } from 'zod';

const { values: args } = parseArgs({
  options: {
    endpoint: { type: 'string' },
    key: { type: 'string' },
    'provider-url': { type: 'string' },
    vendor: { type: 'string', default: 'openai' },
    telemetry: { type: 'string', default: 'current' },
    service: { type: 'string', default: 'agents-app' },
  },
});
for (const name of ['endpoint', 'key', 'provider-url']) {
  if (!args[name]) {
    process.stderr.write(`vercel-ai-agent: --${name} is required\n`);
    process.exit(2);
  }
}

let exported = 0;
const exporter = new OTLPTraceExporter({
  url: `${args.endpoint}/v1/traces`,
  headers: { Authorization: `Bearer ${args.key}` },
});
const counting = {
  export(spans, done) {
    exporter.export(spans, (result) => {
      if (result.code === 0) exported += spans.length;
      done(result);
    });
  },
  shutdown: () => exporter.shutdown(),
  forceFlush: () => exporter.forceFlush(),
};
const provider = new BasicTracerProvider({
  resource: resourceFromAttributes({ 'service.name': args.service }),
  spanProcessors: [new SimpleSpanProcessor(counting)],
});
const tracer = provider.getTracer('vercel-ai-agent');
const integration = args.telemetry === 'legacy'
  ? new LegacyOpenTelemetry({ tracer })
  : new OpenTelemetry({ tracer });

const base = args['provider-url'];
// openai: the provider's default, the Responses API; openai-chat: chat completions.
const openai = createOpenAI({ baseURL: `${base}/v1`, apiKey: 'sk-fake' });
const models = {
  anthropic: () => createAnthropic({ baseURL: `${base}/v1`, apiKey: 'sk-ant-fake' })('claude-sonnet-4-5'),
  openai: () => openai('gpt-4o'),
  'openai-chat': () => openai.chat('gpt-4o'),
};
if (!models[args.vendor]) {
  process.stderr.write(`vercel-ai-agent: unknown --vendor ${args.vendor}\n`);
  process.exit(2);
}
const model = models[args.vendor]();

await generateText({
  model,
  prompt: 'What is the weather in Paris?',
  tools: {
    weather: tool({
      description: 'The weather in a city.',
      inputSchema: z.object({ city: z.string() }),
      execute: async ({ city }) => `sunny in ${city}`,
    }),
  },
  stopWhen: stepCountIs(3),
  maxRetries: 0,
  telemetry: { isEnabled: true, integrations: [integration], recordInputs: false, recordOutputs: false },
});
await provider.forceFlush();
await provider.shutdown();
process.stdout.write(`${JSON.stringify({ exported })}\n`);
process.exit(exported > 0 ? 0 : 1);
