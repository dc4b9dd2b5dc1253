//! What a GPT-2 block is: its Linear (Conv1D) modules, keyed by the Hugging Face module
//! names ([`Module`]), and its weights ([`Block`]: two LayerNorms and the four Linears, paired
//! with their modules by [`Block::linear`]). The one function that records a block is
//! `Gpt2::record_block`, in `forward`.

use crate::gpu::{Commands, Tensor};
use crate::kernels::layernorm::LayerNorm;
use crate::kernels::matmul::{Weight, linear_forward};

/// The Linear (Conv1D) modules of a GPT-2 block, in PEFT's module order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Module {
    CAttn,
    AttnProj,
    CFc,
    MlpProj,
}

impl Module {
    pub const ALL: [Module; 4] = [
        Module::CAttn,
        Module::AttnProj,
        Module::CFc,
        Module::MlpProj,
    ];

    /// Path inside a block, as in Hugging Face names.
    pub fn path(self) -> &'static str {
        match self {
            Module::CAttn => "attn.c_attn",
            Module::AttnProj => "attn.c_proj",
            Module::CFc => "mlp.c_fc",
            Module::MlpProj => "mlp.c_proj",
        }
    }

    /// (in, out) features for embedding width `c`.
    pub fn dims(self, c: usize) -> (usize, usize) {
        match self {
            Module::CAttn => (c, 3 * c),
            Module::AttnProj => (c, c),
            Module::CFc => (c, 4 * c),
            Module::MlpProj => (4 * c, c),
        }
    }

    /// Its full name in the base model (`transformer.h.{layer}.attn.c_attn`), as PEFT
    /// matches and saves it.
    pub fn full_name(self, layer: usize) -> String {
        format!("transformer.h.{layer}.{}", self.path())
    }
}

/// A Conv1D layer `y = x·W (+ b)` with `W (in,out)` (Llama's nn.Linear weights are stored
/// so too, transposed when loaded; most of them have no bias).
pub struct Linear {
    pub weight: Weight,
    pub bias: Option<Tensor>,
    pub k_in: usize,
    pub n_out: usize,
    /// ‖W‖_F of the checkpoint's weight, before any quantization: what `inspect` compares a
    /// LoRA update's norm with (the GPU copy may be NF4).
    pub weight_norm: f64,
}

impl Linear {
    /// Record `y (rows, out) (+)= x·W + b`.
    pub fn record(&self, cmd: &mut Commands, y: &Tensor, x: &Tensor, rows: usize, acc: bool) {
        let (w, b) = (&self.weight, self.bias.as_ref());
        linear_forward(cmd, y, x, w, b, rows, self.k_in, self.n_out, acc);
    }

    pub fn size_bytes(&self) -> u64 {
        self.weight.size_bytes() + self.bias.as_ref().map_or(0, Tensor::size_bytes)
    }
}

/// One transformer block's weights.
pub struct Block {
    pub ln_1: LayerNorm,
    pub ln_2: LayerNorm,
    /// The Linears, indexed by [`Module`]: see [`Self::linear`].
    pub linears: [Linear; 4],
}

impl Block {
    /// The Linear of module `m`: the one table that pairs the modules LoRA adapts with the
    /// block's weights.
    pub fn linear(&self, m: Module) -> &Linear {
        &self.linears[m as usize]
    }

    pub fn size_bytes(&self) -> u64 {
        let linears: u64 = self.linears.iter().map(Linear::size_bytes).sum();
        self.ln_1.size_bytes() + self.ln_2.size_bytes() + linears
    }
}
