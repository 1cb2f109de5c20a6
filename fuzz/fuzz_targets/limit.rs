//! A global allocator that aborts on any single allocation over 512 MiB.
//!
//! libFuzzer's `-malloc_limit_mb` needs a sanitizer's malloc hooks, and these
//! targets build without one (`-s none`, see FUZZING.md); a reservation that
//! is never touched would not show in `-rss_limit_mb` either. A header that
//! claims 2^40 elements must be an error before anything is allocated, so
//! an allocation this big is a bug the fuzzer should report as a crash.

use std::alloc::{GlobalAlloc, Layout, System};

const LIMIT: usize = 512 << 20;

pub struct Limit;

unsafe impl GlobalAlloc for Limit {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn check(size: usize) {
    if size > LIMIT {
        // No allocation (and no panic machinery) from inside the allocator.
        let msg = b"fuzz: single allocation over 512 MiB (unbounded allocation)\n";
        unsafe { libc_write(msg) };
        std::process::abort();
    }
}

unsafe fn libc_write(msg: &[u8]) {
    unsafe extern "C" {
        fn write(fd: i32, buf: *const u8, n: usize) -> isize;
    }
    unsafe { write(2, msg.as_ptr(), msg.len()) };
}
