/**
 * `npm run bench`: what the TypeScript SDK costs, each figure beside a baseline measured
 * in the same run (docs/benchmarks.md, "TypeScript SDK").
 *
 * 1. A call's cost on the caller's turn of the event loop: `recordVariantResult` and
 *    `startRun` (which writes its two JSON objects to text) against a bare
 *    `array.push` of the same argument, with the broker up and with it down.
 * 2. The publisher's throughput — calls to acknowledged publishes — against a bare
 *    JetStream loop that encodes the same envelopes and publishes them with the same
 *    window of 512 unacknowledged publishes, on the same broker and stream.
 *
 * Needs NATS with JetStream (NATS_URL, default nats://127.0.0.1:4222); uses a random
 * subject prefix and stream, deleted at the end. BENCH_ROUNDS (default 5) rounds each;
 * figures are medians.
 */

import { randomBytes } from "node:crypto";
import { setImmediate as nextTurn } from "node:timers/promises";

import { create, toBinary } from "@bufbuild/protobuf";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { v7 } from "uuid";

import { EnvelopeSchema } from "../src/gen/telemetry/v1/telemetry_pb.js";
import { hashPrompt, Telemetry, type StartRunInput, type VariantResultInput } from "../src/index.js";
import { DEFAULT_LIMITS } from "../src/config.js";
import { checkVariantResult } from "../src/record.js";
import { StreamSpec, Subjects } from "../src/subjects.js";

const NATS_URL = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const CALLS_PER_BATCH = 1_000;
const BATCHES = 10;
const PUBLISH_EVENTS = 20_000;
const WINDOW = 512;

const token = randomBytes(5).toString("hex").replace(/[0-9]/g, (d) => "ghijklmnop"[Number(d)]!);
const prefix = `bench_${token}`;
const stream = `BENCH_${token.toUpperCase()}`;
const quiet = { warn: () => undefined, error: () => undefined };

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

const SHOP = "demo-shop.myshopify.com";
const RUN = "01890a5d-ac96-774b-bcce-b302099a8057";
const variantResult: VariantResultInput = {
  renderRunId: RUN,
  variantId: "v2",
  finalPromptHash: hashPrompt("place the sofa by the window"),
  requestId: "req-1",
  shopId: SHOP,
  status: "timeout",
  latencyMs: 30_000,
  outputImageKey: undefined,
  outputImageHash: undefined,
  errorCode: "TIMEOUT",
  errorMessage: "variant exceeded 30000 ms",
};
const startRun: StartRunInput = {
  runId: RUN,
  shopId: SHOP,
  requestId: "req-1",
  productAssetId: "asset-42",
  roomSessionId: "room-7",
  promptPackVersion: "v3",
  model: "gemini-2.5-flash-image",
  productImageHash: hashPrompt("product"),
  productImageMeta: { width: 1024, height: 768, format: "png", bytes: 123_456 },
  roomImageHash: hashPrompt("room"),
  roomImageMeta: { width: 4032, height: 3024, format: "jpeg", bytes: 2_345_678 },
  resolvedFactsHash: hashPrompt("facts"),
  resolvedFactsJson: { color: "oak", dimensions: { w: 200, h: 90 }, style: ["modern", "nordic"] },
  promptPackHash: hashPrompt("pack"),
  promptPackJson: { version: "v3", prompts: ["by the window", "against the wall", "in the corner"] },
};

/** ns per call of `call`, median over rounds of BATCHES batches; `settle` runs between batches. */
async function perCall(call: () => unknown, settle: () => Promise<void>): Promise<number> {
  const rounds: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    let elapsed = 0n;
    for (let batch = 0; batch < BATCHES; batch++) {
      const started = process.hrtime.bigint();
      for (let i = 0; i < CALLS_PER_BATCH; i++) call();
      elapsed += process.hrtime.bigint() - started;
      await settle();
    }
    rounds.push(Number(elapsed) / (BATCHES * CALLS_PER_BATCH));
  }
  return median(rounds);
}

async function callCosts(): Promise<string[]> {
  const lines: string[] = [];
  const options = { subjectPrefix: prefix, stream, streamMaxBytes: 256 * 1024 * 1024, logger: quiet, service: "bench" };
  const up = Telemetry.start({ ...options, nats: { url: NATS_URL } });
  await nextTurn();
  const drain = async () => {
    while (up.stats().queueDepth > 0) await new Promise((r) => setTimeout(r, 1));
  };
  let sink: unknown[] = [];
  const clear = async () => {
    sink = [];
    await nextTurn();
  };
  // Warm-up: let the JIT see every path once.
  await perCall(() => up.recordVariantResult(variantResult), drain);
  for (const [name, input, call] of [
    ["recordVariantResult", variantResult, (t: Telemetry) => t.recordVariantResult(variantResult)],
    ["startRun (two JSON objects)", startRun, (t: Telemetry) => t.startRun(startRun)],
  ] as const) {
    const baseline = await perCall(() => sink.push(input), clear);
    const withBroker = await perCall(() => call(up), drain);
    const withoutBroker = await brokerDown(call, options);
    lines.push(
      `| ${name} | ${baseline.toFixed(0)} ns | ${withBroker.toFixed(0)} ns (${(withBroker / baseline).toFixed(1)}x) | ${withoutBroker.toFixed(0)} ns (${(withoutBroker / baseline).toFixed(1)}x) |`,
    );
  }
  // Where a call's time goes: reading the clock and checking the argument, each alone.
  let clock = 0;
  const now = await perCall(() => (clock += Date.now()), clear);
  const check = await perCall(() => checkVariantResult(variantResult, DEFAULT_LIMITS), clear);
  lines.push(`| of which, alone: \`Date.now()\` ${now.toFixed(0)} ns, checking a recordVariantResult argument ${check.toFixed(0)} ns | | | |`);
  const upReport = await up.shutdown(10_000);
  if (upReport.dropped !== 0 || upReport.left !== 0) throw new Error(`the bench dropped events: ${JSON.stringify(upReport)}`);
  return lines;
}

/**
 * ns per call with the broker down (a port nothing listens on): each round on a fresh
 * handle, whose queue (the default 16,384) takes the round's calls without a drop, as
 * it would during an outage until it is full.
 */
async function brokerDown(call: (t: Telemetry) => unknown, options: Parameters<typeof Telemetry.start>[0]): Promise<number> {
  const rounds: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const down = Telemetry.start({ ...options, nats: { url: "nats://127.0.0.1:1" } });
    let elapsed = 0n;
    for (let batch = 0; batch < BATCHES; batch++) {
      const started = process.hrtime.bigint();
      for (let i = 0; i < CALLS_PER_BATCH; i++) call(down);
      elapsed += process.hrtime.bigint() - started;
      await nextTurn();
    }
    rounds.push(Number(elapsed) / (BATCHES * CALLS_PER_BATCH));
    const report = await down.shutdown(0);
    if (report.published !== 0 || report.dropped !== BATCHES * CALLS_PER_BATCH || report.left !== report.dropped) {
      throw new Error(`broker down: ${JSON.stringify(report)}`);
    }
  }
  return median(rounds);
}

/** Events per second from the first call to the last acknowledgement, through the SDK. */
async function sdkThroughput(): Promise<number> {
  const telemetry = Telemetry.start({
    subjectPrefix: prefix,
    stream,
    streamMaxBytes: 256 * 1024 * 1024,
    logger: quiet,
    service: "bench",
    queueCapacity: PUBLISH_EVENTS,
    nats: { url: NATS_URL },
  });
  // Connected and the stream ensured before the clock starts.
  await telemetry.emit({ shopId: SHOP, requestId: "warm-up", source: 1, type: 1 });
  while (telemetry.stats().published < 1) await new Promise((r) => setTimeout(r, 1));
  const started = performance.now();
  for (let i = 0; i < PUBLISH_EVENTS; i++) {
    telemetry.recordVariantStart({ runId: RUN, variantId: `v${i}`, requestId: "req-1", shopId: SHOP });
  }
  while (telemetry.stats().published < PUBLISH_EVENTS + 1) await nextTurn();
  const elapsed = performance.now() - started;
  const report = await telemetry.shutdown(10_000);
  if (report.dropped !== 0) throw new Error(`dropped ${report.dropped}`);
  return (PUBLISH_EVENTS / elapsed) * 1000;
}

/** The same envelopes encoded and published by a bare loop with the same window. */
async function bareThroughput(): Promise<number> {
  // As the SDK connects: no stack trace captured per request.
  const nc = await connect({ servers: NATS_URL, noAsyncTraces: true });
  const js = jetstream(nc, { timeout: 5_000 });
  const subject = new Subjects(prefix).forKind("variant_started");
  const producer = `bare-${v7()}`;
  const started = performance.now();
  let inFlight = 0;
  let failed: unknown;
  let slotFree: (() => void) | undefined;
  const settled = () => {
    inFlight -= 1;
    slotFree?.();
  };
  for (let i = 0; i < PUBLISH_EVENTS; i++) {
    const eventId = v7();
    const bytes = toBinary(
      EnvelopeSchema,
      create(EnvelopeSchema, {
        eventId,
        occurredAt: BigInt(Date.now()),
        shopId: SHOP,
        requestId: "req-1",
        producer,
        producerSeq: BigInt(i + 1),
        body: { case: "variantStarted", value: { runId: RUN, variantId: `v${i}` } },
      }),
    );
    inFlight += 1;
    js.publish(subject, bytes, { msgID: eventId }).then(settled, (err: unknown) => {
      failed = err;
      settled();
    });
    while (inFlight >= WINDOW) await new Promise<void>((resolve) => (slotFree = resolve));
  }
  while (inFlight > 0) await new Promise<void>((resolve) => (slotFree = resolve));
  if (failed !== undefined) throw new Error(`the bare loop's publish failed: ${String(failed)}`);
  const elapsed = performance.now() - started;
  await nc.close();
  return (PUBLISH_EVENTS / elapsed) * 1000;
}

async function main(): Promise<void> {
  const nc = await connect({ servers: NATS_URL }).catch((err: unknown) => {
    throw new Error(`NATS is not reachable at ${NATS_URL} (${String(err)}): start it (bash scripts/services.sh) or set NATS_URL`);
  });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add(new StreamSpec(stream, new Subjects(prefix)).withMaxBytes(256 * 1024 * 1024).config());
  try {
    console.log(`TypeScript SDK bench: node ${process.version}, ${ROUNDS} rounds, medians\n`);
    console.log("| call | bare array.push | SDK, broker up | SDK, broker down |");
    console.log("| --- | --- | --- | --- |");
    for (const line of await callCosts()) console.log(line);
    const sdk: number[] = [];
    const bare: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      // Alternate which goes first, so neither always meets a warmer broker.
      if (round % 2 === 0) {
        sdk.push(await sdkThroughput());
        bare.push(await bareThroughput());
      } else {
        bare.push(await bareThroughput());
        sdk.push(await sdkThroughput());
      }
    }
    const s = median(sdk);
    const b = median(bare);
    console.log(`\n| ${PUBLISH_EVENTS.toLocaleString("en")} variant starts | events/s (median) |`);
    console.log("| --- | --- |");
    console.log(`| bare loop: encode + js.publish, ${WINDOW} in flight | ${Math.round(b).toLocaleString("en")} |`);
    console.log(`| SDK: calls to acknowledged publishes | ${Math.round(s).toLocaleString("en")} (${(s / b).toFixed(2)}x the bare loop) |`);
  } finally {
    await jsm.streams.delete(stream).catch(() => undefined);
    await nc.close();
  }
}

await main();
