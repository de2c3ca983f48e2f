//! The render pipeline: one run of a prompt pack, instrumented exactly as the seed's
//! step 12 describes.
//!
//! `start_run` with every field, then per variant (up to `variant_concurrency` at once)
//! `record_variant_start`, render under the per-variant timeout, store the image,
//! `record_variant_result`; then `complete_run` with the status and the three counts.
//! The pipeline runs as its own task, so a shopper who closes the connection does not
//! leave a run without its completion. At shutdown a run still going at the render
//! drain deadline is interrupted ([`crate::lifecycle`]): its unfinished variants get a
//! FAILED result with [`ErrorCode::Interrupted`] (those that never started get no
//! `record_variant_start`) and the run completes as [`RunStatus::Interrupted`].

use std::sync::Arc;
use std::time::Instant;

use futures::future::join_all;
use telemetry::{
    hash_prompt, CompleteRun, EmitError, ErrorCode, ImageInfo, RunStatus, StartRun, Telemetry,
    VariantResultRecord, VariantStart, VariantStatus,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::Limits;
use crate::input::{InputImage, RenderInput, Variant};
use crate::lifecycle::Runs;
use crate::metrics::{Metrics, VariantOutcomeKind};
use crate::providers::{Provider, RenderJob};
use crate::store::{variant_key, ImageStore};

/// How a variant's render and store ended: status, error code and message, and the
/// stored image on success.
type Ended = (
    VariantStatus,
    Option<ErrorCode>,
    Option<String>,
    Option<crate::store::StoredImage>,
);

/// Who asked: the shop (from the signed query) and the request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    /// The shop's domain; empty when unsigned and not given.
    pub shop_id: String,
    /// The request id (the caller's, or generated).
    pub request_id: String,
}

/// How one variant ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantOutcome {
    /// The variant's id.
    pub variant_id: String,
    /// SUCCESS, FAILED or TIMEOUT (an interrupted variant is FAILED with
    /// [`ErrorCode::Interrupted`]).
    pub status: VariantStatus,
    /// Render and store time.
    pub latency_ms: u64,
    /// Set unless SUCCESS.
    pub error_code: Option<ErrorCode>,
    /// Set unless SUCCESS.
    pub error_message: Option<String>,
    /// Store key of the image, on SUCCESS.
    pub image_key: Option<String>,
    /// sha256 of the stored image, on SUCCESS.
    pub image_sha256: Option<String>,
}

/// How the run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// The run's id (UUIDv7).
    pub run_id: String,
    /// COMPLETE, PARTIAL or FAILED; INTERRUPTED when shutdown stopped it.
    pub status: RunStatus,
    /// Whole run, start to completion.
    pub total_duration_ms: u64,
    /// Per variant, in pack order.
    pub variants: Vec<VariantOutcome>,
}

impl RunOutcome {
    fn count(&self, status: VariantStatus) -> u32 {
        self.variants.iter().filter(|v| v.status == status).count() as u32
    }
}

impl VariantOutcome {
    /// Whether shutdown stopped the variant before it finished.
    pub fn interrupted(&self) -> bool {
        self.error_code == Some(ErrorCode::Interrupted)
    }
}

/// The prompt actually sent for a variant: the variant's prompt followed by the resolved
/// facts, so the model knows the product's real size and material. Its hash is the
/// variant's `final_prompt_hash`.
pub fn final_prompt(variant: &Variant, resolved_facts_json: &str) -> String {
    format!(
        "{}\n\nProduct facts: {resolved_facts_json}",
        variant.prompt.trim()
    )
}

/// Run status from the counts: all succeeded COMPLETE, some PARTIAL, none FAILED.
pub fn run_status(success: u32, total: u32) -> RunStatus {
    match success {
        0 => RunStatus::Failed,
        s if s == total => RunStatus::Complete,
        _ => RunStatus::Partial,
    }
}

/// The error message of an interrupted variant.
pub const INTERRUPTED_MESSAGE: &str =
    "the renderer shut down before the variant finished (SHUTDOWN_RENDER_DRAIN_MS passed)";

fn image_info(image: &InputImage) -> ImageInfo {
    ImageInfo {
        hash: image.sha256.clone(),
        meta: image.meta(),
    }
}

/// The `start_run` record of run `run_id` of `input`, rendered with `model`.
pub fn start_run(run_id: &str, ctx: &RequestContext, model: &str, input: &RenderInput) -> StartRun {
    StartRun {
        run_id: run_id.to_owned(),
        shop_id: ctx.shop_id.clone(),
        request_id: ctx.request_id.clone(),
        product_asset_id: input.product_asset_id.clone(),
        room_session_id: input.room_session_id.clone(),
        prompt_pack_version: input.prompt_pack_version.clone(),
        model: model.to_owned(),
        product_image: image_info(&input.product_image),
        room_image: image_info(&input.room_image),
        resolved_facts_hash: hash_prompt(&input.resolved_facts_json),
        resolved_facts_json: input.resolved_facts_json.clone(),
        prompt_pack_hash: hash_prompt(&input.prompt_pack_json),
        prompt_pack_json: input.prompt_pack_json.clone(),
        variant_count: input.variants.len() as u32,
    }
}

/// One of the [`Limits::render_concurrency`] renders in progress. Held from decoding the
/// request's images until its run completes (so also while the run goes on after the
/// caller hung up); dropping it lets the next request in.
#[derive(Debug)]
pub struct RenderSlot {
    _permit: OwnedSemaphorePermit,
}

/// Logs a telemetry call the SDK refused, at debug: the SDK already counted it in its
/// ledger (visible in `/metrics` and in `ProducerStats`), so it is not lost silently.
/// Recording never fails a render.
pub(crate) fn refused(call: &'static str, result: Result<(), EmitError>) {
    if let Err(err) = result {
        tracing::debug!(call, error = %err, "telemetry call refused");
    }
}

/// Renders runs: the provider, the store and the SDK, shared by all requests.
pub struct Renderer {
    provider: Arc<dyn Provider>,
    store: ImageStore,
    /// Where the run's records go: every call enqueues and returns at once.
    telemetry: Telemetry,
    limits: Limits,
    metrics: Arc<Metrics>,
    /// [`Limits::render_concurrency`] permits, shared by all requests.
    slots: Arc<Semaphore>,
    /// The run tasks, for shutdown to wait for and interrupt.
    runs: Runs,
}

impl Renderer {
    /// Puts the parts together.
    pub fn new(
        provider: Arc<dyn Provider>,
        store: ImageStore,
        telemetry: Telemetry,
        limits: Limits,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            provider,
            store,
            telemetry,
            limits,
            metrics,
            slots: Arc::new(Semaphore::new(limits.render_concurrency)),
            runs: Runs::default(),
        }
    }

    /// The runs in progress: [`Self::spawn_run`] adds to them, shutdown drains them.
    pub fn runs(&self) -> &Runs {
        &self.runs
    }

    /// Runs [`Self::run`] as a task of its own, tracked in [`Self::runs`] so shutdown
    /// waits for it, holding `slot` until the run ends.
    pub fn spawn_run(
        self: &Arc<Self>,
        ctx: RequestContext,
        input: RenderInput,
        slot: RenderSlot,
        span: tracing::Span,
    ) -> tokio::task::JoinHandle<RunOutcome> {
        use tracing::Instrument as _;
        let renderer = self.clone();
        self.runs.spawn(
            async move {
                let outcome = renderer.run(ctx, input).await;
                drop(slot);
                outcome
            }
            .instrument(span),
        )
    }

    /// A render slot, waiting for one at most [`Limits::render_queue_wait`] (in arrival
    /// order); `None` when none came free in time.
    pub async fn render_slot(&self) -> Option<RenderSlot> {
        let acquire = self.slots.clone().acquire_owned();
        match tokio::time::timeout(self.limits.render_queue_wait, acquire).await {
            // The semaphore is never closed.
            Ok(permit) => permit.ok().map(|permit| RenderSlot { _permit: permit }),
            Err(_elapsed) => None,
        }
    }

    /// The provider's model name.
    pub fn model(&self) -> &str {
        self.provider.model()
    }

    /// Renders every variant of `input` and records the run.
    pub async fn run(self: Arc<Self>, ctx: RequestContext, input: RenderInput) -> RunOutcome {
        let started = Instant::now();
        let run_id = uuid::Uuid::now_v7().to_string();
        let start = start_run(&run_id, &ctx, self.model(), &input);
        refused("start_run", self.telemetry.start_run(start));

        let slots = Arc::new(Semaphore::new(self.limits.variant_concurrency));
        let interrupt = self.runs.interrupt();
        let variants = input.variants.iter().map(|variant| {
            let job = RenderJob {
                run_id: run_id.clone(),
                variant_id: variant.id.clone(),
                prompt: final_prompt(variant, &input.resolved_facts_json),
                product: input.product_image.clone(),
                room: input.room_image.clone(),
            };
            let slots = slots.clone();
            let ctx = &ctx;
            let this = &self;
            async move {
                // A variant still waiting for its turn at the interrupt never starts.
                let _slot = tokio::select! {
                    biased;
                    () = interrupt.cancelled() => return this.interrupted(ctx, &job, None),
                    // The semaphore is never closed, so acquiring cannot fail.
                    slot = slots.acquire() => slot.expect("semaphore open"),
                };
                this.variant(ctx, job, interrupt).await
            }
        });
        let variants = join_all(variants).await;

        let success = variants
            .iter()
            .filter(|v| v.status == VariantStatus::Success)
            .count() as u32;
        let status = if variants.iter().any(VariantOutcome::interrupted) {
            self.runs.record_interrupted();
            RunStatus::Interrupted
        } else {
            run_status(success, variants.len() as u32)
        };
        let elapsed = started.elapsed();
        let outcome = RunOutcome {
            run_id,
            status,
            total_duration_ms: elapsed.as_millis() as u64,
            variants,
        };
        let complete = CompleteRun {
            run_id: outcome.run_id.clone(),
            request_id: ctx.request_id.clone(),
            shop_id: ctx.shop_id.clone(),
            status: outcome.status,
            total_duration_ms: outcome.total_duration_ms,
            success_count: outcome.count(VariantStatus::Success),
            // Interrupted variants are FAILED: the counts add up to the variants.
            fail_count: outcome.count(VariantStatus::Failed),
            timeout_count: outcome.count(VariantStatus::Timeout),
        };
        refused("complete_run", self.telemetry.complete_run(complete));
        self.metrics.run(outcome.status, elapsed);
        outcome
    }

    /// One variant: start, render under the timeout, store, result; or, when `interrupt`
    /// fires first, the interrupted result.
    async fn variant(
        &self,
        ctx: &RequestContext,
        job: RenderJob,
        interrupt: &CancellationToken,
    ) -> VariantOutcome {
        let start = VariantStart {
            run_id: job.run_id.clone(),
            variant_id: job.variant_id.clone(),
            request_id: ctx.request_id.clone(),
            shop_id: ctx.shop_id.clone(),
        };
        refused(
            "record_variant_start",
            self.telemetry.record_variant_start(start),
        );
        let started = Instant::now();
        // Biased towards the work: a variant that finished as the interrupt came
        // reports how it finished.
        let ended = tokio::select! {
            biased;
            ended = self.render_and_store(&job) => ended,
            () = interrupt.cancelled() => return self.interrupted(ctx, &job, Some(started)),
        };
        let (status, error_code, error_message, stored) = ended;
        let latency = started.elapsed();
        let outcome = VariantOutcome {
            variant_id: job.variant_id.clone(),
            status,
            latency_ms: latency.as_millis() as u64,
            error_code,
            error_message,
            image_key: stored.as_ref().map(|s| s.key.clone()),
            image_sha256: stored.map(|s| s.sha256),
        };
        self.record_result(ctx, &job, &outcome);
        let kind = match outcome.status {
            VariantStatus::Success => VariantOutcomeKind::Success,
            VariantStatus::Timeout => VariantOutcomeKind::Timeout,
            _ => VariantOutcomeKind::Failed,
        };
        self.metrics.variant(kind, latency);
        outcome
    }

    /// Renders under the variant timeout and stores the image: the status, error code
    /// and message, and the stored image on success.
    async fn render_and_store(&self, job: &RenderJob) -> Ended {
        let rendered =
            tokio::time::timeout(self.limits.variant_timeout, self.provider.render(job)).await;
        let key = variant_key(&job.run_id, &job.variant_id);
        match rendered {
            Err(_elapsed) => (
                VariantStatus::Timeout,
                Some(ErrorCode::Timeout),
                Some(format!(
                    "variant did not finish within {} ms",
                    self.limits.variant_timeout.as_millis()
                )),
                None,
            ),
            Ok(Err(err)) => (
                VariantStatus::Failed,
                Some(ErrorCode::ProviderError),
                Some(err.to_string()),
                None,
            ),
            Ok(Ok(png)) => match self.store.put(&key, &png).await {
                Ok(stored) => (VariantStatus::Success, None, None, Some(stored)),
                Err(err) => {
                    tracing::error!(error = %err, key, "storing a rendered image failed");
                    (
                        VariantStatus::Failed,
                        Some(ErrorCode::StorageError),
                        Some(err.to_string()),
                        None,
                    )
                }
            },
        }
    }

    /// The result of a variant interrupted at shutdown: FAILED with
    /// [`ErrorCode::Interrupted`], recorded at once (before the telemetry flush).
    /// `started` is `None` for a variant that never started (latency 0).
    fn interrupted(
        &self,
        ctx: &RequestContext,
        job: &RenderJob,
        started: Option<Instant>,
    ) -> VariantOutcome {
        let outcome = VariantOutcome {
            variant_id: job.variant_id.clone(),
            status: VariantStatus::Failed,
            latency_ms: started.map_or(0, |started| started.elapsed().as_millis() as u64),
            error_code: Some(ErrorCode::Interrupted),
            error_message: Some(INTERRUPTED_MESSAGE.to_owned()),
            image_key: None,
            image_sha256: None,
        };
        self.record_result(ctx, job, &outcome);
        // Counted, but its latency is not a render's: left out of the histogram.
        self.metrics.variant_interrupted();
        outcome
    }

    /// `record_variant_result` of `outcome`.
    fn record_result(&self, ctx: &RequestContext, job: &RenderJob, outcome: &VariantOutcome) {
        let result = VariantResultRecord {
            run_id: job.run_id.clone(),
            variant_id: job.variant_id.clone(),
            request_id: ctx.request_id.clone(),
            shop_id: ctx.shop_id.clone(),
            final_prompt_hash: hash_prompt(&job.prompt),
            status: outcome.status,
            latency_ms: outcome.latency_ms,
            output_image_key: outcome.image_key.clone(),
            output_image_hash: outcome.image_sha256.clone(),
            error_code: outcome.error_code,
            error_message: outcome.error_message.clone(),
        };
        refused(
            "record_variant_result",
            self.telemetry.record_variant_result(result),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_status_follows_the_counts() {
        assert_eq!(run_status(4, 4), RunStatus::Complete);
        assert_eq!(run_status(1, 4), RunStatus::Partial);
        assert_eq!(run_status(0, 4), RunStatus::Failed);
    }
}
