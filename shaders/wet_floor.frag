#version 330
// The wet floor: dark asphalt-like tiles with puddles. Where it is wet the surface is a mirror:
// the shader lowers its alpha there so the mirrored room drawn under it (a planar reflection:
// the scene instanced with z scaled by -1) shows through, with a Fresnel rise toward grazing
// angles. The neon lights add GGX highlights that stretch into the long streaks of a wet street.

#ifndef MAX_LIGHTS
#define MAX_LIGHTS 16
#endif

uniform vec4 u_light_pos[MAX_LIGHTS];
uniform vec4 u_light_color[MAX_LIGHTS];
uniform int u_light_count;
uniform vec3 u_ambient;
uniform vec3 u_base_color;     // dry floor albedo (linear)
uniform float u_wetness;       // 0 dry .. 1 flooded
uniform float u_puddle_scale;  // puddles per metre
uniform float osg_FrameTime;

uniform float u_scene_gamma;  // 1: linear scene; 2.2: a display-referred scene (see PostSettings)

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

float fbm(vec2 p) {
    float sum = 0.0, amp = 0.5;
    for (int i = 0; i < 4; ++i) {
        sum += amp * value_noise(p);
        p = p * 2.03 + 17.0;
        amp *= 0.5;
    }
    return sum;
}

float ggx(float n_dot_h, float rough) {
    float a2 = rough * rough * rough * rough;
    float d = n_dot_h * n_dot_h * (a2 - 1.0) + 1.0;
    return a2 / (3.14159 * d * d);
}

// The chain decodes a display-referred scene with pow(c, scene_gamma); encode to match so the
// linear light computed here arrives intact.
vec3 to_scene(vec3 rgb) {
    return u_scene_gamma == 1.0 ? rgb : pow(max(rgb, vec3(0.0)), vec3(1.0 / u_scene_gamma));
}

void main() {
    vec2 p = v_world_pos.xy;
    // Puddles: low-frequency noise thresholded by wetness; the rest is damp, not dry.
    float field = fbm(p * u_puddle_scale);
    float puddle = smoothstep(0.62 - 0.35 * u_wetness, 0.70 - 0.35 * u_wetness, field);
    float rough = mix(0.32, 0.06, puddle);
    // Tile grout and grime break the mirror up a little.
    vec2 tile = abs(fract(p * 0.5) - 0.5);
    float grout = smoothstep(0.485, 0.5, max(tile.x, tile.y));
    float grime = fbm(p * 3.1 + 7.0);

    // A slow ripple across the puddles so reflections shimmer.
    float t = osg_FrameTime;
    vec2 ripple = vec2(value_noise(p * 4.0 + t * 0.7), value_noise(p * 4.0 - t * 0.6)) - 0.5;
    vec3 n = normalize(vec3(ripple * 0.05 * puddle + (grime - 0.5) * 0.04, 1.0));

    vec3 v = normalize(v_eye_pos - v_world_pos);
    float n_dot_v = max(dot(n, v), 1e-3);
    float fresnel = 0.04 + 0.96 * pow(1.0 - n_dot_v, 5.0);
    float mirror = clamp(mix(0.25, 0.9, puddle) * (0.35 + 0.65 * fresnel) * (1.0 - grout), 0.0, 0.95);
    mirror *= clamp(u_wetness * 1.5, 0.0, 1.0);

    vec3 albedo = u_base_color * (0.7 + 0.6 * grime) * (1.0 - 0.5 * grout);
    vec3 diffuse = u_ambient;
    vec3 spec = vec3(0.0);
    for (int i = 0; i < u_light_count; ++i) {
        vec3 d = u_light_pos[i].xyz - v_world_pos;
        float dist2 = dot(d, d) + 0.25;
        vec3 l = d * inversesqrt(dist2);
        vec3 radiance = u_light_color[i].rgb / dist2;
        diffuse += radiance * max(dot(n, l), 0.0);
        vec3 h = normalize(l + v);
        spec += radiance * ggx(max(dot(n, h), 0.0), rough) * max(dot(n, l), 0.0);
    }
    vec3 rgb = albedo * diffuse * (1.0 - mirror) + spec * fresnel * 0.6;
    // Alpha blending: (1 - alpha) of the reflection below shows through.
    o_color = vec4(to_scene(rgb / max(1.0 - mirror, 0.05)), 1.0 - mirror);
}
