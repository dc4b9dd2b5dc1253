//! `wgtune selftest`: every GPU kernel, in every variant this adapter runs, against its CPU
//! reference on this adapter (`wgtune::kernels::selftest`, the cases the kernel tests run).

use clap::Args;
use wgtune::error::{Error, Result};
use wgtune::kernels::selftest::{self, Family, Options};

#[derive(Args)]
pub struct SelftestArgs {
    /// The odd shapes only: no GPT-2-sized cases, no throughput figures.
    #[arg(long)]
    pub quick: bool,
    /// Only the kernels whose name contains this (e.g. gemv, "tiled 64x64", layernorm).
    #[arg(long)]
    pub filter: Option<String>,
}

/// Milliseconds since the first call (the selftest's throughput clock).
fn now_ms() -> f64 {
    use std::sync::OnceLock;
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs_f64()
        * 1e3
}

pub fn run(args: SelftestArgs) -> Result<()> {
    let gpu = wgtune::gpu::Gpu::new_blocking()?;
    let i = &gpu.adapter_info;
    let adapter = format!("{} ({:?}, {:?})", i.name, i.device_type, i.backend);
    println!("adapter: {adapter}, driver {} {}", i.driver, i.driver_info);
    let opts = Options {
        filter: args.filter,
        gpt2_sizes: !args.quick,
        now: (!args.quick).then_some(now_ms as fn() -> f64),
    };
    let t0 = std::time::Instant::now();
    let (mut total, mut failed) = (0, 0);
    for family in Family::ALL {
        for report in pollster::block_on(selftest::run_family(&gpu, family, &opts)) {
            println!("{}", report.line());
            if !report.passed() {
                for f in report.failures.iter().skip(1) {
                    println!("      {f}");
                }
            }
            total += 1;
            failed += usize::from(!report.passed());
        }
    }
    gpu.check_healthy()?;
    if total == 0 {
        return Err(Error::new(format!(
            "selftest: no kernel name contains {:?}",
            opts.filter.unwrap_or_default()
        )));
    }
    if failed > 0 {
        return Err(Error::new(format!(
            "selftest: {failed} of {total} kernels FAILED on {adapter}"
        )));
    }
    println!(
        "selftest: {total} kernels passed on {adapter} ({:.1} s)",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
