//! `runtime sample --server URL --model-name NAME`: the reverse chain in this process, each
//! model evaluation a request to a Triton Inference Server (feature `triton`).

use std::time::Instant;

use crate::output::OutputKind;
use crate::SampleArgs;

#[cfg(not(feature = "triton"))]
pub fn sample(_args: &SampleArgs, server: &str, _out: &OutputKind, _started: Instant) -> anyhow::Result<()> {
    Err(crate::bad(format!(
        "--server {server}: this runtime was built without the triton feature; build it with `make build` \
         (or cargo build --release -p ddpm-cli --features triton)"
    )))
}

#[cfg(feature = "triton")]
pub fn sample(args: &SampleArgs, server: &str, out: &OutputKind, started: Instant) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    use ddpm_runtime::triton::{RetryPolicy, TritonDenoiser};
    use ddpm_runtime::{Denoiser, GuidanceBatching, Samples};

    use crate::{bad, check_batch_memory, configure, evaluations_bar, finish, read_noise};

    let name =
        args.model_name.as_deref().ok_or_else(|| bad(format!("--server {server}: --model-name NAME (the served model) is needed")))?;
    for (flag, given) in [
        ("--precision", args.precision != "fp32"),
        ("--ep", args.ep.is_some()),
        ("--threads", args.threads.is_some()),
        ("--model-cache", args.model_cache.is_some()),
    ] {
        if given {
            return Err(bad(format!("{flag}: the server runs the model (set it in the server's model config), not this client")));
        }
    }
    // A server killed mid-request must be an error the retries see, not a silent SIGPIPE.
    let sigpipe = ddpm_io::cli::IgnoreSigpipe::new();
    let mut first = TritonDenoiser::connect_with(server, name, RetryPolicy::with_retries(args.retries))?;
    let shape = first.shape();
    check_batch_memory(args, shape)?;
    let max = first.max_batch_size();
    if max > 0 && args.batch_size > max {
        return Err(bad(format!(
            "--batch-size {}: {} takes at most {max} samples a request (its max_batch_size)",
            args.batch_size,
            first.describe()
        )));
    }
    let noise = read_noise(args, shape)?;
    let model_guidance = first.guidance().map(|g| g.guidance_scale);
    let guidance = args.guidance_scale.or(model_guidance).unwrap_or(1.0);
    // A guided step sends the batch twice in one request when the server takes 2B.
    let batching = if max == 0 || 2 * args.batch_size <= max { GuidanceBatching::Stacked } else { GuidanceBatching::Separate };
    let per = shape.sample_len();

    // The whole run, checked once as one pipeline would check it.
    let whole = configure(first.pipeline(), args, model_guidance, noise.clone())?;
    let plan = whole.plan()?;
    drop(whole);
    let n = match &noise {
        Some(x) => x.len() / per,
        None => args.n.unwrap_or(16),
    };
    let batches: Vec<(usize, usize)> = (0..n).step_by(args.batch_size).map(|s| (s, (s + args.batch_size).min(n) - s)).collect();
    let k = args.concurrency.min(batches.len()).max(1);
    let mut connections = vec![first];
    for _ in 1..k {
        connections.push(connections[0].try_clone()?);
    }
    let bar = evaluations_bar(Some(plan.evaluations as u64));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<anyhow::Result<Samples>>>> = Mutex::new((0..batches.len()).map(|_| None).collect());
    let t0 = Instant::now();
    let mut requests = 0;
    std::thread::scope(|scope| {
        let handles: Vec<_> = connections
            .into_iter()
            .map(|mut model| {
                let (bar, next, failed, results, batches, noise) = (&bar, &next, &failed, &results, &batches, &noise);
                let every = plan.timesteps.len().div_ceil(10).max(1);
                scope.spawn(move || {
                    loop {
                        let j = next.fetch_add(1, Ordering::SeqCst);
                        if j >= batches.len() || failed.load(Ordering::SeqCst) {
                            break;
                        }
                        let (start, b) = batches[j];
                        let mut run = || -> anyhow::Result<Samples> {
                            let slice = noise.as_ref().map(|x| x[start * per..(start + b) * per].to_vec());
                            let mut p = configure(model.pipeline(), args, model_guidance, slice)?
                                .first_index(args.first_index + start as u64)
                                .n(b)
                                .guidance_batching(batching);
                            if args.trajectory.is_some() {
                                p = p.record_trajectory(every);
                            }
                            Ok(p.on_progress(|_| bar.inc(1)).run()?)
                        };
                        let r = run();
                        if r.is_err() {
                            failed.store(true, Ordering::SeqCst);
                        }
                        if let Ok(mut all) = results.lock() {
                            all[j] = Some(r);
                        }
                    }
                    model.requests()
                })
            })
            .collect();
        for h in handles {
            requests += h.join().unwrap_or(0);
        }
    });
    bar.finish_and_clear();
    // Every connection is closed (each thread dropped its own): stdout's closed pipe ends the
    // tool quietly again.
    drop(sigpipe);
    let elapsed = t0.elapsed();
    let mut all = results.into_inner().map_err(|_| anyhow::anyhow!("a sampling thread panicked"))?;
    // The first error in batch order (no partial output is written).
    if let Some(e) = all.iter_mut().find_map(|r| match r.take() {
        Some(Err(e)) => Some(e),
        other => {
            *r = other;
            None
        }
    }) {
        return Err(e);
    }
    let mut merged = Samples {
        data: Vec::with_capacity(n * per),
        shape: [n, shape.channels, shape.height, shape.width],
        labels: None,
        trajectory: Vec::new(),
        evaluations: 0,
        fused_evaluations: 0,
        model_time: Duration::ZERO,
        total_time: elapsed,
    };
    let mut labels = Vec::new();
    for (j, r) in all.into_iter().enumerate() {
        let s = r.and_then(Result::ok).ok_or_else(|| anyhow::anyhow!("batch {j} was not run"))?;
        merged.data.extend_from_slice(&s.data);
        if let Some(l) = &s.labels {
            labels.extend_from_slice(l);
        }
        for (i, (step, x0)) in s.trajectory.into_iter().enumerate() {
            if merged.trajectory.len() <= i {
                merged.trajectory.push((step, Vec::with_capacity(n * per)));
            }
            merged.trajectory[i].1.extend_from_slice(&x0);
        }
        merged.evaluations += s.evaluations;
        merged.model_time += s.model_time;
    }
    merged.labels = (!labels.is_empty()).then_some(labels);
    let what_ran = format!(
        "served by {server} as {name}: {requests} requests, {k} in flight, {:.2} ms per request",
        merged.model_time.as_secs_f64() * 1e3 / requests.max(1) as f64
    );
    finish(args, out, &merged, &what_ran, guidance, started)
}
