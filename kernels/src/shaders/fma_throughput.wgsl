// Arithmetic throughput: every invocation runs independent chains of vec4 fused multiply-adds
// (eight chains, so the latency of one FMA hides behind the others). The chains converge to a
// fixed point (k / (1 - m) = 1.0), so no value overflows or turns denormal whatever the count.
// The result is written only when it equals a value it never reaches, so nothing is stored,
// yet no compiler can drop the arithmetic.

@group(0) @binding(0) var<storage, read_write> sink: array<f32>;

// Must match FMA_ITERATIONS in gpu.rs (each iteration: 8 chains x 4 lanes x 2 flops).
const ITERATIONS: u32 = 512u;

@compute @workgroup_size(256)
fn fma_chains(@builtin(global_invocation_id) invocation: vec3<u32>) {
    let seed = f32(invocation.x & 1023u) * 1.0e-6;
    var c0 = vec4<f32>(seed, 0.1, 0.2, 0.3);
    var c1 = c0 + vec4<f32>(0.01);
    var c2 = c0 + vec4<f32>(0.02);
    var c3 = c0 + vec4<f32>(0.03);
    var c4 = c0 + vec4<f32>(0.04);
    var c5 = c0 + vec4<f32>(0.05);
    var c6 = c0 + vec4<f32>(0.06);
    var c7 = c0 + vec4<f32>(0.07);
    let m = vec4<f32>(0.999);
    let k = vec4<f32>(0.001);
    for (var i = 0u; i < ITERATIONS; i = i + 1u) {
        c0 = fma(c0, m, k);
        c1 = fma(c1, m, k);
        c2 = fma(c2, m, k);
        c3 = fma(c3, m, k);
        c4 = fma(c4, m, k);
        c5 = fma(c5, m, k);
        c6 = fma(c6, m, k);
        c7 = fma(c7, m, k);
    }
    let total = (c0 + c1) + (c2 + c3) + (c4 + c5) + (c6 + c7);
    if (total.x == -1.0) {
        sink[0] = total.y;
    }
}
