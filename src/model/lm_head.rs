//! The LM head on top of the forward pass: logits (tied to wte, chunked over the
//! vocabulary) and per-position losses (the chunked LM head + cross-entropy).

use crate::bail;
use crate::error::Result;
use crate::gpu::{Commands, Gpu, Tensor};
use crate::kernels::Reduction;
use crate::kernels::cross_entropy::lm_head_loss;
use crate::kernels::matmul::{Gemm, Weight, gemm};
use crate::model::AdapterRef;
use crate::model::acts::Keep;
use crate::model::forward::{AttnSource, Pass};
use crate::model::gpt2::Gpt2;

/// Vocabulary chunk of the LM head: the (rows, chunk) logits block that is resident at once.
pub const VOCAB_CHUNK: usize = 8192;

/// Record `logits (rows, V) = hidden · headᵀ` for a head `(V, C)` (GPT-2's wte; Llama's
/// lm_head or tied embedding), vocabulary chunk by chunk.
pub fn record_head_logits(
    cmd: &mut Commands,
    logits: &Tensor,
    hidden: &Tensor,
    head: &Weight,
    rows: usize,
    c: usize,
    v: usize,
) {
    for v0 in (0..v).step_by(VOCAB_CHUNK) {
        let vc = VOCAB_CHUNK.min(v - v0);
        let w = head.rows(v0, vc, c);
        let out = logits.slice(v0, logits.len() - v0);
        let g = Gemm::new(rows, vc, c).trans_b(true).ldc(v);
        gemm(cmd, &out, hidden, &w, None, g);
    }
}

impl Gpt2 {
    /// Record `logits (rows, V) = hidden · wteᵀ`, vocabulary chunk by chunk.
    pub fn record_logits(&self, cmd: &mut Commands, logits: &Tensor, hidden: &Tensor, rows: usize) {
        let (c, v) = (self.config.n_embd, self.config.vocab_size);
        record_head_logits(cmd, logits, hidden, &self.wte, rows, c, v);
    }

    /// Logits (B,T,V) of `ids (B,T)` with `mask (B,T)`, with `adapter` applied if given (no
    /// dropout).
    pub async fn logits(
        &self,
        gpu: &Gpu,
        ids: &[u32],
        mask: &[u32],
        b: usize,
        t: usize,
        adapter: Option<&AdapterRef<'_>>,
    ) -> Result<Vec<f32>> {
        self.check_batch(gpu, ids, mask, b, t)?;
        if b * t * self.config.vocab_size > gpu.max_binding_words() {
            bail!(
                "{b} x {t} positions of full logits do not fit one GPU binding; use fewer positions"
            );
        }
        let (ids_t, mask_t) = (gpu.upload_u32(ids), gpu.upload_u32(mask));
        let logits = gpu.tensor(b * t * self.config.vocab_size);
        let mut cmd = gpu.commands();
        let src = AttnSource::Batch { mask: &mask_t };
        let pass = Pass { b, t, src, adapter };
        let hidden = self
            .record_forward(&mut cmd, &ids_t, &pass, Keep::Nothing)
            .lnf;
        self.record_logits(&mut cmd, &logits, &hidden, b * t);
        cmd.submit();
        Ok(gpu.read_f32(&logits).await?)
    }

    /// Per-position losses (B·T) of predicting `targets (B,T)` (−100 = not trained) from
    /// `ids`, through the chunked LM head + cross-entropy, with `adapter` applied if given.
    #[allow(clippy::too_many_arguments)] // the batch (ids, mask, targets, b, t) as its parts
    pub async fn position_losses(
        &self,
        gpu: &Gpu,
        ids: &[u32],
        mask: &[u32],
        targets: &[i32],
        b: usize,
        t: usize,
        adapter: Option<&AdapterRef<'_>>,
    ) -> Result<Vec<f32>> {
        self.check_batch(gpu, ids, mask, b, t)?;
        let (ids_t, mask_t) = (gpu.upload_u32(ids), gpu.upload_u32(mask));
        let mut cmd = gpu.commands();
        let src = AttnSource::Batch { mask: &mask_t };
        let pass = Pass { b, t, src, adapter };
        let hidden = self
            .record_forward(&mut cmd, &ids_t, &pass, Keep::Nothing)
            .lnf;
        let (c, v) = (self.config.n_embd, self.config.vocab_size);
        let loss = record_position_losses(&mut cmd, &hidden, &self.wte, targets, c, v);
        cmd.submit();
        Ok(gpu.read_f32(&loss).await?)
    }
}

/// Record the per-position losses `(rows)` of predicting `targets (rows)` (−100 = not
/// trained) from the final hidden states `(rows, C)` through the head `(V, C)`, chunked over
/// the vocabulary (either family's evaluation).
pub fn record_position_losses(
    cmd: &mut Commands,
    hidden: &Tensor,
    head: &Weight,
    targets: &[i32],
    c: usize,
    v: usize,
) -> Tensor {
    let gpu = cmd.gpu();
    let rows = targets.len();
    let target_words: Vec<u32> = targets.iter().map(|&x| x as u32).collect();
    let targets_t = gpu.upload_u32(&target_words);
    let loss = gpu.tensor(rows);
    let chunk_width = vocab_chunk(gpu, rows, v);
    let chunk = gpu.tensor(rows * chunk_width);
    let state = gpu.tensor(rows * 3);
    lm_head_loss(
        cmd,
        &loss,
        None,
        &chunk,
        &state,
        hidden,
        head,
        &targets_t,
        rows,
        c,
        v,
        chunk_width,
        0.0,
        Reduction::Auto,
    );
    loss
}

/// Columns of the LM-head chunk for `rows` rows: at most [`VOCAB_CHUNK`], a multiple of 128
/// (so that every chunk of an f16 wte starts 256-byte aligned whatever C is), and small
/// enough that the (rows, chunk) block fits one shader binding.
pub fn vocab_chunk(gpu: &Gpu, rows: usize, vocab: usize) -> usize {
    let fit = gpu.max_binding_words() / rows.max(1) / 128 * 128;
    VOCAB_CHUNK.min(vocab.div_ceil(128) * 128).min(fit).max(128)
}
