//! A chain allocates nothing per step: the pipeline and every sampler reuse their buffers.
//! Counted with a global allocator that counts allocations: a chain of 40 steps must make
//! exactly as many as a chain of 10 (so the difference, 30 steps, made none). Only the
//! allocations of the thread that runs the chain are counted: the test harness's own threads
//! allocate at times of their own (a few, now and then, seen as 33 against 37), and the
//! pipeline runs a chain on the calling thread (`ddpm_runtime` spawns no thread).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use ddpm_runtime::{GaussianDenoiser, ModelShape, Pipeline, SamplerKind, Schedule, SchedulerConfig};

struct Counting;
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Whether this thread's allocations are counted.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_of_a_chain(kind: SamplerKind, steps: usize, eta: f64) -> usize {
    let config = SchedulerConfig::paper();
    let schedule = Schedule::from_config(&config).unwrap();
    let shape = ModelShape { channels: 3, height: 8, width: 8, out_channels: 3, num_classes: None };
    let mut model = GaussianDenoiser { mean: 0.5, std: 0.2, schedule, shape };
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.set(true);
    let samples = Pipeline::new(&mut model, config).sampler(kind).steps(steps).eta(eta).n(4).batch_size(4).seed(1).run();
    COUNTING.set(false);
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    let samples = samples.unwrap();
    assert_eq!(samples.evaluations, steps);
    drop(samples);
    after - before
}

#[test]
fn no_allocation_per_step() {
    // One test function: the counter is global, so nothing else may run beside it.
    for (kind, eta) in [(SamplerKind::Ddim, 0.0), (SamplerKind::Ddim, 1.0), (SamplerKind::Ddpm, 0.0), (SamplerKind::DpmSolverPP, 0.0)] {
        let short = allocations_of_a_chain(kind, 10, eta);
        let long = allocations_of_a_chain(kind, 40, eta);
        // The chain's buffers are allocated once: the counter did see this thread.
        assert!(short > 0, "{kind:?} eta {eta}: no allocation counted");
        assert_eq!(long, short, "{kind:?} eta {eta}: {short} allocations for 10 steps, {long} for 40");
    }
}
