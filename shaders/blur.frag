#version 330
// One direction of a separable Gaussian (9 taps folded into 5 bilinear fetches). Run
// horizontally then vertically, at half, quarter and eighth resolution for a wide soft bloom.

uniform sampler2D u_src;
uniform vec2 u_direction;  // (1, 0) or (0, 1)
uniform float u_spread;    // tap distance in source texels

in vec2 v_uv;
out vec4 o_color;

void main() {
    vec2 step_uv = u_direction * u_spread / vec2(textureSize(u_src, 0));
    // Weights and offsets of a 9-tap Gaussian (sigma ~ 2) merged pairwise for linear filtering.
    vec3 sum = texture(u_src, v_uv).rgb * 0.2270270270;
    sum += texture(u_src, v_uv + step_uv * 1.3846153846).rgb * 0.3162162162;
    sum += texture(u_src, v_uv - step_uv * 1.3846153846).rgb * 0.3162162162;
    sum += texture(u_src, v_uv + step_uv * 3.2307692308).rgb * 0.0702702703;
    sum += texture(u_src, v_uv - step_uv * 3.2307692308).rgb * 0.0702702703;
    o_color = vec4(sum, 1.0);
}
