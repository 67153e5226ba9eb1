//! Criterion benchmarks of the per-frame hot paths: render, pack, unpack,
//! and the worker's render + pack.
//!
//! `cargo bench -p donut-shared --bench frame`
//!
//! On Linux the benchmarks are timed in the benchmark thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`), not wall-clock time: the development machine
//! has two cores shared with other builds, and at a load average of 5 the
//! wall clock made the same code measure anywhere from 26 to 52 µs a frame,
//! while its CPU time stays within a few percent. The work is single-threaded
//! and never sleeps, so on an idle machine the two clocks agree. Set
//! `DONUT_BENCH_CLOCK=wall` to time with the wall clock instead.

use std::hint::black_box;
#[cfg(target_os = "linux")]
use std::time::Duration;

use criterion::measurement::Measurement;
#[cfg(target_os = "linux")]
use criterion::measurement::{ValueFormatter, WallTime};
use criterion::{Criterion, Throughput};
use donut_shared::{FRAME_LEN, PACKED_LEN, pack, render, render_packed, unpack};

fn frames<M: Measurement>(c: &mut Criterion<M>) {
    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Elements(1));
    let mut n = 0u64;
    let mut out = [0u8; FRAME_LEN];
    g.bench_function("render", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            render(black_box(n), &mut out);
        })
    });
    let mut packed = [0u8; PACKED_LEN];
    g.bench_function("render_packed", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            render_packed(black_box(n), &mut packed);
        })
    });
    render(12_345, &mut out);
    g.bench_function("pack", |b| b.iter(|| pack(black_box(&out), &mut packed)));
    let mut unpacked = [0u8; FRAME_LEN];
    g.bench_function("unpack", |b| {
        b.iter(|| unpack(black_box(&packed), &mut unpacked))
    });
    g.finish();
}

/// The calling thread's CPU time, as criterion measurements.
#[cfg(target_os = "linux")]
struct ThreadCpuTime {
    /// Only for its formatter: the values are durations, like the wall
    /// clock's.
    wall: WallTime,
}

#[cfg(target_os = "linux")]
fn thread_cpu_time() -> Duration {
    /// `struct timespec` on 64-bit Linux.
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    unsafe extern "C" {
        fn clock_gettime(clock: i32, out: *mut Timespec) -> i32;
    }
    /// Linux's `CLOCK_THREAD_CPUTIME_ID`.
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut t = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `t` is a valid, writable timespec; the clock id exists on
    // every Linux since 2.6.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(t.sec.unsigned_abs(), t.nsec.clamp(0, 999_999_999) as u32)
}

#[cfg(target_os = "linux")]
impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu_time()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_time().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        self.wall.formatter()
    }
}

fn main() {
    let wall = std::env::var_os("DONUT_BENCH_CLOCK").is_some_and(|v| v == "wall");
    if wall || !cfg!(target_os = "linux") {
        let mut c = Criterion::default().configure_from_args();
        frames(&mut c);
        c.final_summary();
    } else {
        #[cfg(target_os = "linux")]
        {
            let mut c = Criterion::default()
                .with_measurement(ThreadCpuTime { wall: WallTime })
                .configure_from_args();
            frames(&mut c);
            c.final_summary();
        }
    }
}
