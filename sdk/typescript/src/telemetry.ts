/**
 * `Telemetry`: the handle the calls are made on, and the publisher behind it (the Rust
 * SDK's `handle.rs` and `publisher.rs`).
 *
 * A call checks its argument, stamps the time and the producer sequence, and appends to
 * a bounded in-memory queue; it touches no socket and awaits nothing, and the promise it
 * returns is already resolved. The publisher works on later turns of the event loop:
 * it encodes the queued calls and publishes them to JetStream with many publishes in
 * flight (`Nats-Msg-Id` = event id, so a retry is stored once), only while connected,
 * retrying failures with backoff and the same id. Whatever cannot be sent is counted
 * in the ledger by reason, and the ledger goes out as `ProducerStats`.
 */

import { readFileSync } from "node:fs";

import {
  JetStreamApiError,
  jetstream,
  jetstreamManager,
  type JetStreamClient,
} from "@nats-io/jetstream";
import {
  connect,
  credsAuthenticator,
  type NatsConnection,
  type NodeConnectionOptions,
} from "@nats-io/transport-node";
import { v7 } from "uuid";

import {
  FINAL_STATS_RESERVE_MS,
  LINGER_BELOW,
  MAX_REJECTED_ATTEMPTS,
  natsUrls,
  resolveConfig,
  validateConfig,
  type TelemetryConfig,
  type TelemetryOptions,
} from "./config.js";
import { callEnvelope, encode, EventIds, statsEnvelope } from "./envelope.js";
import { Ledger, type StatsSnapshot } from "./ledger.js";
import {
  checkCompleteRun,
  checkEmit,
  checkStartRun,
  checkVariantResult,
  checkVariantStart,
  CLOSED,
  EmitError,
  QUEUE_FULL,
  type Checked,
  type CompleteRunInput,
  type EmitInput,
  type StartRunInput,
  type VariantResultInput,
  type VariantStartInput,
} from "./record.js";
import type { StreamSpec, Subjects } from "./subjects.js";

/** What `shutdown` achieved. */
export interface ShutdownReport {
  /** Calls made over the handle's life. */
  emitted: number;
  /** Events the broker acknowledged over the handle's life. */
  published: number;
  /** Events dropped over the handle's life, for any reason (including `left`). */
  dropped: number;
  /**
   * Events still queued or unacknowledged when the deadline passed (counted as dropped
   * with reason `shutdown_deadline`; some may have reached the broker without their ack
   * arriving).
   */
  left: number;
  /** Whether the final `ProducerStats` was acknowledged. */
  finalStatsSent: boolean;
}

/** Default deadline of `shutdown`: the renderer's `SHUTDOWN_DEADLINE_MS`. */
export const DEFAULT_SHUTDOWN_DEADLINE_MS = 5_000;

/** A call's answer: nothing when its event was queued, the reason when it was dropped. */
export type EmitResult = Promise<EmitError | undefined>;

const ACCEPTED: EmitResult = Promise.resolve(undefined);
const QUEUE_FULL_RESULT: EmitResult = Promise.resolve(QUEUE_FULL);
const CLOSED_RESULT: EmitResult = Promise.resolve(CLOSED);

/** How often the shutdown drain looks again while it waits. */
const IDLE_TICK_MS = 20;

/** The telemetry handle. */
export class Telemetry {
  private constructor(private readonly core: Core | undefined) {}

  /**
   * Validates the settings (throws `ConfigError` naming the setting) and starts the
   * publisher, which connects on its own and keeps retrying: this returns at once even
   * when the broker is down.
   */
  static start(options: TelemetryOptions = {}): Telemetry {
    const config = resolveConfig(options);
    const { subjects, stream } = validateConfig(config);
    return new Telemetry(new Core(config, subjects, stream));
  }

  /** A handle whose calls do nothing (telemetry switched off). */
  static disabled(): Telemetry {
    return new Telemetry(undefined);
  }

  /** Whether calls go anywhere. */
  get enabled(): boolean {
    return this.core !== undefined;
  }

  /** Whether `shutdown` was called: calls are dropped (`closed`). */
  get closed(): boolean {
    return this.core?.isClosed ?? false;
  }

  /** This producer's instance id (`{service}-{uuidv7}`), as sent in every envelope. */
  get producerId(): string | undefined {
    return this.core?.producer;
  }

  /** The original app's `startRun`. */
  startRun(input: StartRunInput): EmitResult {
    return this.core ? this.core.submit(checkStartRun(input, this.core.config.limits)) : ACCEPTED;
  }

  /** The original app's `recordVariantStart`. */
  recordVariantStart(input: VariantStartInput): EmitResult {
    return this.core ? this.core.submit(checkVariantStart(input, this.core.config.limits)) : ACCEPTED;
  }

  /** The original app's `recordVariantResult`. */
  recordVariantResult(input: VariantResultInput): EmitResult {
    return this.core ? this.core.submit(checkVariantResult(input, this.core.config.limits)) : ACCEPTED;
  }

  /** The original app's `completeRun`. */
  completeRun(input: CompleteRunInput): EmitResult {
    return this.core ? this.core.submit(checkCompleteRun(input, this.core.config.limits)) : ACCEPTED;
  }

  /** The original app's `emit`. */
  emit(input: EmitInput): EmitResult {
    return this.core ? this.core.submit(checkEmit(input, this.core.config.limits)) : ACCEPTED;
  }

  /** The ledger as it stands. */
  stats(): StatsSnapshot {
    return this.core
      ? this.core.ledger.snapshot()
      : { emitted: 0, published: 0, dropped: 0, droppedByReason: {}, publishFailures: 0, queueDepth: 0, connected: false };
  }

  /**
   * Stops taking events, publishes what is queued until the deadline, sends a final
   * `ProducerStats`, closes the connection and reports. Resolves within `deadlineMs`
   * (plus scheduling slack) even when the broker is down: what is left is counted as
   * dropped with reason `shutdown_deadline`, never silently lost. Later calls resolve
   * to the ledger as it stands.
   */
  async shutdown(deadlineMs: number = DEFAULT_SHUTDOWN_DEADLINE_MS): Promise<ShutdownReport> {
    if (!this.core) return { emitted: 0, published: 0, dropped: 0, left: 0, finalStatsSent: false };
    return this.core.shutdown(deadlineMs);
  }
}

/** An accepted call, waiting for the publisher. */
interface Queued {
  checked: Checked;
  seq: number;
  occurredAt: number;
}

/** An encoded event, kept until the broker acknowledges it. */
interface Prepared {
  subject: string;
  eventId: string;
  payload: Uint8Array;
  bytes: number;
  attempts: number;
}

/** A FIFO with O(1) push and shift. */
class Fifo<T> {
  private items: Array<T | undefined> = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head] = undefined;
    this.head += 1;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  clear(): void {
    this.items = [];
    this.head = 0;
  }
}

type Failure = "max_payload" | "no_stream" | "rejected" | "transient";

/** How a failed publish is handled: dropped for good, retried, or the stream re-ensured. */
function classify(err: unknown): Failure {
  const error = err as Error & { code?: number };
  if (/max_payload/i.test(error?.message ?? "")) return "max_payload";
  if (error?.name === "JetStreamNotEnabled") return "no_stream"; // no responders: no stream binds the subject
  if (err instanceof JetStreamApiError) {
    return err.code === 10059 ? "no_stream" : "rejected";
  }
  if (error?.name === "JetStreamError") return "rejected";
  return "transient";
}

/** JetStream error 10047: the broker cannot reserve the stream's storage. */
function createErrorHint(err: unknown): string {
  return err instanceof JetStreamApiError && err.code === 10047
    ? " (the broker cannot reserve TELEMETRY_STREAM_MAX_BYTES: lower it, or raise the server's jetstream max_file_store)"
    : "";
}

class Core {
  readonly ledger: Ledger;
  readonly producer: string;
  private readonly startedAt = Date.now();
  private readonly ids = new EventIds();
  private readonly statsSubject: string;
  private readonly subjectOf: Record<Checked["kind"], string>;

  private readonly queue = new Fifo<Queued>();
  private retry: Prepared[] = [];
  private inFlight = 0;
  /** Bumped when shutdown gives up on what is in flight: later acks are ignored. */
  private generation = 0;
  private closed = false;

  private nc: NatsConnection | undefined;
  private js: JetStreamClient | undefined;
  private connected = false;
  private streamReady: boolean;
  private ensuring = false;

  private scheduled = false;
  private retryAt = 0;
  private backoffMs: number;
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly statsTimer: NodeJS.Timeout;
  private stopConnecting = false;
  private wakeConnectLoop: (() => void) | undefined;
  private wakeDrain: (() => void) | undefined;
  private shuttingDown = false;
  private deadlineAt: number | undefined;
  private readonly pumpFn = () => this.pump();

  constructor(
    readonly config: TelemetryConfig,
    private readonly subjects: Subjects,
    private readonly stream: StreamSpec,
  ) {
    this.ledger = new Ledger(config.logger);
    this.producer = `${config.service}-${v7()}`;
    this.streamReady = !config.ensureStream;
    this.backoffMs = config.minBackoffMs;
    this.statsSubject = subjects.forKind("producer_stats");
    this.subjectOf = {
      run_started: subjects.forKind("run_started"),
      variant_started: subjects.forKind("variant_started"),
      variant_result: subjects.forKind("variant_result"),
      run_completed: subjects.forKind("run_completed"),
      event: subjects.forKind("event"),
    };
    this.statsTimer = setInterval(() => {
      // Drops of a burst that has stopped still get their line.
      this.ledger.flushQueueFullWarning(false);
      void this.publishStats(false, Date.now() + this.config.ackTimeoutMs);
    }, config.statsIntervalMs);
    this.statsTimer.unref();
    void this.connectLoop();
  }

  /** The hot path: count, stamp, queue. No await, no I/O. */
  submit(checked: Checked | EmitError): EmitResult {
    const ledger = this.ledger;
    // The emitted count doubles as the producer sequence: a gap in the sequences the
    // collector sees is exactly an event that was dropped.
    const seq = ++ledger.emitted;
    if (this.closed) {
      ledger.dropEvent("closed");
      return CLOSED_RESULT;
    }
    if (checked instanceof EmitError) {
      ledger.dropEvent(checked.reason);
      return Promise.resolve(checked);
    }
    if (
      this.queue.length >= this.config.queueCapacity ||
      ledger.queuedBytes + checked.bytes > this.config.queueMaxBytes
    ) {
      ledger.dropQueueFull();
      return QUEUE_FULL_RESULT;
    }
    ledger.queuedBytes += checked.bytes;
    this.queue.push({ checked, seq, occurredAt: Date.now() });
    this.kick();
    return ACCEPTED;
  }

  /** Schedules a pump: after the linger for a trickle, on the next turn otherwise. */
  private kick(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    const pending = this.queue.length + this.retry.length + this.inFlight;
    if (this.deadlineAt === undefined && this.config.publishLingerMs > 0 && pending < LINGER_BELOW) {
      setTimeout(this.pumpFn, this.config.publishLingerMs);
    } else {
      setImmediate(this.pumpFn);
    }
  }

  /** Sends what is pending, up to `maxInFlight` unacknowledged publishes. */
  private pump(): void {
    this.scheduled = false;
    const js = this.js;
    if (!this.connected || js === undefined) return; // the reconnect kicks again
    const now = Date.now();
    if (now < this.retryAt) {
      this.retryTimer ??= setTimeout(() => {
        this.retryTimer = undefined;
        this.kick();
      }, this.retryAt - now);
      return;
    }
    if (!this.streamReady) {
      this.ensureStream();
      return;
    }
    while (this.inFlight < this.config.maxInFlight) {
      let prepared = this.retry.shift();
      if (prepared === undefined) {
        const queued = this.queue.shift();
        if (queued === undefined) break;
        prepared = this.prepare(queued);
        if (prepared === undefined) continue;
      }
      this.send(js, prepared);
    }
  }

  private prepare(queued: Queued): Prepared | undefined {
    const eventId = this.ids.next(queued.occurredAt);
    try {
      const envelope = callEnvelope(queued.checked, {
        eventId,
        occurredAt: queued.occurredAt,
        producer: this.producer,
        producerSeq: queued.seq,
      });
      return {
        subject: this.subjectOf[queued.checked.kind],
        eventId,
        payload: encode(envelope),
        bytes: queued.checked.bytes,
        attempts: 0,
      };
    } catch (err) {
      // Checked inputs always encode; counted rather than thrown into the event loop.
      this.config.logger.error("telemetry could not encode an event; dropped", { error: String(err) });
      this.ledger.dropEvent("broker_rejected");
      this.ledger.queuedBytes -= queued.checked.bytes;
      return undefined;
    }
  }

  private send(js: JetStreamClient, prepared: Prepared): void {
    prepared.attempts += 1;
    this.inFlight += 1;
    const generation = this.generation;
    js.publish(prepared.subject, prepared.payload, {
      msgID: prepared.eventId,
      timeout: this.config.ackTimeoutMs,
    }).then(
      () => this.onAck(generation, prepared, undefined),
      (err: unknown) => this.onAck(generation, prepared, err ?? new Error("publish failed")),
    );
  }

  private onAck(generation: number, prepared: Prepared, err: unknown): void {
    if (generation !== this.generation) return; // counted as left by shutdown
    this.inFlight -= 1;
    if (err === undefined) {
      this.ledger.published += 1;
      this.ledger.queuedBytes -= prepared.bytes;
      this.backoffMs = this.config.minBackoffMs;
      this.retryAt = 0;
    } else {
      this.ledger.publishFailures += 1;
      const failure = classify(err);
      if (failure === "no_stream" && this.config.ensureStream) this.streamReady = false;
      const permanent =
        failure === "max_payload" || (failure === "rejected" && prepared.attempts >= MAX_REJECTED_ATTEMPTS);
      if (permanent) {
        this.config.logger.error("broker refused a telemetry event; dropped", {
          event_id: prepared.eventId,
          error: String(err),
        });
        this.ledger.dropEvent("broker_rejected");
        this.ledger.queuedBytes -= prepared.bytes;
      } else {
        this.retry.unshift(prepared);
        const now = Date.now();
        if (this.retryAt <= now) {
          this.retryAt = now + this.backoffMs;
          this.backoffMs = Math.min(this.backoffMs * 2, this.config.maxBackoffMs);
        }
      }
    }
    this.wakeDrain?.();
    if (this.queue.length + this.retry.length > 0) this.kick();
  }

  private connectOptions(): NodeConnectionOptions {
    const nats = this.config.nats;
    const options: NodeConnectionOptions = {
      servers: natsUrls(nats.url),
      name: nats.connectionName ?? "telemetry",
      reconnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: this.config.maxBackoffMs,
      timeout: this.config.ackTimeoutMs,
      // Without this nats.js builds two Error objects (stack traces) for every publish
      // in case its request fails: a quarter of the publisher's CPU in the bench.
      noAsyncTraces: true,
    };
    if (nats.user !== undefined) {
      options.user = nats.user;
      options.pass = nats.password;
    }
    if (nats.token !== undefined) options.token = nats.token;
    if (nats.credsFile !== undefined) {
      const creds = readFileSync(nats.credsFile);
      options.authenticator = credsAuthenticator(new Uint8Array(creds));
    }
    if (nats.tlsCaFile !== undefined || nats.tlsCertFile !== undefined) {
      options.tls = { caFile: nats.tlsCaFile, certFile: nats.tlsCertFile, keyFile: nats.tlsKeyFile };
    }
    return options;
  }

  /** Connects, retrying every `maxBackoffMs` until it works or shutdown begins. */
  private async connectLoop(): Promise<void> {
    let failures = 0;
    while (!this.stopConnecting) {
      try {
        const nc = await connect(this.connectOptions());
        // A shutdown that is still draining wants this connection; one that is over does not.
        if (this.stopConnecting) {
          void nc.close().catch(() => undefined);
          return;
        }
        if (failures > 0) this.config.logger.warn("telemetry connected to NATS", { attempts: failures + 1 });
        this.attach(nc);
        return;
      } catch (err) {
        failures += 1;
        // One line for the first failure, then one a minute: the broker being down is
        // already visible (the ledger's `connected`, the queue depth).
        if (failures === 1 || failures % Math.max(1, Math.round(60_000 / this.config.maxBackoffMs)) === 0) {
          this.config.logger.error("telemetry cannot connect to NATS; retrying", {
            url: this.config.nats.url,
            error: String(err),
            attempts: failures,
          });
        }
      }
      // While shutdown drains, the deadline is short: try again sooner.
      const pause = this.shuttingDown ? Math.min(this.config.maxBackoffMs, 5 * IDLE_TICK_MS) : this.config.maxBackoffMs;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, pause);
        timer.unref();
        this.wakeConnectLoop = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeConnectLoop = undefined;
    }
  }

  private attach(nc: NatsConnection): void {
    this.nc = nc;
    this.js = jetstream(nc, { timeout: this.config.ackTimeoutMs });
    this.setConnected(true);
    void (async () => {
      for await (const status of nc.status()) {
        if (status.type === "disconnect") this.setConnected(false);
        else if (status.type === "reconnect") this.setConnected(true);
      }
    })().catch(() => undefined);
    void nc.closed().then(() => {
      this.setConnected(false);
      if (this.nc === nc) {
        this.nc = undefined;
        this.js = undefined;
      }
      // Closed by the client itself (not by shutdown): start over.
      if (!this.stopConnecting) void this.connectLoop();
    });
  }

  private setConnected(connected: boolean): void {
    this.connected = connected;
    this.ledger.connected = connected;
    if (connected) this.kick();
    this.wakeDrain?.();
  }

  /** Creates the stream when it is missing (the Rust SDK's `get_or_create_stream`). */
  private ensureStream(): void {
    const nc = this.nc;
    if (this.ensuring || nc === undefined) return;
    this.ensuring = true;
    const timeout = this.config.ackTimeoutMs;
    void (async () => {
      try {
        const jsm = await jetstreamManager(nc, { timeout, checkAPI: false });
        try {
          await jsm.streams.info(this.stream.name);
        } catch (err) {
          if (!(err instanceof JetStreamApiError && err.code === 10059)) throw err;
          await jsm.streams.add(this.stream.config());
        }
      } catch (err) {
        // Publish either way: a missing stream shows up as failed publishes, which
        // clear `streamReady` again.
        this.config.logger.warn(`telemetry could not ensure its stream; publishing anyway${createErrorHint(err)}`, {
          stream: this.stream.name,
          error: String(err),
        });
      } finally {
        this.streamReady = true;
        this.ensuring = false;
        this.kick();
      }
    })();
  }

  /** Publishes the ledger. Not counted as an event. Resolves to whether it was acked. */
  private async publishStats(final: boolean, untilMs: number): Promise<boolean> {
    const now = Date.now();
    const stats = this.ledger.snapshot();
    const eventId = this.ids.next(now);
    const envelope = statsEnvelope(
      stats,
      { startedAt: this.startedAt, final, service: this.config.service },
      { eventId, occurredAt: now, producer: this.producer },
    );
    const js = this.js;
    const timeout = Math.floor(untilMs - Date.now());
    if (!this.connected || js === undefined || timeout <= 0) return false;
    try {
      await js.publish(this.statsSubject, encode(envelope), { msgID: eventId, timeout });
      return true;
    } catch {
      return false;
    }
  }

  private shutdownDone = false;

  get isClosed(): boolean {
    return this.closed;
  }

  async shutdown(deadlineMs: number): Promise<ShutdownReport> {
    if (this.shuttingDown) {
      const stats = this.ledger.snapshot();
      return {
        emitted: stats.emitted,
        published: stats.published,
        dropped: stats.dropped,
        left: this.shutdownDone ? 0 : stats.queueDepth,
        finalStatsSent: false,
      };
    }
    this.shuttingDown = true;
    this.closed = true;
    const deadlineAt = Date.now() + Math.max(0, deadlineMs);
    this.deadlineAt = deadlineAt;
    this.wakeConnectLoop?.();
    clearInterval(this.statsTimer);
    this.scheduled = false;
    this.pump();
    for (;;) {
      const drained = this.queue.length === 0 && this.retry.length === 0 && this.inFlight === 0;
      const remaining = deadlineAt - FINAL_STATS_RESERVE_MS - Date.now();
      if (drained || remaining <= 0) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(IDLE_TICK_MS, remaining));
        this.wakeDrain = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeDrain = undefined;
      if (!this.scheduled) this.pump();
    }
    const left = this.queue.length + this.retry.length + this.inFlight;
    this.generation += 1;
    this.queue.clear();
    this.retry = [];
    this.inFlight = 0;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    if (left > 0) {
      this.config.logger.warn("telemetry shutdown deadline passed; events left unpublished", { left });
      this.ledger.dropEvent("shutdown_deadline", left);
    }
    this.ledger.queuedBytes = 0;
    this.ledger.flushQueueFullWarning(true);
    const finalStatsSent = Date.now() < deadlineAt ? await this.publishStats(true, deadlineAt) : false;
    const stats = this.ledger.snapshot();
    this.shutdownDone = true;
    this.stopConnecting = true;
    this.wakeConnectLoop?.();
    // Close in the background: the final stats were acknowledged (or not) already.
    const nc = this.nc;
    if (nc !== undefined) void nc.close().catch(() => undefined);
    this.setConnected(false);
    return {
      emitted: stats.emitted,
      published: stats.published,
      dropped: stats.dropped,
      left,
      finalStatsSent,
    };
  }
}
