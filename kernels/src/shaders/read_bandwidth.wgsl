// Streaming read: every invocation walks the source buffer with a grid stride, 16 bytes per
// load, and folds what it read into one word. The word is written only when it equals a value
// that the data almost never produces, so the shader writes (almost) nothing, yet no compiler can drop the
// loads: whether to write depends on every word read.

@group(0) @binding(0) var<storage, read> source: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> sink: array<u32>;

// Must match the @workgroup_size below.
const WORKGROUP_SIZE: u32 = 256u;
// An arbitrary value; a fold that happens to equal it costs one write.
const NEVER: u32 = 0x9e3779b9u;

@compute @workgroup_size(256)
fn read_stream(
    @builtin(global_invocation_id) invocation: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
) {
    let stride = workgroups.x * WORKGROUP_SIZE;
    let count = arrayLength(&source);
    var folded_a = vec4<u32>(0u);
    var folded_b = vec4<u32>(0u);
    var index = invocation.x;
    // Two loads per iteration keep more requests in flight.
    loop {
        if (index + stride >= count) {
            break;
        }
        folded_a = folded_a ^ source[index];
        folded_b = folded_b ^ source[index + stride];
        index = index + 2u * stride;
    }
    if (index < count) {
        folded_a = folded_a ^ source[index];
    }
    let folded = folded_a ^ folded_b;
    let word = folded.x ^ folded.y ^ folded.z ^ folded.w;
    if (word == NEVER) {
        sink[0] = invocation.x;
    }
}
