/**
 * From a checked call (or the ledger) to the bytes on the wire: the `telemetry.v1`
 * envelope, built with the types generated from the proto (`npm run generate`) and
 * encoded by `@bufbuild/protobuf`. The shared fixtures (`proto/fixtures/envelopes.json`)
 * hold both SDKs to the same bytes.
 */

import { randomFillSync } from "node:crypto";

import { create, toBinary } from "@bufbuild/protobuf";
import { v7 } from "uuid";

import {
  EnvelopeSchema,
  ProducerStatsSchema,
  type Envelope,
} from "./gen/telemetry/v1/telemetry_pb.js";
import type { StatsSnapshot } from "./ledger.js";
import { u64, type Checked } from "./record.js";
import type { BodyKind } from "./subjects.js";

/** The envelope fields that are not the call's: its id, time, producer and sequence. */
export interface Stamp {
  /** UUIDv7, canonical lowercase text; also the `Nats-Msg-Id` header. */
  eventId: string;
  /** Unix ms, the producer's clock. */
  occurredAt: number;
  /** `{service}-{uuidv7}`, new at every start. */
  producer: string;
  /** 1, 2, 3, ... per producer. */
  producerSeq: number;
}

/** The `telemetry.v1.Envelope` of a checked call. */
export function callEnvelope(checked: Checked, stamp: Stamp): Envelope {
  const body = (() => {
    switch (checked.kind) {
      case "run_started": {
        const run = checked.body;
        const image = (ref: typeof run.productImage) => ({ hash: ref.hash, meta: { ...ref.meta, bytes: u64(ref.meta.bytes) } });
        return {
          case: "runStarted" as const,
          value: { ...run, productImage: image(run.productImage), roomImage: image(run.roomImage) },
        };
      }
      case "variant_started":
        return { case: "variantStarted" as const, value: checked.body };
      case "variant_result":
        return { case: "variantResult" as const, value: { ...checked.body, latencyMs: u64(checked.body.latencyMs) } };
      case "run_completed":
        return {
          case: "runCompleted" as const,
          value: { ...checked.body, totalDurationMs: u64(checked.body.totalDurationMs) },
        };
      case "event":
        return { case: "event" as const, value: checked.body };
    }
  })();
  return create(EnvelopeSchema, {
    eventId: stamp.eventId,
    occurredAt: BigInt(stamp.occurredAt),
    shopId: checked.shopId,
    requestId: checked.requestId,
    producer: stamp.producer,
    producerSeq: BigInt(stamp.producerSeq),
    body,
  });
}

/** What a `ProducerStats` message says besides the ledger. */
export interface StatsContext {
  /** Producer start, unix ms. */
  startedAt: number;
  /** True on the last one, sent at shutdown. */
  final: boolean;
  /** Free-form service name. */
  service: string;
}

/**
 * The `ProducerStats` envelope of a ledger snapshot. Its `producer_seq` is the emitted
 * count at the time (as in the Rust SDK: the stats are not an event and take no
 * sequence number of their own), its shop and request ids are empty.
 */
export function statsEnvelope(stats: StatsSnapshot, context: StatsContext, stamp: Omit<Stamp, "producerSeq">): Envelope {
  // Map entries in sorted key order, as prost writes its BTreeMap: same bytes.
  const droppedByReason: Record<string, bigint> = {};
  for (const reason of Object.keys(stats.droppedByReason).sort()) {
    droppedByReason[reason] = BigInt(stats.droppedByReason[reason as keyof typeof stats.droppedByReason] ?? 0);
  }
  return create(EnvelopeSchema, {
    eventId: stamp.eventId,
    occurredAt: BigInt(stamp.occurredAt),
    shopId: "",
    requestId: "",
    producer: stamp.producer,
    producerSeq: BigInt(stats.emitted),
    body: {
      case: "producerStats",
      value: create(ProducerStatsSchema, {
        emitted: BigInt(stats.emitted),
        published: BigInt(stats.published),
        dropped: BigInt(stats.dropped),
        droppedByReason,
        publishFailures: BigInt(stats.publishFailures),
        queueDepth: BigInt(stats.queueDepth),
        startedAt: BigInt(context.startedAt),
        final: context.final,
        service: context.service,
      }),
    },
  });
}

/** The wire bytes of an envelope. */
export function encode(envelope: Envelope): Uint8Array {
  return toBinary(EnvelopeSchema, envelope);
}

/** The body kind of an envelope (which decides its subject). */
export function kindOf(envelope: Envelope): BodyKind {
  switch (envelope.body.case) {
    case "runStarted":
      return "run_started";
    case "variantStarted":
      return "variant_started";
    case "variantResult":
      return "variant_result";
    case "runCompleted":
      return "run_completed";
    case "event":
      return "event";
    case "producerStats":
      return "producer_stats";
    default:
      throw new Error("envelope without a body");
  }
}

const POOL_SIZE = 16 * 256;

/**
 * UUIDv7 ids whose timestamp is the event's `occurred_at`. Within one millisecond the
 * ids of one producer increase (RFC 9562's counter method: a random 31-bit start,
 * then +1), so id order is the order the producer made them in; across producers, and
 * where the Rust SDK draws the bits at random, it is arbitrary within a millisecond.
 */
export class EventIds {
  private lastMs = -1;
  private seq = 0;
  private readonly pool = Buffer.alloc(POOL_SIZE);
  private offset = POOL_SIZE;

  next(occurredAt: number): string {
    const random = this.random();
    if (occurredAt === this.lastMs && this.seq < 0x7fff_ffff) {
      this.seq += 1;
    } else {
      this.lastMs = occurredAt;
      // 31 bits, so the counter has room before it would overflow into the next ms.
      this.seq = ((random[6]! & 0x3f) << 24) | (random[7]! << 16) | (random[8]! << 8) | random[9]!;
    }
    return v7({ msecs: Math.max(0, occurredAt), seq: this.seq, random });
  }

  private random(): Uint8Array {
    if (this.offset + 16 > POOL_SIZE) {
      randomFillSync(this.pool);
      this.offset = 0;
    }
    const bytes = this.pool.subarray(this.offset, this.offset + 16);
    this.offset += 16;
    return bytes;
  }
}
