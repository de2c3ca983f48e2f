/**
 * The SDK against a real nats-server: each test uses its own subject prefix and stream
 * (or its own server) and checks what actually landed in the stream — the TypeScript
 * twin of `telemetry/tests/sdk.rs`.
 */

import assert from "node:assert/strict";
import { after, describe, test } from "node:test";

import { parse as parseUuid } from "uuid";

import { StreamSpec, Subjects } from "../src/subjects.js";
import {
  EmitError,
  ErrorCode,
  EventSource,
  EventType,
  hashPrompt,
  RunStatus,
  Telemetry,
  VariantStatus,
} from "../src/index.js";
import { Isolation, NatsServer, quietLogger, readStream, sleep, waitUntil, withJsm } from "./support.js";

const isolations: Isolation[] = [];
async function isolation(url?: string): Promise<Isolation> {
  const iso = await Isolation.create(url);
  isolations.push(iso);
  return iso;
}
after(async () => {
  await Promise.all(isolations.map((iso) => iso.cleanup()));
});

const SHOP = "demo-shop.myshopify.com";

function uuidTimeMs(id: string): number {
  const bytes = parseUuid(id);
  let ms = 0;
  for (let i = 0; i < 6; i++) ms = ms * 256 + bytes[i]!;
  return ms;
}

describe("against the shared NATS server", () => {
  test("every kind of call arrives and decodes to exactly what was passed", async () => {
    const iso = await isolation();
    const telemetry = Telemetry.start(iso.options());
    const producer = telemetry.producerId!;
    const before = Date.now();
    const results = [
      await telemetry.emit({
        shopId: SHOP,
        requestId: "req-1",
        source: EventSource.APP_PROXY,
        type: EventType.SF_RENDER_REQUESTED,
        payload: { productId: "p-1", roomSessionId: "room-7" },
      }),
      await telemetry.startRun({
        runId: "run-1",
        shopId: SHOP,
        requestId: "req-1",
        productAssetId: "asset-42",
        roomSessionId: "room-7",
        promptPackVersion: "v3",
        model: "gemini-2.5-flash-image",
        productImageHash: hashPrompt("product bytes"),
        productImageMeta: { width: 800, height: 600, format: "png", bytes: 123_456 },
        roomImageHash: hashPrompt("room bytes"),
        roomImageMeta: { width: 1920, height: 1080, format: "jpeg", bytes: 654_321 },
        resolvedFactsHash: hashPrompt('{"color":"oak"}'),
        resolvedFactsJson: { color: "oak" },
        promptPackHash: hashPrompt('{"version":"v3"}'),
        promptPackJson: { version: "v3" },
      }),
      // Not awaited, as the original app calls it.
      telemetry.recordVariantStart({ runId: "run-1", variantId: "v1", requestId: "req-1", shopId: SHOP }),
      await telemetry.recordVariantResult({
        renderRunId: "run-1",
        variantId: "v1",
        finalPromptHash: hashPrompt("place the sofa by the window"),
        requestId: "req-1",
        shopId: SHOP,
        status: "timeout",
        latencyMs: 30_000.4,
        outputImageKey: undefined,
        outputImageHash: undefined,
        errorCode: "TIMEOUT",
        errorMessage: "variant exceeded 30000 ms",
      }),
      await telemetry.completeRun({
        runId: "run-1",
        requestId: "req-1",
        shopId: SHOP,
        status: "partial",
        totalDurationMs: 31_000,
        successCount: 0,
        failCount: 0,
        timeoutCount: 1,
      }),
    ];
    assert.deepEqual(await Promise.all(results), [undefined, undefined, undefined, undefined, undefined]);
    const report = await telemetry.shutdown(10_000);
    assert.deepEqual(report, { emitted: 5, published: 5, dropped: 0, left: 0, finalStatsSent: true });

    const messages = await readStream(iso.natsUrl, iso.stream);
    assert.equal(messages.length, 6, "five events and the final stats");
    const subjects = new Subjects(iso.prefix);
    const events = messages.filter((m) => m.envelope.body.case !== "producerStats");
    assert.deepEqual(
      events.map((m) => m.subject),
      ["event", "run_started", "variant_started", "variant_result", "run_completed"].map((k) => subjects.forKind(k as never)),
    );
    for (const [i, { envelope, msgId }] of events.entries()) {
      assert.equal(envelope.producer, producer);
      assert.equal(envelope.producerSeq, BigInt(i + 1), "sequence 1, 2, 3, ... in call order");
      assert.equal(msgId, envelope.eventId, "Nats-Msg-Id is the event id");
      assert.match(envelope.eventId, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      assert.equal(uuidTimeMs(envelope.eventId), Number(envelope.occurredAt), "the id's time is occurred_at");
      assert.ok(Number(envelope.occurredAt) >= before && Number(envelope.occurredAt) <= Date.now());
      if (i > 0) assert.ok(envelope.eventId > events[i - 1]!.envelope.eventId, "ids increase with the sequence");
    }
    const [event, run, start, result, done] = events.map((m) => m.envelope);
    assert.equal(event!.body.case, "event");
    if (event!.body.case === "event") {
      assert.equal(event!.body.value.payloadJson, '{"productId":"p-1","roomSessionId":"room-7"}');
      assert.equal(event!.body.value.source, EventSource.APP_PROXY);
      assert.equal(event!.body.value.type, EventType.SF_RENDER_REQUESTED);
    }
    assert.equal(run!.body.case, "runStarted");
    if (run!.body.case === "runStarted") {
      const body = run!.body.value;
      assert.equal(body.resolvedFactsJson, '{"color":"oak"}');
      assert.equal(body.roomImage?.meta?.bytes, 654_321n);
      assert.equal(body.productImage?.hash, hashPrompt("product bytes"));
      assert.equal(body.model, "gemini-2.5-flash-image");
    }
    assert.equal(start!.body.case, "variantStarted");
    assert.equal(result!.body.case, "variantResult");
    if (result!.body.case === "variantResult") {
      const body = result!.body.value;
      assert.equal(body.status, VariantStatus.TIMEOUT);
      assert.equal(body.errorCode, ErrorCode.TIMEOUT);
      assert.equal(body.latencyMs, 30_000n, "rounded to whole ms");
      assert.equal(body.outputImageKey, "");
    }
    assert.equal(done!.body.case, "runCompleted");
    if (done!.body.case === "runCompleted") assert.equal(done!.body.value.status, RunStatus.PARTIAL);
    const stats = messages.at(-1)!.envelope;
    assert.equal(stats.body.case, "producerStats");
    if (stats.body.case === "producerStats") {
      assert.equal(stats.body.value.final, true);
      assert.equal(stats.body.value.emitted, 5n, "stats are not counted as events");
      assert.equal(stats.body.value.published, 5n);
      assert.equal(stats.body.value.service, "ts-sdk-test");
    }
    assert.equal(stats.producerSeq, 5n, "a stats message takes the emitted count as its sequence");
  });

  test("the SDK creates the stream with the contract's definition", async () => {
    const iso = await isolation();
    const telemetry = Telemetry.start(iso.options({ streamReplicas: 1 }));
    await telemetry.emit({ shopId: SHOP, requestId: "r", source: EventSource.RENDERER, type: EventType.RENDER_IMAGE_STORED });
    assert.equal((await telemetry.shutdown(5_000)).published, 1);
    const config = await withJsm(iso.natsUrl, async (jsm) => (await jsm.streams.info(iso.stream)).config);
    const spec = new StreamSpec(iso.stream, new Subjects(iso.prefix));
    assert.deepEqual(config.subjects, [`${iso.prefix}.v1.>`]);
    assert.equal(config.storage, "file");
    assert.equal(config.retention, "limits");
    assert.equal(config.discard, "old");
    assert.equal(config.duplicate_window, 120 * 1e9);
    assert.equal(config.max_age, 7 * 24 * 3600 * 1e9);
    assert.equal(config.max_bytes, 256 * 1024 * 1024);
    assert.equal(config.max_msg_size, 1024 * 1024);
    assert.equal(config.num_replicas, 1);
    assert.equal(spec.config().max_msg_size, config.max_msg_size);
  });

  test("calls that break the rules are refused, named and counted by reason; after shutdown they are closed", async () => {
    const iso = await isolation();
    const telemetry = Telemetry.start(iso.options({ limits: { maxJsonBytes: 16 } }));
    const missing = await telemetry.recordVariantStart({ runId: "", variantId: "v", shopId: SHOP, requestId: "r" });
    assert.ok(missing instanceof EmitError);
    assert.equal(missing.reason, "missing_field");
    assert.equal(missing.field, "run_id");
    const large = await telemetry.startRun({ runId: "r", shopId: SHOP, requestId: "r", promptPackJson: { text: "x".repeat(100) } });
    assert.ok(large instanceof EmitError);
    assert.equal(large.reason, "payload_too_large");
    assert.equal(large.field, "prompt_pack_json");
    assert.equal(large.limit, 16);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const unwritable = await telemetry.emit({ shopId: SHOP, requestId: "r", source: EventSource.ADMIN, type: EventType.UNSPECIFIED, payload: cyclic });
    assert.equal(unwritable?.reason, "invalid_json");
    assert.equal(await telemetry.completeRun({ runId: "r", shopId: SHOP, requestId: "r", status: "complete" }), undefined);
    const report = await telemetry.shutdown(5_000);
    assert.deepEqual(report, { emitted: 4, published: 1, dropped: 3, left: 0, finalStatsSent: true });
    const closed = await telemetry.emit({ shopId: SHOP, requestId: "r", source: EventSource.ADMIN, type: EventType.UNSPECIFIED });
    assert.equal(closed?.reason, "closed");
    assert.deepEqual(telemetry.stats().droppedByReason, {
      closed: 1,
      invalid_json: 1,
      missing_field: 1,
      payload_too_large: 1,
    });
    // The published event carries sequence 4: the gaps are the refused calls.
    const messages = await readStream(iso.natsUrl, iso.stream);
    const completion = messages.find((m) => m.envelope.body.case === "runCompleted");
    assert.equal(completion?.envelope.producerSeq, 4n);
  });

  test("queue overflow is counted exactly by reason and reported in ProducerStats", async () => {
    const iso = await isolation();
    const telemetry = Telemetry.start(iso.options({ queueCapacity: 10 }));
    // One synchronous burst: the publisher cannot take anything before it ends.
    const results = [];
    for (let i = 0; i < 100; i++) {
      results.push(telemetry.recordVariantStart({ runId: `run-${i}`, variantId: "v", shopId: SHOP, requestId: "r" }));
    }
    const answers = await Promise.all(results);
    assert.equal(answers.filter((a) => a === undefined).length, 10);
    assert.ok(answers.slice(10).every((a) => a?.reason === "queue_full"));
    const report = await telemetry.shutdown(5_000);
    assert.deepEqual(report, { emitted: 100, published: 10, dropped: 90, left: 0, finalStatsSent: true });
    const messages = await readStream(iso.natsUrl, iso.stream);
    const stats = messages.at(-1)!.envelope;
    assert.equal(stats.body.case, "producerStats");
    if (stats.body.case === "producerStats") {
      assert.deepEqual(stats.body.value.droppedByReason, { queue_full: 90n });
      assert.equal(stats.body.value.dropped, 90n);
      assert.equal(stats.body.value.emitted, 100n);
      assert.equal(stats.body.value.published, 10n);
    }
  });

  test("the byte bound drops what the count bound would let through", async () => {
    const iso = await isolation();
    const telemetry = Telemetry.start(iso.options({ queueMaxBytes: 4_000 }));
    const big = "x".repeat(1_000);
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) => telemetry.emit({ shopId: SHOP, requestId: `r-${i}`, source: EventSource.APP_PROXY, type: EventType.SF_RENDER_REQUESTED, payload: big })),
    );
    const accepted = answers.filter((a) => a === undefined).length;
    assert.ok(accepted >= 3 && accepted < 10, `${accepted} accepted`);
    assert.ok(answers.slice(accepted).every((a) => a?.reason === "queue_full"));
    const report = await telemetry.shutdown(5_000);
    assert.equal(report.published, accepted);
    assert.equal(report.dropped, 10 - accepted);
  });

  test("ProducerStats go out every interval, are not counted as events, and a new producer id comes with every start", async () => {
    const iso = await isolation();
    const first = Telemetry.start(iso.options({ statsIntervalMs: 150 }));
    const second = Telemetry.start(iso.options({ statsIntervalMs: 150 }));
    assert.notEqual(first.producerId, second.producerId);
    assert.match(first.producerId!, /^ts-sdk-test-[0-9a-f-]{36}$/);
    await first.emit({ shopId: SHOP, requestId: "r", source: EventSource.APP_PROXY, type: EventType.SF_RENDER_REQUESTED });
    await sleep(700);
    assert.equal(first.stats().emitted, 1);
    assert.equal(first.stats().published, 1, "stats are not counted as published");
    await first.shutdown(5_000);
    await second.shutdown(5_000);
    const messages = await readStream(iso.natsUrl, iso.stream);
    const stats = messages.filter((m) => m.envelope.body.case === "producerStats" && m.envelope.producer === first.producerId);
    assert.ok(stats.length >= 3, `periodic stats and the final one: ${stats.length}`);
    const finals = stats.filter((m) => m.envelope.body.case === "producerStats" && m.envelope.body.value.final);
    assert.equal(finals.length, 1);
    assert.equal(finals[0], stats.at(-1), "the final stats come last");
    const fromSecond = messages.filter((m) => m.envelope.producer === second.producerId);
    assert.ok(fromSecond.length >= 1, "the second producer sends its own stats");
  });

  test("the module functions: the seed's imports, awaited or not, on one process-wide handle", async () => {
    const iso = await isolation();
    const sdk = await import("../src/index.js");
    const handle = sdk.init(iso.options({ service: "module-api" }));
    assert.equal(sdk.getTelemetry(), handle);
    assert.equal(sdk.init(), handle, "init again returns the running handle");
    sdk.emit({ shopId: SHOP, requestId: "r", source: sdk.EventSource.APP_PROXY, type: sdk.EventType.SF_RENDER_REQUESTED, payload: { productId: "p" } });
    await sdk.startRun({ runId: "run-m", shopId: SHOP, requestId: "r" });
    const report = await sdk.shutdown(5_000);
    assert.deepEqual(report, { emitted: 2, published: 2, dropped: 0, left: 0, finalStatsSent: true });
    assert.equal((await sdk.startRun({ runId: "late", shopId: SHOP, requestId: "r" }))?.reason, "closed", "a call after shutdown is closed, not a new publisher");
  });
});

describe("with a private nats-server", () => {
  test("with NATS down at start, calls never wait and queued events arrive once it is up", async () => {
    const server = await NatsServer.unstarted();
    try {
      const iso = await isolation(server.url);
      const telemetry = Telemetry.start(iso.options());
      const started = performance.now();
      for (let i = 0; i < 50; i++) {
        const answer = await telemetry.recordVariantStart({ runId: `run-${i}`, variantId: "v", shopId: SHOP, requestId: "r" });
        assert.equal(answer, undefined);
      }
      const elapsed = performance.now() - started;
      assert.ok(elapsed < 50, `50 calls took ${elapsed.toFixed(1)} ms with the broker down`);
      await sleep(300);
      assert.equal(telemetry.stats().connected, false);
      assert.equal(telemetry.stats().queueDepth, 50);
      await server.restart();
      await waitUntil("the queued events published", 15_000, () => telemetry.stats().published === 50);
      const report = await telemetry.shutdown(5_000);
      assert.deepEqual(report, { emitted: 50, published: 50, dropped: 0, left: 0, finalStatsSent: true });
      const messages = await readStream(server.url, iso.stream);
      assert.equal(messages.filter((m) => m.envelope.body.case === "variantStarted").length, 50);
    } finally {
      await server.stop();
    }
  });

  test("shutdown returns within its deadline with an honest count when the broker is down", async () => {
    const server = await NatsServer.unstarted();
    try {
      const iso = await isolation(server.url);
      const telemetry = Telemetry.start(iso.options());
      for (let i = 0; i < 20; i++) await telemetry.completeRun({ runId: `r-${i}`, shopId: SHOP, requestId: "r", status: "complete" });
      const started = performance.now();
      const report = await telemetry.shutdown(500);
      const elapsed = performance.now() - started;
      assert.ok(elapsed < 700, `shutdown took ${elapsed.toFixed(0)} ms for a 500 ms deadline`);
      assert.deepEqual(report, { emitted: 20, published: 0, dropped: 20, left: 20, finalStatsSent: false });
      assert.deepEqual(telemetry.stats().droppedByReason, { shutdown_deadline: 20 });
    } finally {
      await server.stop();
    }
  });

  test("a broker killed and restarted mid-stream loses and duplicates nothing", async () => {
    const server = await NatsServer.start();
    try {
      const iso = await isolation(server.url);
      const telemetry = Telemetry.start(iso.options({ ackTimeoutMs: 1_000 }));
      const total = 3_000;
      for (let i = 0; i < total; i++) {
        await telemetry.recordVariantStart({ runId: `run-${i}`, variantId: "v", shopId: SHOP, requestId: "r" });
        if (i === 1_000) await server.kill();
        if (i === 2_000) await server.restart();
        if (i % 100 === 0) await sleep(5);
      }
      await waitUntil("every event published", 30_000, () => telemetry.stats().published === total);
      const report = await telemetry.shutdown(5_000);
      assert.equal(report.published, total);
      assert.equal(report.dropped, 0);
      const messages = await readStream(server.url, iso.stream);
      const seqs = messages.filter((m) => m.envelope.body.case === "variantStarted").map((m) => Number(m.envelope.producerSeq));
      assert.equal(seqs.length, total, "each event stored once");
      assert.equal(new Set(seqs).size, total, "no duplicate");
    } finally {
      await server.stop();
    }
  });

  test("an event the broker refuses for good is dropped as broker_rejected, not retried forever", async () => {
    const server = await NatsServer.start("max_payload: 2048");
    try {
      const iso = await isolation(server.url);
      const logger = quietLogger();
      const telemetry = Telemetry.start(iso.options({ logger }));
      await telemetry.emit({ shopId: SHOP, requestId: "r", source: EventSource.APP_PROXY, type: EventType.SF_RENDER_REQUESTED, payload: { text: "x".repeat(4_000) } });
      await telemetry.emit({ shopId: SHOP, requestId: "r", source: EventSource.APP_PROXY, type: EventType.SF_RENDER_RESPONDED, payload: { ok: true } });
      const report = await telemetry.shutdown(5_000);
      assert.deepEqual(report, { emitted: 2, published: 1, dropped: 1, left: 0, finalStatsSent: true });
      assert.deepEqual(telemetry.stats().droppedByReason, { broker_rejected: 1 });
      assert.ok(logger.lines.some((l) => l.level === "error" && l.message.includes("broker refused")));
    } finally {
      await server.stop();
    }
  });
});
