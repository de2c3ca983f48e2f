/**
 * Settings of the SDK, each bound with a named default: the same values as the Rust
 * SDK's `telemetry/src/config.rs` and `proto/src/stream.rs` (docs/contract.md lists
 * them, and a test on each side fails when the code and the document differ).
 */

import { existsSync, statSync } from "node:fs";

import { StreamSpec, Subjects, validateStreamName } from "./subjects.js";

/** Events the queue holds before new ones are dropped (`queue_full`). */
export const DEFAULT_QUEUE_CAPACITY = 16_384;
/** Bytes (summed field sizes) the queue holds before new events are dropped. */
export const DEFAULT_QUEUE_MAX_BYTES = 64 * 1024 * 1024;
/** Publishes awaiting their JetStream ack at once. */
export const DEFAULT_MAX_IN_FLIGHT = 512;
/** Most publishes in flight accepted (the Rust SDK's bound, kept for the same settings). */
export const MAX_IN_FLIGHT_LIMIT = 1024;
/** How long one publish waits for its ack before it is retried with the same id. */
export const DEFAULT_ACK_TIMEOUT_MS = 5_000;
/** How often `ProducerStats` is published. */
export const DEFAULT_STATS_INTERVAL_MS = 10_000;
/** First retry delay after a failed publish; doubles up to `DEFAULT_MAX_BACKOFF_MS`. */
export const DEFAULT_MIN_BACKOFF_MS = 50;
/** Longest retry delay (and the delay between two connection attempts). */
export const DEFAULT_MAX_BACKOFF_MS = 2_000;
/**
 * How long the publisher lets a trickle of events gather before sending them, so a
 * render's events go out in one burst. Only while fewer than `LINGER_BELOW` events are
 * pending or in flight, and never during shutdown.
 */
export const DEFAULT_PUBLISH_LINGER_MS = 5;
/** Longest linger accepted. */
export const MAX_PUBLISH_LINGER_MS = 1_000;
/** Pending plus in-flight events at or above which the publisher sends without lingering. */
export const LINGER_BELOW = 64;
/** Attempts for an error the broker returned before the event is dropped (`broker_rejected`). */
export const MAX_REJECTED_ATTEMPTS = 10;
/** Part of the shutdown deadline kept for the final `ProducerStats`. */
export const FINAL_STATS_RESERVE_MS = 200;
/** At most one `queue_full` warning line per this interval. */
export const QUEUE_FULL_WARN_INTERVAL_MS = 10_000;

/** Default `Limits.maxJsonBytes`: a JSON blob (resolved facts, prompt pack, payload). */
export const DEFAULT_MAX_JSON_BYTES = 64 * 1024;
/** Default `Limits.maxFieldBytes`: ids, hashes, keys, model names. */
export const DEFAULT_MAX_FIELD_BYTES = 1024;
/** Default `Limits.maxErrorMessageBytes`: longer error messages are truncated, not refused. */
export const DEFAULT_MAX_ERROR_MESSAGE_BYTES = 4 * 1024;

/** Size limits checked at the call, in bytes of UTF-8. */
export interface Limits {
  /** A JSON blob (`resolved_facts_json`, `prompt_pack_json`, an event's payload). */
  maxJsonBytes: number;
  /** Ids, hashes, keys, model names and other short strings. */
  maxFieldBytes: number;
  /** An error message longer than this is truncated (marked `…[truncated]`). */
  maxErrorMessageBytes: number;
}

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxJsonBytes: DEFAULT_MAX_JSON_BYTES,
  maxFieldBytes: DEFAULT_MAX_FIELD_BYTES,
  maxErrorMessageBytes: DEFAULT_MAX_ERROR_MESSAGE_BYTES,
});

/** Default NATS server (`NATS_URL`). */
export const DEFAULT_NATS_URL = "nats://127.0.0.1:4222";

/** How to reach NATS: the same settings as the Rust services (`NATS_*`). */
export interface NatsOptions {
  /** One or more server URLs, comma-separated (`NATS_URL`). */
  url: string;
  /** A `.creds` file (`NATS_CREDS`). */
  credsFile?: string;
  /** User name (`NATS_USER`), with `password`. */
  user?: string;
  /** Password (`NATS_PASSWORD`). */
  password?: string;
  /** Token (`NATS_TOKEN`). */
  token?: string;
  /** PEM CA of the server's certificate (`NATS_TLS_CA`); setting it requires TLS. */
  tlsCaFile?: string;
  /** PEM client certificate (`NATS_TLS_CERT`), with `tlsKeyFile`. */
  tlsCertFile?: string;
  /** PEM key of the client certificate (`NATS_TLS_KEY`). */
  tlsKeyFile?: string;
  /** Name shown in the server's connection list. */
  connectionName?: string;
}

/** Where the SDK's few log lines go (a queue-full warning, publish errors). */
export interface Logger {
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** The default logger: one line on stderr per message. */
export const consoleLogger: Logger = {
  warn: (message, fields) => console.warn(`[telemetry] WARN ${message}`, fields ?? ""),
  error: (message, fields) => console.error(`[telemetry] ERROR ${message}`, fields ?? ""),
};

/** Everything `Telemetry.start` needs. */
export interface TelemetryConfig {
  nats: NatsOptions;
  /** Subject prefix (`TELEMETRY_SUBJECT_PREFIX`). */
  subjectPrefix: string;
  /** Stream name (`TELEMETRY_STREAM`). */
  stream: string;
  /** Create the stream when it is missing. Off where the producer may only publish. */
  ensureStream: boolean;
  /** Disk cap of the stream when this producer creates it (`TELEMETRY_STREAM_MAX_BYTES`). */
  streamMaxBytes: number;
  /** Copies of the stream when this producer creates it (`TELEMETRY_STREAM_REPLICAS`). */
  streamReplicas: number;
  /** Name of the service, carried in `ProducerStats` and in the producer id. */
  service: string;
  queueCapacity: number;
  queueMaxBytes: number;
  maxInFlight: number;
  ackTimeoutMs: number;
  statsIntervalMs: number;
  minBackoffMs: number;
  maxBackoffMs: number;
  /** Zero sends each event as soon as the event loop is free. */
  publishLingerMs: number;
  limits: Limits;
  logger: Logger;
}

/** What callers pass: any subset of the settings; the rest take their defaults. */
export type TelemetryOptions = Partial<Omit<TelemetryConfig, "nats" | "limits">> & {
  nats?: Partial<NatsOptions>;
  limits?: Partial<Limits>;
};

/** The defaults (the Rust SDK's `TelemetryConfig::default()`). */
export function defaultConfig(): TelemetryConfig {
  return {
    nats: { url: DEFAULT_NATS_URL, connectionName: "telemetry" },
    subjectPrefix: Subjects.DEFAULT_PREFIX,
    stream: StreamSpec.DEFAULT_STREAM,
    ensureStream: true,
    streamMaxBytes: StreamSpec.DEFAULT_MAX_BYTES,
    streamReplicas: 1,
    service: "telemetry",
    queueCapacity: DEFAULT_QUEUE_CAPACITY,
    queueMaxBytes: DEFAULT_QUEUE_MAX_BYTES,
    maxInFlight: DEFAULT_MAX_IN_FLIGHT,
    ackTimeoutMs: DEFAULT_ACK_TIMEOUT_MS,
    statsIntervalMs: DEFAULT_STATS_INTERVAL_MS,
    minBackoffMs: DEFAULT_MIN_BACKOFF_MS,
    maxBackoffMs: DEFAULT_MAX_BACKOFF_MS,
    publishLingerMs: DEFAULT_PUBLISH_LINGER_MS,
    limits: { ...DEFAULT_LIMITS },
    logger: consoleLogger,
  };
}

/** The defaults with `options` on top. */
export function resolveConfig(options: TelemetryOptions = {}): TelemetryConfig {
  const base = defaultConfig();
  const { nats, limits, ...rest } = options;
  const defined = Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined));
  return {
    ...base,
    ...defined,
    nats: { ...base.nats, ...stripUndefined(nats ?? {}) },
    limits: { ...base.limits, ...stripUndefined(limits ?? {}) },
  };
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** A setting that cannot work, named the way the environment names it. */
export class ConfigError extends Error {
  constructor(
    readonly setting: string,
    readonly reason: string,
  ) {
    super(`invalid setting ${setting}: ${reason}`);
    this.name = "ConfigError";
  }
}

/** Validates `config` and derives its subjects and stream definition. */
export function validateConfig(config: TelemetryConfig): { subjects: Subjects; stream: StreamSpec } {
  validateNats(config.nats);
  let subjects: Subjects;
  try {
    subjects = new Subjects(config.subjectPrefix);
  } catch (err) {
    throw new ConfigError("TELEMETRY_SUBJECT_PREFIX", (err as Error).message);
  }
  const badName = validateStreamName(config.stream);
  if (badName) throw new ConfigError("TELEMETRY_STREAM", badName);
  const positive: Array<[string, number]> = [
    ["TELEMETRY_QUEUE_CAPACITY", config.queueCapacity],
    ["TELEMETRY_QUEUE_MAX_BYTES", config.queueMaxBytes],
    ["TELEMETRY_MAX_IN_FLIGHT", config.maxInFlight],
  ];
  for (const [setting, value] of positive) {
    if (!Number.isInteger(value) || value < 1) {
      throw new ConfigError(setting, "must be an integer of at least 1");
    }
  }
  if (config.maxInFlight > MAX_IN_FLIGHT_LIMIT) {
    throw new ConfigError("TELEMETRY_MAX_IN_FLIGHT", `at most ${MAX_IN_FLIGHT_LIMIT}`);
  }
  if (!(config.publishLingerMs >= 0) || config.publishLingerMs > MAX_PUBLISH_LINGER_MS) {
    throw new ConfigError("TELEMETRY_PUBLISH_LINGER_MS", `between 0 and ${MAX_PUBLISH_LINGER_MS} ms`);
  }
  if (!(config.ackTimeoutMs > 0) || !(config.statsIntervalMs > 0)) {
    throw new ConfigError("ackTimeoutMs/statsIntervalMs", "must be greater than zero");
  }
  if (!(config.minBackoffMs > 0) || !(config.maxBackoffMs >= config.minBackoffMs)) {
    throw new ConfigError("minBackoffMs/maxBackoffMs", "0 < minBackoffMs <= maxBackoffMs");
  }
  for (const [name, value] of Object.entries(config.limits)) {
    if (!Number.isInteger(value) || value < 1) {
      throw new ConfigError(`limits.${name}`, "must be an integer of at least 1");
    }
  }
  let stream: StreamSpec;
  try {
    stream = new StreamSpec(config.stream, subjects).withMaxBytes(config.streamMaxBytes);
  } catch (err) {
    throw new ConfigError("TELEMETRY_STREAM_MAX_BYTES", (err as Error).message);
  }
  try {
    stream = stream.withReplicas(config.streamReplicas);
  } catch (err) {
    throw new ConfigError("TELEMETRY_STREAM_REPLICAS", (err as Error).message);
  }
  return { subjects, stream };
}

function validateNats(nats: NatsOptions): void {
  const files: Array<[string, string | undefined]> = [
    ["NATS_TLS_CA", nats.tlsCaFile],
    ["NATS_TLS_CERT", nats.tlsCertFile],
    ["NATS_TLS_KEY", nats.tlsKeyFile],
    ["NATS_CREDS", nats.credsFile],
  ];
  for (const [setting, file] of files) {
    if (file !== undefined && !(existsSync(file) && statSync(file).isFile())) {
      throw new ConfigError(setting, `${file} is not a readable file`);
    }
  }
  if ((nats.tlsCertFile === undefined) !== (nats.tlsKeyFile === undefined)) {
    throw new ConfigError("NATS_TLS_CERT/NATS_TLS_KEY", "set both or neither");
  }
  for (const url of natsUrls(nats.url)) {
    if (!isNatsUrl(url)) {
      throw new ConfigError("NATS_URL", `${JSON.stringify(url)} is not a NATS URL`);
    }
  }
  if ((nats.user === undefined) !== (nats.password === undefined)) {
    throw new ConfigError("NATS_USER/NATS_PASSWORD", "set both or neither");
  }
  const methods = [nats.credsFile, nats.user, nats.token].filter((m) => m !== undefined).length;
  if (methods > 1) {
    throw new ConfigError("NATS_CREDS/NATS_USER/NATS_TOKEN", "choose one authentication method");
  }
}

function isNatsUrl(url: string): boolean {
  try {
    const parsed = new URL(url.includes("://") ? url : `nats://${url}`);
    const portOk = parsed.port === "" || (Number(parsed.port) > 0 && Number(parsed.port) < 65536);
    return ["nats:", "tls:"].includes(parsed.protocol) && parsed.hostname !== "" && portOk && /^\/?$/.test(parsed.pathname);
  } catch {
    return false;
  }
}

/** A `NATS_URL` value's servers: one URL or several, comma-separated. */
export function natsUrls(url: string): string[] {
  return url
    .split(",")
    .map((u) => u.trim())
    .filter((u) => u.length > 0);
}

/**
 * Settings from the environment, under the names the Rust services use: `NATS_URL`,
 * `NATS_CREDS`, `NATS_USER`, `NATS_PASSWORD`, `NATS_TOKEN`, `NATS_TLS_CA`,
 * `NATS_TLS_CERT`, `NATS_TLS_KEY`, `TELEMETRY_SUBJECT_PREFIX`, `TELEMETRY_STREAM`,
 * `TELEMETRY_STREAM_MAX_BYTES`, `TELEMETRY_STREAM_REPLICAS`, `TELEMETRY_SERVICE`,
 * `TELEMETRY_QUEUE_CAPACITY`, `TELEMETRY_MAX_IN_FLIGHT`, `TELEMETRY_PUBLISH_LINGER_MS`.
 * `TELEMETRY=off` turns the calls into no-ops (`enabled: false`).
 */
export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): {
  enabled: boolean;
  options: TelemetryOptions;
} {
  const switchValue = (env.TELEMETRY ?? "on").trim().toLowerCase();
  if (!["on", "off", "true", "false", "1", "0"].includes(switchValue)) {
    throw new ConfigError("TELEMETRY", `${JSON.stringify(env.TELEMETRY)} is not on or off`);
  }
  const enabled = ["on", "true", "1"].includes(switchValue);
  const text = (name: string) => {
    const value = env[name];
    return value === undefined || value === "" ? undefined : value;
  };
  const int = (name: string) => {
    const value = text(name);
    if (value === undefined) return undefined;
    if (!/^\d+$/.test(value.trim())) throw new ConfigError(name, `${JSON.stringify(value)} is not a whole number`);
    return Number(value.trim());
  };
  return {
    enabled,
    options: {
      nats: {
        url: text("NATS_URL"),
        credsFile: text("NATS_CREDS"),
        user: text("NATS_USER"),
        password: text("NATS_PASSWORD"),
        token: text("NATS_TOKEN"),
        tlsCaFile: text("NATS_TLS_CA"),
        tlsCertFile: text("NATS_TLS_CERT"),
        tlsKeyFile: text("NATS_TLS_KEY"),
      },
      subjectPrefix: text("TELEMETRY_SUBJECT_PREFIX"),
      stream: text("TELEMETRY_STREAM"),
      streamMaxBytes: int("TELEMETRY_STREAM_MAX_BYTES"),
      streamReplicas: int("TELEMETRY_STREAM_REPLICAS"),
      service: text("TELEMETRY_SERVICE"),
      queueCapacity: int("TELEMETRY_QUEUE_CAPACITY"),
      maxInFlight: int("TELEMETRY_MAX_IN_FLIGHT"),
      publishLingerMs: int("TELEMETRY_PUBLISH_LINGER_MS"),
    },
  };
}
