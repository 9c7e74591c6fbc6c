//! The GPU tests (`tests/wgpu.rs`) are built only with `--features wgpu`. Without it, say so; and
//! where they are required (`VQIB_REQUIRE_WGPU=1`, set by `.ci/run`) a build without them fails
//! instead of passing with no GPU test run.

#[cfg(not(feature = "wgpu"))]
#[test]
fn the_gpu_tests_need_the_wgpu_feature() {
    let required = std::env::var("VQIB_REQUIRE_WGPU").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "VQIB_REQUIRE_WGPU=1, but the tests were built without --features wgpu"
    );
    eprintln!(
        "skipping: the GPU tests (tests/wgpu.rs) need `cargo test --release --features wgpu`"
    );
}
