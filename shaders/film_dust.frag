#version 330
// A sheet of blowing dust in front of the camera: fbm noise streaming with the wind, tinted
// by the haze colour and lit by the neon's glow. Alpha-blended, writes no depth.

uniform vec3 u_dust_color;   // linear
uniform float u_time;
uniform float u_density;     // 0..1 how thick the storm is now
uniform vec2 u_wind;         // noise units per second
uniform float u_layer;       // per-sheet offset

in vec3 v_world_pos;
in vec3 v_world_normal;
in vec3 v_eye_pos;
in vec4 v_color;
in vec2 v_uv;

out vec4 o_color;

float hash21(vec2 p) {
    p = fract(p * vec2(123.34, 456.21));
    p += dot(p, p + 45.32);
    return fract(p.x * p.y);
}

float value_noise(vec2 p) {
    vec2 i = floor(p);
    vec2 f = fract(p);
    vec2 u = f * f * (3.0 - 2.0 * f);
    return mix(mix(hash21(i), hash21(i + vec2(1, 0)), u.x),
               mix(hash21(i + vec2(0, 1)), hash21(i + vec2(1, 1)), u.x), u.y);
}

void main() {
    vec2 p = v_uv * vec2(3.0, 1.6) + u_wind * u_time + u_layer * 13.1;
    float n = 0.55 * value_noise(p) + 0.3 * value_noise(p * 2.3 + 5.0)
            + 0.15 * value_noise(p * 5.1 - u_wind * u_time);
    float edge = smoothstep(0.0, 0.25, v_uv.x) * smoothstep(1.0, 0.75, v_uv.x)
               * smoothstep(0.0, 0.2, v_uv.y) * smoothstep(1.0, 0.6, v_uv.y);
    float a = smoothstep(0.35, 0.85, n) * u_density * edge * v_color.a;
    o_color = vec4(u_dust_color * (0.7 + 0.6 * n), a);
}
