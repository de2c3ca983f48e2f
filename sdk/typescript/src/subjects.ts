/**
 * Subjects and the stream definition: exactly `proto/src/subjects.rs` and
 * `proto/src/stream.rs` of the Rust crate `telemetry-proto`.
 *
 * One subject per body kind under `{prefix}.v1.`; the stream binds `{prefix}.v1.>`. No
 * shop id or other user data goes into a subject (shop domains contain dots).
 */

import { DiscardPolicy, RetentionPolicy, StorageType, type StreamConfig } from "@nats-io/jetstream";

/** The kind of an envelope's body, which decides its subject. Contract order. */
export const BODY_KINDS = [
  "run_started",
  "variant_started",
  "variant_result",
  "run_completed",
  "event",
  "producer_stats",
] as const;
export type BodyKind = (typeof BODY_KINDS)[number];

/** The subject suffix after `{prefix}.v1.` for each kind. */
export const SUBJECT_SUFFIX: Readonly<Record<BodyKind, string>> = Object.freeze({
  run_started: "run.started",
  variant_started: "variant.started",
  variant_result: "variant.result",
  run_completed: "run.completed",
  event: "event",
  producer_stats: "producer.stats",
});

/** The subjects of one prefix. */
export class Subjects {
  /** Default subject prefix (`TELEMETRY_SUBJECT_PREFIX`). */
  static readonly DEFAULT_PREFIX = "telemetry";

  readonly prefix: string;
  private readonly byKind: Record<BodyKind, string>;

  /** Subjects under `prefix`; throws when the prefix would break subjects. */
  constructor(prefix: string) {
    const valid =
      prefix.length > 0 && prefix.split(".").every((token) => /^[A-Za-z0-9_-]+$/.test(token));
    if (!valid) {
      throw new Error(
        `invalid subject prefix ${JSON.stringify(prefix)}: use dot-separated tokens of letters, digits, '-' or '_' (no spaces, '*', '>' or empty tokens)`,
      );
    }
    this.prefix = prefix;
    this.byKind = Object.fromEntries(
      BODY_KINDS.map((kind) => [kind, `${prefix}.v1.${SUBJECT_SUFFIX[kind]}`]),
    ) as Record<BodyKind, string>;
  }

  /** The subject for one body kind. */
  forKind(kind: BodyKind): string {
    return this.byKind[kind];
  }

  /** The wildcard the stream binds: `{prefix}.v1.>`. */
  wildcard(): string {
    return `${this.prefix}.v1.>`;
  }

  /** The kind a subject of this prefix carries, if it is one of ours. */
  kindOf(subject: string): BodyKind | undefined {
    return BODY_KINDS.find((kind) => this.byKind[kind] === subject);
  }
}

/** Checks a stream name the way the broker would; returns why it is refused, if it is. */
export function validateStreamName(name: string): string | undefined {
  if (name.length === 0 || /[\s.*>/\\]/.test(name)) {
    return `invalid stream name ${JSON.stringify(name)}: no spaces, '.', '*', '>', '/' or '\\'`;
  }
  return undefined;
}

const NANOS_PER_MS = 1_000_000;

/** Name, subjects and limits of the telemetry stream (`telemetry_proto::StreamSpec`). */
export class StreamSpec {
  /** Default stream name (`TELEMETRY_STREAM`). */
  static readonly DEFAULT_STREAM = "TELEMETRY";
  /** How long the broker remembers a `Nats-Msg-Id`. */
  static readonly DEFAULT_DUPLICATE_WINDOW_MS = 120_000;
  /** How long messages stay in the stream. */
  static readonly DEFAULT_MAX_AGE_MS = 7 * 24 * 3600 * 1000;
  /** Disk cap (`TELEMETRY_STREAM_MAX_BYTES`); the oldest messages go first at the cap. */
  static readonly DEFAULT_MAX_BYTES = 8 * 1024 * 1024 * 1024;
  /** Largest message the stream accepts. */
  static readonly DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024;
  /** Smallest `TELEMETRY_STREAM_MAX_BYTES` accepted: one largest message. */
  static readonly MIN_MAX_BYTES = StreamSpec.DEFAULT_MAX_MESSAGE_SIZE;
  /** Most replicas JetStream allows. */
  static readonly MAX_REPLICAS = 5;

  duplicateWindowMs = StreamSpec.DEFAULT_DUPLICATE_WINDOW_MS;
  maxAgeMs = StreamSpec.DEFAULT_MAX_AGE_MS;
  maxBytes = StreamSpec.DEFAULT_MAX_BYTES;
  replicas = 1;

  constructor(
    readonly name: string,
    readonly subjects: Subjects,
  ) {}

  /** The same stream capped at `maxBytes`, which must hold at least one largest message. */
  withMaxBytes(maxBytes: number): StreamSpec {
    if (!Number.isSafeInteger(maxBytes) || maxBytes < StreamSpec.MIN_MAX_BYTES) {
      throw new Error(`${maxBytes} is less than one largest message (${StreamSpec.MIN_MAX_BYTES} bytes)`);
    }
    const spec = this.clone();
    spec.maxBytes = maxBytes;
    return spec;
  }

  /** The same stream kept in `replicas` copies (1 to `MAX_REPLICAS`). */
  withReplicas(replicas: number): StreamSpec {
    if (!Number.isInteger(replicas) || replicas < 1 || replicas > StreamSpec.MAX_REPLICAS) {
      throw new Error(`${replicas} is not between 1 and ${StreamSpec.MAX_REPLICAS}`);
    }
    const spec = this.clone();
    spec.replicas = replicas;
    return spec;
  }

  private clone(): StreamSpec {
    return Object.assign(new StreamSpec(this.name, this.subjects), this);
  }

  /** The JetStream configuration: file storage, limits retention, discard old. */
  config(): Partial<StreamConfig> & { name: string } {
    return {
      name: this.name,
      subjects: [this.subjects.wildcard()],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      duplicate_window: this.duplicateWindowMs * NANOS_PER_MS,
      max_age: this.maxAgeMs * NANOS_PER_MS,
      max_bytes: this.maxBytes,
      max_msg_size: StreamSpec.DEFAULT_MAX_MESSAGE_SIZE,
      num_replicas: this.replicas,
      description: "render telemetry (telemetry.v1 envelopes)",
    };
  }
}
