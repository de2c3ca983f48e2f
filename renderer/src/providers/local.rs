//! The local provider: places the product photo into the room photo.
//!
//! Placement and scale come from a hash of the variant id and prompt, so a variant
//! always renders the same image (tests compare hashes) while different variants look
//! different. Faults are drawn from a hash of the seed, the run id and the variant id:
//! they do not depend on the order variants run in, so a test that knows the run id can
//! tell which variant fails ([`LocalProvider::fault_for`]); and a prompt pack with fixed
//! variant ids (the demo's, a storefront's) still sees failures and timeouts spread over
//! its runs, instead of the same variants failing every time or never.

use std::time::Duration;

use image::imageops::{self, FilterType};
use image::DynamicImage;
use sha2::{Digest, Sha256};

use super::{encode_png, Provider, ProviderError, RenderJob};
use crate::config::{LocalSettings, LOCAL_MODEL};

/// What the fault injection decided for a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Render normally.
    None,
    /// Fail with a provider error.
    Fail,
    /// Never finish (the pipeline's timeout ends it).
    Hang,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct LocalProvider {
    settings: LocalSettings,
}

impl LocalProvider {
    /// A provider with these settings.
    pub fn new(settings: LocalSettings) -> Self {
        Self { settings }
    }

    /// The fault drawn for `variant_id` of run `run_id` under this provider's seed and
    /// rates.
    pub fn fault_for(&self, run_id: &str, variant_id: &str) -> Fault {
        let settings = &self.settings;
        if settings.failure_rate <= 0.0 && settings.timeout_rate <= 0.0 {
            return Fault::None;
        }
        let mut hasher = Sha256::new();
        hasher.update(settings.seed.to_le_bytes());
        // Length-prefixed so ("ab", "c") and ("a", "bc") draw differently.
        hasher.update((run_id.len() as u64).to_le_bytes());
        hasher.update(run_id.as_bytes());
        hasher.update(variant_id.as_bytes());
        let digest = hasher.finalize();
        let mut word = [0u8; 8];
        word.copy_from_slice(&digest[..8]);
        let draw = u64::from_le_bytes(word) as f64 / (u64::MAX as f64 + 1.0);
        if draw < settings.failure_rate {
            Fault::Fail
        } else if draw < settings.failure_rate + settings.timeout_rate {
            Fault::Hang
        } else {
            Fault::None
        }
    }
}

/// Scale (share of the room's width) and position (share of the free space) of the
/// product, from the variant.
fn placement(job: &RenderJob) -> (f32, f32, f32) {
    let digest = Sha256::digest(format!("{}\n{}", job.variant_id, job.prompt).as_bytes());
    let unit = |byte: u8| f32::from(byte) / 255.0;
    let scale = 0.25 + 0.25 * unit(digest[0]);
    let x = unit(digest[1]);
    // Products stand on the floor: keep them in the lower part of the room.
    let y = 0.5 + 0.5 * unit(digest[2]);
    (scale, x, y)
}

/// Composites `product` into `room`; pure CPU work.
pub fn composite(room: &DynamicImage, product: &DynamicImage, job: &RenderJob) -> DynamicImage {
    let (scale, fx, fy) = placement(job);
    let mut canvas = room.to_rgba8();
    let (room_w, room_h) = canvas.dimensions();
    let (prod_w, prod_h) = (product.width().max(1), product.height().max(1));
    let target_w = ((room_w as f32 * scale).round() as u32).clamp(1, room_w.max(1));
    let target_h =
        ((target_w as f32 * prod_h as f32 / prod_w as f32).round() as u32).clamp(1, room_h.max(1));
    // An RGBA8 product (most cutouts) is resized in place of a full-size copy: with
    // several variants at once, that copy is a large share of a render's memory.
    let scaled = match product.as_rgba8() {
        Some(rgba) => imageops::resize(rgba, target_w, target_h, FilterType::Triangle),
        None => imageops::resize(
            &product.to_rgba8(),
            target_w,
            target_h,
            FilterType::Triangle,
        ),
    };
    let x = ((room_w - scaled.width()) as f32 * fx).round() as i64;
    let y = ((room_h - scaled.height()) as f32 * fy).round() as i64;
    imageops::overlay(&mut canvas, &scaled, x, y);
    DynamicImage::ImageRgba8(canvas)
}

#[async_trait::async_trait]
impl Provider for LocalProvider {
    fn model(&self) -> &str {
        LOCAL_MODEL
    }

    async fn render(&self, job: &RenderJob) -> Result<Vec<u8>, ProviderError> {
        if self.settings.latency > Duration::ZERO {
            tokio::time::sleep(self.settings.latency).await;
        }
        match self.fault_for(&job.run_id, &job.variant_id) {
            Fault::None => {}
            Fault::Fail => return Err(ProviderError::Injected),
            Fault::Hang => std::future::pending::<()>().await,
        }
        let job = job.clone();
        tokio::task::spawn_blocking(move || {
            encode_png(&composite(&job.room.image, &job.product.image, &job))
        })
        .await
        .map_err(|err| ProviderError::Task(err.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_follow_the_rates_and_the_seed() {
        let provider = |failure_rate, timeout_rate, seed| {
            LocalProvider::new(LocalSettings {
                failure_rate,
                timeout_rate,
                seed,
                ..Default::default()
            })
        };
        assert_eq!(provider(1.0, 0.0, 1).fault_for("r", "v"), Fault::Fail);
        assert_eq!(provider(0.0, 1.0, 1).fault_for("r", "v"), Fault::Hang);
        assert_eq!(provider(0.0, 0.0, 1).fault_for("r", "v"), Fault::None);
        let mixed = provider(0.3, 0.3, 7);
        let draws: Vec<_> = (0..1000)
            .map(|i| mixed.fault_for("run", &format!("v{i}")))
            .collect();
        let fails = draws.iter().filter(|f| **f == Fault::Fail).count();
        let hangs = draws.iter().filter(|f| **f == Fault::Hang).count();
        assert!((200..400).contains(&fails), "{fails}");
        assert!((200..400).contains(&hangs), "{hangs}");
        let again: Vec<_> = (0..1000)
            .map(|i| mixed.fault_for("run", &format!("v{i}")))
            .collect();
        assert_eq!(draws, again);
    }

    /// The demo's prompt pack has four fixed variant ids: keyed on the variant alone,
    /// a seed either failed some of them in every run or never failed any.
    #[test]
    fn fixed_variant_ids_fail_in_some_runs_and_not_in_others() {
        let provider = LocalProvider::new(LocalSettings {
            failure_rate: 0.1,
            timeout_rate: 0.1,
            seed: 0,
            ..Default::default()
        });
        for variant in ["by-window", "center", "left-corner", "close-up"] {
            let draws: Vec<_> = (0..1000)
                .map(|run| provider.fault_for(&format!("run-{run}"), variant))
                .collect();
            for fault in [Fault::None, Fault::Fail, Fault::Hang] {
                let count = draws.iter().filter(|f| **f == fault).count();
                let expected = if fault == Fault::None {
                    700..900
                } else {
                    50..150
                };
                assert!(expected.contains(&count), "{variant} {fault:?}: {count}");
            }
        }
    }
}
