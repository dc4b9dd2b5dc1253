//! The bind group cache (src/gpu/bind_groups.rs): a training step binds what the previous one
//! did (the pool hands out the same buffers when the same ones are idle), so once the pool
//! holds every buffer a step needs (after the first step) every dispatch reuses a cached bind
//! group and none is built. (That reusing them computes the right thing is what every multi-step test checks:
//! the ten AdamW steps against PEFT, resumption, pipelined steps.)

use crate::common::ci;
use crate::fixtures::dir;
use wgtune::gpu::Gpu;
use wgtune::lora::{Layout, LoraConfig, init_params};
use wgtune::model::{Quant, load_dir};
use wgtune::train::{Batch, LoraTrainer, OptimConfig};

#[test]
fn after_two_steps_no_bind_group_is_built() {
    // A GPU of its own: the shared one counts the other tests' submissions too.
    let gpu = match Gpu::new_blocking() {
        Ok(g) => g,
        Err(e) if !ci() => return crate::common::note(&format!("SKIPPED: no GPU adapter: {e}")),
        Err(e) => panic!("CI is set but there is no GPU adapter: {e}"),
    };
    let (m, _) = load_dir(&gpu, &dir("models/tiny"), Quant::F32).unwrap();
    let lora = LoraConfig {
        r: 4,
        lora_alpha: 8.0,
        lora_dropout: 0.1,
        target_modules: vec!["all-linear".into()],
        use_rslora: false,
    };
    let params = init_params(&Layout::new(&m.model_config(), &lora), 4, 3);
    let mut t = LoraTrainer::new(&gpu, &m, lora, OptimConfig::default(), &params).unwrap();
    let (b, s) = (2, 24);
    let ids: Vec<u32> = (0..b * s).map(|i| (i * 37 % 999) as u32).collect();
    let labels: Vec<i32> = ids.iter().map(|&x| x as i32).collect();
    let batch = Batch::from_labels(ids, vec![1; b * s], &labels, b, s);
    let mut step = |i: u32| {
        pollster::block_on(t.train_step(&gpu, std::slice::from_ref(&batch), 1e-3, i)).unwrap()
    };
    step(0);
    step(1);
    let ((h0, m0), (d0, _)) = (gpu.bind_group_counts(), gpu.counters());
    assert!(m0 > 0, "the first steps built no bind group");
    for i in 2..5 {
        step(i);
    }
    let ((h1, m1), (d1, _)) = (gpu.bind_group_counts(), gpu.counters());
    assert_eq!(m1, m0, "steps 3-5 built {} bind groups", m1 - m0);
    assert_eq!(
        h1 - h0,
        d1 - d0,
        "every dispatch of steps 3-5 reused a bind group"
    );
}
