//! `forward_into` allocates nothing once its workspace is sized (a counting allocator).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use resnetc::runtime::ndarray::Array4;
use resnetc::runtime::Workspace;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to the system allocator with the caller's arguments, so
// `System`'s guarantees hold; counting has no effect on the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the caller's `layout` contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: as for `dealloc`, and the caller's `new_size` contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The count is global: the tests take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

resnetc::resnet!(CifarResnet20 = "specs/cifar_resnet20.resnet");
// Every convolution path at once (at 64x64): the stem, direct 1x1 and strided 3x3, Winograd
// F(4x4) chunked (layer 1) and over all tiles (layer 2), F(2x2) (layers 3 and 4).
resnetc::resnet!(Resnet18 = "specs/resnet18.resnet", input_shape = [3, 64, 64]);

/// Allocations made by `f`, the tests taking turns (the count is global).
fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    f();
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

/// Runs `forward` once to size the workspace, then asserts that a second run allocates
/// nothing and gives the same value.
fn assert_steady(mut forward: impl FnMut() -> f32) {
    let first = forward();
    let mut again = 0.0;
    assert_eq!(allocations(|| again = forward()), 0, "allocations in a steady-state forward_into");
    assert_eq!(first, again);
}

#[test]
fn steady_state_forward_allocates_nothing() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let model = CifarResnet20::random(5);
    let x = Array4::<f32>::from_elem((2, 3, 32, 32), 0.25);
    let mut ws = Workspace::new();
    assert_steady(|| model.forward_into(x.view(), &mut ws).unwrap()[[1, 3]]);
    // A smaller batch reuses the buffers too.
    let small = Array4::<f32>::from_elem((1, 3, 32, 32), 0.25);
    assert_eq!(
        allocations(|| {
            let _ = model.forward_into(small.view(), &mut ws).unwrap();
        }),
        0
    );
}

#[test]
fn steady_state_resnet18_allocates_nothing() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let model = Resnet18::random(6);
    let x = Array4::<f32>::from_elem((2, 3, 64, 64), 0.25);
    let mut ws = Workspace::new();
    assert_steady(|| model.forward_into(x.view(), &mut ws).unwrap()[[1, 7]]);
}
