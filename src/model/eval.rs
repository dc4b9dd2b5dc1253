//! Token-weighted mean loss of a model (optionally with an adapter) over examples, exactly as
//! `wgtune eval` reports it and as transformers computes it: position t predicts token t+1,
//! tokens labelled −100 do not count.

use crate::bail;
use crate::data::{Example, IGNORE_INDEX};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::model::{AdapterRef, ModelRef};

/// Summed loss and counted tokens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalLoss {
    /// Mean loss per counted token.
    pub loss: f64,
    /// Tokens counted.
    pub tokens: usize,
}

/// Evaluate `examples` in batches of `batch_size` sequences, padding with `pad`.
pub async fn eval_loss(
    gpu: &Gpu,
    model: ModelRef<'_>,
    adapter: Option<&AdapterRef<'_>>,
    examples: &[Example],
    batch_size: usize,
    pad: u32,
) -> Result<EvalLoss> {
    if batch_size == 0 {
        bail!("the evaluation batch size must be at least 1");
    }
    let (mut sum, mut count) = (0.0f64, 0usize);
    for batch in examples.chunks(batch_size) {
        let t = batch.iter().map(|e| e.ids.len()).max().unwrap_or(1).max(1);
        let b = batch.len();
        let (mut ids, mut mask, mut targets) = (
            vec![pad; b * t],
            vec![0u32; b * t],
            vec![IGNORE_INDEX; b * t],
        );
        for (i, e) in batch.iter().enumerate() {
            for (j, &id) in e.ids.iter().enumerate() {
                ids[i * t + j] = id;
                mask[i * t + j] = 1;
                // Position j predicts the label of token j+1 (transformers' shift).
                if j + 1 < e.ids.len() {
                    targets[i * t + j] = e.labels[j + 1];
                }
            }
        }
        let losses = model
            .position_losses(gpu, &ids, &mask, &targets, b, t, adapter)
            .await?;
        for (l, &tg) in losses.iter().zip(&targets) {
            if tg != IGNORE_INDEX {
                sum += *l as f64;
                count += 1;
            }
        }
    }
    if count == 0 {
        bail!("no trained tokens to evaluate");
    }
    Ok(EvalLoss {
        loss: sum / count as f64,
        tokens: count,
    })
}
